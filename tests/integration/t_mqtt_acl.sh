#!/bin/bash
# t_mqtt_acl.sh: who issued an MQTT command (issue 7), with a broker of its
# own that authenticates every client (password_file) and carries the ACL
# the README asks operators for (`pattern write <prefix>/command/request/%u`):
#   * opA publishes a CommandRequest on <prefix>/command/request/opA: the
#     command is created_by "mqtt:opA", its audit trail names opA, it runs
#     against metersim (the meter's breaker opens) and its CommandResult
#     arrives on <prefix>/command/<id>/result;
#   * opB publishing on opA's topic is refused by the broker: nothing is
#     queued (checked after a later request of opA's has been queued);
#   * a request on the shared <prefix>/command/request names nobody: it is
#     created_by "mqtt:request:<request id>", even when that id is "opA";
#   * with [mqtt] shared_requests = no (reloaded with SIGHUP) the shared
#     topic queues nothing, while opA's own topic still does.
. "$(dirname "$0")/lib.sh"

N=4
SEED=47
work=$(mktemp -d)
lib_cleanup_add rm -rf "$work"
. "$(dirname "$0")/cmd_lib.sh"
DRV=$BUILD/bench_publish
[ -x "$DRV" ] || fail "no $DRV"
command -v mosquitto_passwd >/dev/null || fail "no mosquitto_passwd (apt-get install mosquitto)"
[ -n "${PG_SUPER_DSN:-}" ] || pg_start
PREFIX=t-acl/v1

# ---- the broker: passwords and the ACL ------------------------------------------------

B_DIR=$(mktemp -d "${TMPDIR:-/tmp}/amm-tacl.XXXXXX") || fail "mktemp"
chmod 755 "$B_DIR"
lib_cleanup_add rm -rf "$B_DIR"
B_PORT=$(free_port)
for u in ammd opA opB opC; do
	[ -f "$B_DIR/passwd" ] && c= || c=-c
	mosquitto_passwd $c -b "$B_DIR/passwd" "$u" "pw-$u" || fail "mosquitto_passwd $u"
done
# ammd reads and writes its tree; opC is the one client allowed on the
# shared topic; everyone may write only the request topic named after its
# own (authenticated) username, and read the results.
cat >"$B_DIR/acl" <<EOF
user ammd
topic readwrite $PREFIX/#

user opC
topic write $PREFIX/command/request

