#!/bin/bash
# t_cmd_daemon.sh: the command module inside a running ammd (issue 7): a
# command for an unreachable meter expires with a clear result, written
# with its MQTT result message in the outbox; a cancelled command stays
# cancelled and is never claimed; a running command abandoned by a dead
# instance with no attempts left fails with a result naming it; a command
# for a meter that refuses connections waits queued without counting an
# attempt, and commands are audited throughout.
. "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$root/build}
AMMD=$BUILD/ammd
[ -x "$AMMD" ] || fail "no $AMMD"
[ -n "${PG_SUPER_DSN:-}" ] || pg_start

dsn=$(pg_newdb amm_cmdd)
"$AMMCTL" db migrate --dsn "$dsn" >/dev/null || fail "migrate"
pg_login_role t_cd_daemon ammd
ddsn="host=$PG_SOCK port=$PG_PORT dbname=amm_cmdd user=t_cd_daemon"
# Meters nobody answers for (a port nothing listens on), known unreachable.
port=$(free_port)
q "$dsn" "INSERT INTO meter (serial, transport, host, port, reachability, last_error, next_due_at)
	VALUES ('U1', 'tcpip', '127.0.0.1', $port, 'unreachable', 'connect: connection refused', now() + interval '1 day'),
	       ('G1', 'gprs', NULL, NULL, 'unknown', NULL, now() + interval '1 day')" >/dev/null

work=$(mktemp -d)
lib_cleanup_add rm -rf "$work"
http=$(free_port)
cat >"$work/ammd.conf" <<EOF
[daemon]
http_listen = 127.0.0.1:$http
instance_id = cmdtest
shutdown_timeout = 5
[database]
dsn = $ddsn
[mqtt]
enabled = no
EOF
chmod 600 "$work/ammd.conf"

"$AMMCTL" cmd disconnect U1 --expires 2s --dsn "$dsn" >/dev/null || fail "queue"
id=$(q "$dsn" "SELECT max(id) FROM command")
"$AMMCTL" cmd reconnect U1 --dsn "$dsn" >/dev/null || fail "queue 2"
cid=$(q "$dsn" "SELECT max(id) FROM command")
"$AMMCTL" cmd cancel "$cid" --dsn "$dsn" >/dev/null || fail "cancel"
"$AMMCTL" cmd clock_sync G1 --expires 2s --dsn "$dsn" >/dev/null || fail "queue gprs"
gid=$(q "$dsn" "SELECT max(id) FROM command")
# An instance that died with the last attempt of a command.
q "$dsn" "INSERT INTO command (meter_id, kind, state, attempts, max_attempts, claimed_by, started_at, lease_until)
	SELECT id, 'limiter', 'running', 3, 3, 'dead-one', now() - interval '10 minutes', now() - interval '5 minutes'
	FROM meter WHERE serial = 'U1'" >/dev/null
did=$(q "$dsn" "SELECT max(id) FROM command")

"$AMMD" -d -f "$work/ammd.conf" >"$work/ammd.log" 2>&1 &
apid=$!
lib_cleanup_add "kill -9 $apid"
for _ in $(seq 1 100); do
	[ "$(q "$dsn" "SELECT count(*) FROM command WHERE state IN ('expired', 'failed')")" = 3 ] && break
	kill -0 $apid 2>/dev/null || { cat "$work/ammd.log" >&2; fail "ammd died"; }
	sleep 0.1
done
expect_eq "a command for an unreachable meter expires" "expired" \
	"$(q "$dsn" "SELECT state FROM command WHERE id = $id")"
expect_match "... with a clear result" "expired at .*Z without being executed: meter unreachable \(connect: [Cc]onnection refused\)" \
	"$(q "$dsn" "SELECT error FROM command WHERE id = $id")"
expect_match "a GPRS meter that never connected says so" "the GPRS meter did not connect in time" \
	"$(q "$dsn" "SELECT error FROM command WHERE id = $gid")"
expect_match "an abandoned last attempt fails naming the dead instance" "abandoned: ammd instance dead-one stopped during attempt 3 of 3" \
	"$(q "$dsn" "SELECT state || ': ' || error FROM command WHERE id = $did")"
expect_eq "each outcome has its result message in the outbox" "3" \
	"$(q "$dsn" "SELECT count(*) FROM outbox WHERE topic IN ('ammd/v1/command/$id/result', 'ammd/v1/command/$gid/result', 'ammd/v1/command/$did/result')")"
expect_eq "the cancelled command stays cancelled and was never started" "cancelled|" \
	"$(q "$dsn" "SELECT state || '|' || coalesce(started_at::text, '') FROM command WHERE id = $cid")"
expect_eq "the audit trail has the daemon's role for the expiry" "t_cd_daemon:queued->expired" \
	"$(q "$dsn" "SELECT actor || ':' || old_state || '->' || new_state FROM command_audit WHERE command_id = $id AND new_state = 'expired'")"
"$AMMCTL" cmd disconnect U1 --expires 1h --dsn "$dsn" >/dev/null || fail "queue 3"
sleep 1.5
expect_eq "a command for a meter that refuses connections waits queued, no attempt counted" "queued 0" \
	"$(q "$dsn" "SELECT state || ' ' || attempts FROM command WHERE id = (SELECT max(id) FROM command)")"
kill -TERM $apid
wait $apid
expect_eq "ammd stops cleanly" "0" "$?"
exit 0
