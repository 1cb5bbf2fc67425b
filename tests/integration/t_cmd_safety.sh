#!/bin/bash
# t_cmd_safety.sh: the operator command queue's safety promises, through a
# running ammd against metersim (issue 7):
#   * rate cap: 150 disconnects under disconnect_per_minute = 100: the
#     first 100 run at once, the other 50 wait, and no sliding minute ever
#     has more than 100 ACTIONs sent (command_action.acted_at, taken just
#     before each is sent; the rest run once the minute has passed), one
#     per command; t_cmd_cap_long.sh (AMM_LONG=1) does 1,000;
#   * the action slot itself: a limiter whose group's minute was filled
#     (by another instance, here rows written into command_action) after it
#     was claimed waits in its association for a slot, gives the job back
#     after 20 s without counting the attempt, and acts only once the
#     minute has passed (acted_at >= the filling actions + 60 s);
#   * the audit with ammd logged in as a member of the ammd role (not the
#     owner): an MQTT request on the shared topic is created_by "mqtt:request:<request id>", an
#     `ammctl cmd` by an ammd_operator login is created_by that login, and
#     command_audit names those and the daemon's login;
#   * credit_add with ammd killed (SIGKILL) right after its checkpoint was
#     committed, and again right after the ACTION reached the meter (its
#     answer held back by a delay fault): after a restart the meter was
#     credited exactly once per command (metersim ctl show credit_wh);
#   * a command for an unreachable meter expires with a clear result, and
#     waits (queued, no attempt counted) until then;
#   * a cancelled command is never sent (breaker untouched, no disconnect
#     event in the meter's log);
#   * MQTT: a CommandRequest published on <prefix>/command/request is run
#     and its CommandResult arrives on <prefix>/command/<id>/result;
#   * a low-credit warning the meter raises (event 230 in its standard log)
#     is stored and published on the meter's events topic.
. "$(dirname "$0")/lib.sh"

N=160
SEED=33
work=$(mktemp -d)
lib_cleanup_add rm -rf "$work"
. "$(dirname "$0")/cmd_lib.sh"
[ -n "${MQTT_PORT:-}" ] || mqtt_start
PREFIX=t-cmd-safety-$$
DRV=$BUILD/bench_publish
[ -x "$DRV" ] || fail "no $DRV"
CMD_CONC=40
CMD_DAEMON_ROLE=t_cs_daemon
CMD_CONF="[commands]
disconnect_per_minute = 100
[mqtt]
enabled = yes
host = 127.0.0.1
port = $MQTT_PORT
prefix = $PREFIX
client_id = t-cmd-safety-$$"
cmd_setup amm_cmd_safety
# the meters' roles
K=${S[150]} U=${S[151]} X=${S[152]} Q=${S[159]}
# W: a meter whose clock runs ahead, so that an event of a moment ago lies
# before the meter's "now" that bounds the first collection's ranges
W=
for s in "${S[@]:153:6}"; do [ "$(field "$s" clock_error_ms)" -gt 1000 ] && { W=$s; break; }; done
[ -n "$W" ] || fail "no meter with its clock ahead among 153..158"

# A meter in prepayment below its warning threshold raises the low-credit
# warning; the first collection round reads it.
ctl set "$W" payment prepaid >/dev/null && ctl set "$W" credit 4000 >/dev/null || fail "ctl set credit"
sleep 1.1
ctl show "$W" >/dev/null # the meter's state moves on when it is looked at
# A meter nobody answers for.
q "$dsn" "UPDATE meter SET port = $(free_port) WHERE serial = '$U'" >/dev/null
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t "$PREFIX/command/+/result" -t "$PREFIX/meter/$W/events" \
	>"$work/sub.txt" 2>/dev/null &
lib_cleanup_add kill $!
cmd_ammd_start

# ---- unreachable meter ------------------------------------------------------------

uid=$(cmd limiter "$U" threshold_normal_w=9000 --expires 6s)
sleep 2
[ -n "${T_DEBUG:-}" ] && grep -a "$U\|command" "$work/ammd.log" | head -30
expect_eq "a command for an unreachable meter waits queued, no attempt counted" "queued 0" \
	"$(q "$dsn" "SELECT state || ' ' || attempts FROM command WHERE id = $uid")"
expect_match "... with the reason" "meter not reached: connect: Connection refused" \
	"$(q "$dsn" "SELECT error FROM command WHERE id = $uid")"

# ---- cancelled command -----------------------------------------------------------