pattern write $PREFIX/command/request/%u
pattern read $PREFIX/command/+/result
EOF
cat >"$B_DIR/mosquitto.conf" <<EOF
listener $B_PORT 127.0.0.1
allow_anonymous false
password_file $B_DIR/passwd
acl_file $B_DIR/acl
persistence false
log_dest stderr
log_type error
log_type warning
EOF
[ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1 && chown mosquitto: "$B_DIR/passwd" "$B_DIR/acl"
"$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$B_DIR/mosquitto.conf" >"$B_DIR/mosquitto.log" 2>&1 &
B_PID=$!
lib_cleanup_add mqtt_stop "$B_PID" ""
wait_port "$B_PORT" 20 || { cat "$B_DIR/mosquitto.log" >&2; fail "mosquitto did not start"; }

printf 'pw-ammd\n' >"$work/ammd.pw"
chmod 600 "$work/ammd.pw"
CMD_DAEMON_ROLE=t_acl_daemon
MQTT_CONF="[mqtt]
enabled = yes
host = 127.0.0.1
port = $B_PORT
prefix = $PREFIX
client_id = t-acl-ammd
username = ammd
password_file = $work/ammd.pw"
CMD_CONF="[commands]
disconnect_per_minute = 100
$MQTT_CONF"
cmd_setup amm_mqtt_acl
A=${S[0]} B=${S[1]} C=${S[2]} D=${S[3]}
cmd_ammd_start
for _ in $(seq 1 100); do grep -q 'mqtt: connected to' "$work/ammd.log" && break; sleep 0.1; done
grep -q 'mqtt: connected to' "$work/ammd.log" || { tail "$work/ammd.log" >&2; fail "ammd did not connect to the broker"; }
ok "ammd logged in to the broker as user ammd"

mosquitto_sub -h 127.0.0.1 -p "$B_PORT" -u opA -P pw-opA -i opA-results -q 1 -F '%t %x' \
	-t "$PREFIX/command/+/result" >"$work/sub.txt" 2>"$work/sub.err" &
sub_pid=$!
lib_cleanup_add kill "$sub_pid"
sleep 0.5 # ammd's SUBSCRIBE follows its CONNACK; so does this one's

# request FILE ID KIND SERIAL: a CommandRequest without parameters
request() { "$DRV" --check request "$1" "$2" "$3" "$4" >/dev/null || fail "request $2"; }
# pub USER TOPIC FILE
pub() {
	mosquitto_pub -h 127.0.0.1 -p "$B_PORT" -u "$1" -P "pw-$1" -i "$1-pub" -q 1 -t "$2" -f "$3" ||
		fail "mosquitto_pub as $1"
}
# queued REQUEST_ID SECS: the command's id once it is queued
queued() {
	local id= i
	for i in $(seq 1 $(($2 * 10))); do
		id=$(q "$dsn" "SELECT id FROM command WHERE request_id = '$1'")
		[ -n "$id" ] && break
		sleep 0.1
	done
	echo "$id"
}
ncommands() { q "$dsn" "SELECT count(*) FROM command"; }
audit() { q "$dsn" "SELECT string_agg(actor || ':' || new_state || coalesce(':' || note, ''), ',' ORDER BY id) FROM command_audit WHERE command_id = $1"; }

# ---- opA on its own topic ---------------------------------------------------------------

expect_eq "meter $A's breaker is closed before" "1" "$(field "$A" control_state)"
request "$work/a1.bin" rq-a1 disconnect "$A"
pub opA "$PREFIX/command/request/opA" "$work/a1.bin"
id=$(queued rq-a1 10)
[ -n "$id" ] || { tail -20 "$work/ammd.log" >&2; fail "opA's request queued nothing"; }
ok "opA's request on its own topic queued command $id"
cmd_ok "$id" "... and it ran"
expect_eq "the meter's breaker is open" "0 0" "$(field "$A" control_state) $(field "$A" output_state)"
expect_eq "created_by names the MQTT user" "mqtt:opA" "$(q "$dsn" "SELECT created_by FROM command WHERE id = $id")"
expect_eq "the audit names opA for the insert, and the daemon's login for every change" \
	"t_acl_daemon:queued:for mqtt:opA,t_acl_daemon:running,t_acl_daemon:succeeded" "$(audit "$id")"
for _ in $(seq 1 100); do grep -aq "^$PREFIX/command/$id/result " "$work/sub.txt" && break; sleep 0.1; done
grep -aq "^$PREFIX/command/$id/result " "$work/sub.txt" || fail "no result on $PREFIX/command/$id/result"
ok "the CommandResult arrived on $PREFIX/command/$id/result"
grep -a "^$PREFIX/command/$id/result " "$work/sub.txt" | grep -q "$(printf rq-a1 | od -An -tx1 | tr -d ' \n')" ||
	fail "the result does not echo rq-a1"
ok "... echoing the request id"

# ---- opB on opA's topic -------------------------------------------------------------------

n0=$(ncommands)
request "$work/b1.bin" rq-b1 disconnect "$B"
pub opB "$PREFIX/command/request/opA" "$work/b1.bin"
pub opB "$PREFIX/command/request" "$work/b1.bin"
# opA's next request, published after opB's, shows the broker has passed on
# what it would pass on
sleep 0.5
request "$work/a2.bin" rq-a2 disconnect "$C"
pub opA "$PREFIX/command/request/opA" "$work/a2.bin"
id2=$(queued rq-a2 10)
[ -n "$id2" ] || fail "opA's second request queued nothing"
ok "opA's second request queued command $id2"
sleep 1
expect_eq "opB on opA's topic and on the shared one queued nothing" "$((n0 + 1)) 0" \
	"$(ncommands) $(q "$dsn" "SELECT count(*) FROM command WHERE request_id = 'rq-b1'")"
expect_eq "meter $B's breaker is untouched" "1" "$(field "$B" control_state)"
grep -q 'rq-b1' "$work/ammd.log" && fail "ammd received opB's request"
ok "ammd never received opB's request"
cmd_ok "$id2" "opA's second command ran"

# ---- the shared topic ----------------------------------------------------------------------

# Its request id is "opA": the shared topic still does not pass for opA.
request "$work/c1.bin" opA disconnect "$D"
pub opC "$PREFIX/command/request" "$work/c1.bin"
id3=$(queued opA 10)
[ -n "$id3" ] || { tail -20 "$work/ammd.log" >&2; fail "the shared topic queued nothing"; }
expect_eq "a request on the shared topic is created_by its request id, not a user" "mqtt:request:opA" \
	"$(q "$dsn" "SELECT created_by FROM command WHERE id = $id3")"
expect_eq "... and audited so" "t_acl_daemon:queued:for mqtt:request:opA" \
	"$(q "$dsn" "SELECT actor || ':' || new_state || ':' || note FROM command_audit WHERE command_id = $id3 AND new_state = 'queued'")"
cmd_ok "$id3" "... and it ran"

# ---- shared_requests = no --------------------------------------------------------------

sed -i "s|^client_id = t-acl-ammd|client_id = t-acl-ammd\nshared_requests = no|" "$work/ammd.conf"
grep -q '^shared_requests = no' "$work/ammd.conf" || fail "conf edit"
kill -HUP "$ammd_pid"
for _ in $(seq 1 100); do [ "$(grep -c 'mqtt: connected to' "$work/ammd.log")" -ge 2 ] && break; sleep 0.1; done
[ "$(grep -c 'mqtt: connected to' "$work/ammd.log")" -ge 2 ] || { tail "$work/ammd.log" >&2; fail "no reconnect after the reload"; }
sleep 0.5
n0=$(ncommands)
request "$work/c2.bin" rq-c2 disconnect "$A"
pub opC "$PREFIX/command/request" "$work/c2.bin"
sleep 0.5
request "$work/a3.bin" rq-a3 disconnect "$B"
pub opA "$PREFIX/command/request/opA" "$work/a3.bin"
id4=$(queued rq-a3 10)
[ -n "$id4" ] || { tail -20 "$work/ammd.log" >&2; fail "opA's own topic queued nothing after the reload"; }
ok "with shared_requests = no, opA's own topic still queues (command $id4)"
sleep 1
expect_eq "... and the shared topic queues nothing" "$((n0 + 1)) 0" \
	"$(ncommands) $(q "$dsn" "SELECT count(*) FROM command WHERE request_id = 'rq-c2'")"
kill "$sub_pid" 2>/dev/null
cmd_ammd_term
expect_eq "ammd stops cleanly" "0" "$?"
exit 0
