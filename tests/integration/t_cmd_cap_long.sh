#!/bin/bash
# t_cmd_cap_long.sh (AMM_LONG=1 only; ten minutes): 1,000 disconnects for
# 1,000 meters under [commands] disconnect_per_minute = 100.  All of them
# run, verified; no sliding minute ever has more than 100 disconnect
# ACTIONs sent to meters (command_action.acted_at, taken immediately before
# each ACTION is sent: sql/0005), and each command sent exactly one; prints
# the measured maxima per sliding minute of actions, starts and finishes,
# and the total time.
# t_cmd_safety.sh has the short variant (150 under the same cap).
. "$(dirname "$0")/lib.sh"

if [ "${AMM_LONG:-0}" != 1 ]; then
	echo "  skipped: set AMM_LONG=1 (runs about ten minutes)"
	exit 0
fi
N=1000
SEED=44
work=$(mktemp -d)
lib_cleanup_add rm -rf "$work"
. "$(dirname "$0")/cmd_lib.sh"
CMD_CONC=50
CMD_CONF="[commands]
disconnect_per_minute = 100
default_expiry_s = 3600"
cmd_setup amm_cmd_cap_long
cmd_ammd_start

t0=$(date +%s)
"$AMMCTL" cmd disconnect "${S[@]}" --confirm --expires 1h --dsn "$dsn" >/dev/null || fail "queue 1,000 disconnects"
ok "1,000 disconnects queued"
done_n=0
for _ in $(seq 1 1500); do
	done_n=$(q "$dsn" "SELECT count(*) FROM command WHERE kind = 'disconnect' AND state = 'succeeded'")
	[ "$done_n" = 1000 ] && break
	sleep 0.5
done
t1=$(date +%s)
expect_eq "all 1,000 succeeded" "1000" "$done_n"
expect_eq "one ACTION per command, 1,000 in all" "1000 1000" \
	"$(q "$dsn" "SELECT count(*) || ' ' || count(DISTINCT command_id) FROM command_action WHERE kind = 'disconnect'")"
expect_eq "each command's acted_at is its action's" "0" \
	"$(q "$dsn" "SELECT count(*) FROM command c WHERE c.kind = 'disconnect' AND c.acted_at IS DISTINCT FROM
		(SELECT max(a.acted_at) FROM command_action a WHERE a.command_id = c.id)")"
max=$(q "$dsn" "SELECT max((SELECT count(*) FROM command_action d WHERE d.kind = 'disconnect'
	AND d.acted_at >= a.acted_at AND d.acted_at < a.acted_at + interval '1 minute'))
	FROM command_action a WHERE a.kind = 'disconnect'")
[ "$max" -le 100 ] || fail "$max disconnect ACTIONs sent within one sliding minute"
ok "at most $max disconnect ACTIONs sent in any sliding minute ($((t1 - t0)) s for 1,000)"
smax=$(q "$dsn" "SELECT max((SELECT count(*) FROM command d WHERE d.kind = 'disconnect'
	AND d.started_at >= c.started_at AND d.started_at < c.started_at + interval '1 minute'))
	FROM command c WHERE c.kind = 'disconnect'")
fmax=$(q "$dsn" "SELECT max((SELECT count(*) FROM command d WHERE d.kind = 'disconnect'
	AND d.finished_at >= c.finished_at AND d.finished_at < c.finished_at + interval '1 minute'))
	FROM command c WHERE c.kind = 'disconnect'")
waits=$(grep -ac "waiting for a slot" "$work/ammd.log")
# Reported, not asserted: the cap is on actions; a start is a claim that
# reserves an action, and a finish follows its action by a read-back.
echo "  (starts: at most $smax, finishes: at most $fmax in any sliding minute; $waits waits for a slot)"
expect_eq "the meters agree: 1,000 breakers open" "1000" \
	"$(ctl list 0 $N | grep -c ' open$')"
cmd_ammd_term || fail "ammd exit status"
exit 0