ctl fault "delay=600@$X" >/dev/null || fail "fault"
rid=$(cmd read_now "$X" registers='["1-0:1.8.0.255"]')
xid=$(cmd disconnect "$X")
"$AMMCTL" cmd cancel "$xid" --dsn "$dsn" >/dev/null || fail "cancel"
expect_eq "the read_now before it runs" "succeeded" "$(cmd_wait "$rid" 20)"
ctl clear "$X" >/dev/null
sleep 1.5
expect_eq "the cancelled command was never started" "cancelled|" \
	"$(q "$dsn" "SELECT state || '|' || coalesce(started_at::text, '') FROM command WHERE id = $xid")"
expect_eq "... and never sent: the breaker is closed" "1 1" "$(field "$X" control_state) $(field "$X" output_state)"
id=$(cmd read_now "$X" events='[2]')
cmd_ok "$id" "read the disconnector log"
[[ "$(q "$dsn" "SELECT result::text FROM command WHERE id = $id")" =~ \"value\":\ 61\} ]] &&
	fail "the meter logged a remote disconnect"
ok "... and the meter logged no remote disconnect"

expect_eq "the unreachable meter's command expired" "expired" "$(cmd_wait "$uid" 15)"
expect_match "... with a clear result" "expired at .*Z without being executed: meter unreachable \(connect: Connection refused\)" \
	"$(q "$dsn" "SELECT error FROM command WHERE id = $uid")"

# ---- credit_add killed mid-way -----------------------------------------------------

id=$(cmd payment_mode "$K" mode=prepayment)
cmd_ok "$id" "payment_mode prepayment"
id=$(cmd credit_set "$K" amount_wh=10000)
cmd_ok "$id" "credit_set 10 kWh"

# restart_credited ID BEFORE AMOUNT: with the meter's faults cleared, ammd
# started again completes command ID, and the meter's credit (BEFORE Wh
# until then) grew by AMOUNT exactly once: by AMOUNT less at most the
# 200 Wh it used meanwhile.  Sets credit to the new balance.
restart_credited() {
	local id=$1 before=$2 amount=$3
	ctl clear "$K" >/dev/null
	cmd_ammd_start
	expect_eq "after the restart the command completes" "succeeded" "$(cmd_wait "$id" 30)"
	credit=$(field "$K" credit_wh)
	[ $((credit - before)) -gt $((amount - 200)) ] && [ $((credit - before)) -le "$amount" ] ||
		fail "credit moved by $((credit - before)) Wh ($before -> $credit)"
	ok "the meter was credited exactly once ($before -> $credit Wh)"
}

# (a) killed right after the checkpoint was committed
c0=$(field "$K" credit_wh)
ctl fault "delay=800@$K" >/dev/null
a=$(cmd credit_add "$K" amount_wh=5000 transaction_id=KILL-A)
for _ in $(seq 1 400); do
	[ -n "$(q "$dsn" "SELECT progress FROM command WHERE id = $a AND progress IS NOT NULL")" ] && break
	sleep 0.01
done
cmd_ammd_kill9
ok "ammd killed right after the checkpoint of command $a was committed"
restart_credited "$a" "$c0" 5000
c1=$credit

# (b) killed after the ACTION reached the meter, before its answer came back
ctl fault "delay=1500@$K" >/dev/null
b=$(cmd credit_add "$K" amount_wh=7000 transaction_id=KILL-B)
got=
for _ in $(seq 1 800); do
	c=$(field "$K" credit_wh)
	[ "$c" -gt $((c1 + 6000)) ] && { got=$c; break; }
	sleep 0.01
done
[ -n "$got" ] || fail "the top-up never reached the meter"
cmd_ammd_kill9
ok "ammd killed after the meter applied the top-up, before its answer ($c1 -> $got)"
expect_eq "... the command is still running in the database" "running" "$(q "$dsn" "SELECT state FROM command WHERE id = $b")"
restart_credited "$b" "$c1" 7000
expect_eq "... and the result says it had been applied earlier" "true" "$(res "$b" applied_earlier)"

# ---- MQTT command/request -------------------------------------------------------------

"$DRV" --check request "$work/req.bin" req-77 tariff_force "$Q" || fail "request"
# the driver writes no parameters: give the kind its own
python3 - "$work/req.bin" <<'PY' || fail "request params"
import sys
p = sys.argv[1]
b = open(p, 'rb').read()
pj = b'{"tariff": 4}'
open(p, 'wb').write(b + bytes([0x22, len(pj)]) + pj)
PY
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$PREFIX/command/request" -f "$work/req.bin" || fail "mosquitto_pub"
mid=
for _ in $(seq 1 100); do
	mid=$(q "$dsn" "SELECT id FROM command WHERE request_id = 'req-77'")
	[ -n "$mid" ] && break
	sleep 0.1
done
[ -n "$mid" ] || { tail -20 "$work/ammd.log" >&2; fail "the MQTT request queued nothing"; }
ok "the MQTT request queued command $mid"
expect_eq "it ran" "succeeded" "$(cmd_wait "$mid" 20)"
expect_eq "... created_by the MQTT request, with ammd logged in as a member of ammd" "mqtt:request:req-77" \
	"$(q "$dsn" "SELECT created_by FROM command WHERE id = $mid")"
expect_eq "... audited: queued and run by the daemon's login" \
	"t_cs_daemon:queued,t_cs_daemon:running,t_cs_daemon:succeeded" \
	"$(q "$dsn" "SELECT string_agg(actor || ':' || new_state, ',' ORDER BY id) FROM command_audit WHERE command_id = $mid")"
expect_eq "the meter's tariff" "4" "$(field "$Q" active_tariff)"
for _ in $(seq 1 100); do grep -aq "^$PREFIX/command/$mid/result " "$work/sub.txt" && break; sleep 0.1; done
grep -aq "^$PREFIX/command/$mid/result " "$work/sub.txt" || fail "no result on $PREFIX/command/$mid/result"
ok "the CommandResult arrived on $PREFIX/command/$mid/result"
grep -a "^$PREFIX/command/$mid/result " "$work/sub.txt" | grep -aq 'req-77' || fail "the result does not echo the request id"
ok "... echoing the request id"
pg_login_role t_cs_op ammd_operator
odsn="host=$PG_SOCK port=$PG_PORT dbname=amm_cmd_safety user=t_cs_op"
"$AMMCTL" cmd tariff_force "$Q" tariff=2 --dsn "$odsn" >/dev/null || fail "operator: ammctl cmd"
oid=$(q "$dsn" "SELECT max(id) FROM command WHERE kind = 'tariff_force'")
expect_eq "an operator's ammctl cmd ran" "succeeded" "$(cmd_wait "$oid" 20)"
expect_eq "... created_by the operator's login" "t_cs_op" "$(q "$dsn" "SELECT created_by FROM command WHERE id = $oid")"
expect_eq "... audited: queued by the operator, run by the daemon" \
	"t_cs_op:queued,t_cs_daemon:running,t_cs_daemon:succeeded" \
	"$(q "$dsn" "SELECT string_agg(actor || ':' || new_state, ',' ORDER BY id) FROM command_audit WHERE command_id = $oid")"
expect_eq "the meter's tariff" "2" "$(field "$Q" active_tariff)"

# ---- low-credit warning -----------------------------------------------------------------

wid=$(q "$dsn" "SELECT id FROM meter WHERE serial = '$W'")
for _ in $(seq 1 100); do
	[ "$(q "$dsn" "SELECT count(*) FROM event WHERE meter_id = $wid AND log = 0 AND code = 230")" != 0 ] && break
	sleep 0.2
done
expect_eq "the low-credit warning (event 230) is stored" "1" \
	"$(q "$dsn" "SELECT count(*) FROM event WHERE meter_id = $wid AND log = 0 AND code = 230")"
for _ in $(seq 1 50); do grep -aq "^$PREFIX/meter/$W/events " "$work/sub.txt" && break; sleep 0.1; done
grep -aq "^$PREFIX/meter/$W/events " "$work/sub.txt" || fail "no events message for $W"
ok "... and published on $PREFIX/meter/$W/events"

# ---- rate cap: 150 disconnects, at most 100 per minute ---------------------------------------

t0=$(date +%s)
"$AMMCTL" cmd disconnect "${S[@]:0:150}" --confirm --dsn "$dsn" >/dev/null || fail "queue 150 disconnects"
for _ in $(seq 1 300); do
	[ "$(q "$dsn" "SELECT count(*) FROM command WHERE kind = 'disconnect' AND state = 'succeeded'")" -ge 100 ] && break
	sleep 0.1
done
sleep 3

# ---- the action slot: a full minute found at the moment of acting ---------------------------

# limiter_per_minute is 10 (default).  The limiter for X is claimed while
# its group's minute is empty; its state read is slowed, and meanwhile ten
# limiter actions 35 s old appear (another instance's): when it comes to
# act, the minute is full for another 25 s.
lim0=$(field "$X" limiter | cut -d" " -f1)
ctl fault "delay=1500@$X" >/dev/null || fail "fault"
lid=$(cmd limiter "$X" threshold_normal_w=7000)
for _ in $(seq 1 100); do
	[ "$(q "$dsn" "SELECT state FROM command WHERE id = $lid")" = running ] && break
	sleep 0.05
done
fill=$(q "$dsn" "INSERT INTO command_action (command_id, kind, instance, attempt, acted_at)
	SELECT 0, 'limiter', 'other', 1, now() - interval '35 seconds' FROM generate_series(1, 10)
	RETURNING acted_at" | head -1)
# (the fault is cleared only once the command waits: clearing it closes
# the connection of a request being held back)
for _ in $(seq 1 150); do
	grep -aq "command $lid: rate cap of limiter reached this minute: waiting for a slot" "$work/ammd.log" && break
	sleep 0.1
done
ctl clear "$X" >/dev/null
for _ in $(seq 1 300); do
	[ "$(q "$dsn" "SELECT state FROM command WHERE id = $lid")" = queued ] && break
	sleep 0.1
done
[ "$(q "$dsn" "SELECT state || ' ' || attempts FROM command WHERE id = $lid")" = "queued 0" ] ||
	grep -a "command $lid\|$X" "$work/ammd.log" | tail -20 >&2
expect_eq "with its minute full the limiter waited, then was given back, no attempt counted" "queued 0" \
	"$(q "$dsn" "SELECT state || ' ' || attempts FROM command WHERE id = $lid")"
expect_match "... saying why" "rate cap of limiter: no action slot within 20 s" \
	"$(q "$dsn" "SELECT error FROM command WHERE id = $lid")"
expect_eq "... nothing was sent: the meter's threshold is unchanged" "$lim0" "$(field "$X" limiter | cut -d" " -f1)"
grep -aq "command $lid: rate cap of limiter reached this minute: waiting for a slot" "$work/ammd.log" ||
	fail "no wait logged for command $lid"
ok "... after waiting for a slot in its association"
expect_eq "it runs once the minute has passed" "succeeded" "$(cmd_wait "$lid" 40)"
expect_eq "... its action not before the filling ones + 60 s" "t" \
	"$(q "$dsn" "SELECT acted_at >= '$fill'::timestamptz + interval '60 seconds' FROM command WHERE id = $lid")"
expect_eq "... the meter has the threshold" "7000" "$(field "$X" limiter | cut -d" " -f1)"

expect_eq "within the first minute exactly 100 disconnects ran" "100" \
	"$(q "$dsn" "SELECT count(*) FROM command WHERE kind = 'disconnect' AND state = 'succeeded'")"
expect_eq "... and 50 wait queued" "50" \
	"$(q "$dsn" "SELECT count(*) FROM command WHERE kind = 'disconnect' AND state = 'queued'")"
expect_eq "the meters agree: 100 breakers open" "100" \
	"$(for s in "${S[@]:0:150}"; do field "$s" control_state; done | grep -c '^0$')"
for _ in $(seq 1 900); do
	[ "$(q "$dsn" "SELECT count(*) FROM command WHERE kind = 'disconnect' AND state = 'succeeded'")" = 150 ] && break
	sleep 0.1
done
expect_eq "the other 50 ran after the minute" "150" \
	"$(q "$dsn" "SELECT count(*) FROM command WHERE kind = 'disconnect' AND state = 'succeeded'")"
expect_eq "one disconnect ACTION per command sent" "150 150" \
	"$(q "$dsn" "SELECT count(*) || ' ' || count(DISTINCT command_id) FROM command_action WHERE kind = 'disconnect'")"
max=$(q "$dsn" "SELECT max((SELECT count(*) FROM command_action d WHERE d.kind = 'disconnect'
	AND d.acted_at >= a.acted_at AND d.acted_at < a.acted_at + interval '1 minute'))
	FROM command_action a WHERE a.kind = 'disconnect'")
[ "$max" -le 100 ] || fail "$max disconnect ACTIONs sent within one sliding minute"
ok "at most $max disconnect ACTIONs sent in any sliding minute ($(($(date +%s) - t0)) s for 150)"
expect_eq "command_rate shows the actions of the last minute" \
	"$(q "$dsn" "SELECT count(*) FROM command_action WHERE kind = 'disconnect' AND acted_at > now() - interval '1 minute'")" \
	"$(q "$dsn" "SELECT acted_last_minute FROM command_rate WHERE kind = 'disconnect'")"

cmd_ammd_term || fail "ammd exit status"
ok "ammd stops cleanly"
exit 0
