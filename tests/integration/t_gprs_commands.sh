#!/bin/bash
# t_gprs_commands.sh: operator commands for GPRS meters (issues 6 and 7),
# run on the meter's own connection.
#
# Eight simulated meters (seed 1: HLS-GMAC, LLS and unsecured ones):
# indices 0..4 connect in to ammd's [gprs] listener (metersim serve
# --transport gprs --push), indices 5 and 6 connect in only later, index 7
# is an outbound GPRS module (an APN address, dialled with [gprs] timing).
# After the first collection round the meters that connect in are not due
# and ammd holds their connections idle ([gprs] idle_timeout_s = 30 s).
#   (a) commands queued for connected idle meters (disconnect, read_now,
#       credit_add, clock_sync) run on the held connection within a few
#       seconds, not after a redial; verified in metersim's state
#       (metersim ctl show) and the command result rows;
#   (b) commands for meters that are not connected call the wake-up hook
#       ([gprs] wakeup_command) once each with the serial, however many
#       wake-up passes follow; when the meters connect the commands run on
#       their connections: meter 6 is not due (held idle, a command-only
#       session), meter 5 is due (its collection session runs it);
#   (c) commands for the outbound meter run over an outbound call;
#   push: an alarm pushed on an idle connection (the breaker opened from
#       metersim's side) is read on that connection: the alarm register's
#       pushed value is stored and published once the meter's own
#       (HLS-GMAC) association is up.
. "$(dirname "$0")/lib.sh"

N=8
SEED=1
DAYS=1
CONC=10
. "$(dirname "$0")/gprs_lib.sh"
# cmd, cmd_wait, cmd_ok, res (its ctl and field are redefined below: one
# metersim per way the meters are reached)
. "$(dirname "$0")/cmd_lib.sh"
[ -n "${MQTT_PORT:-}" ] || mqtt_start

gprs_fleet_export
{ head -n 7 "$work/in.csv"; sed -n 8p "$work/in.csv"; sed -n 9p "$work/tcp.csv" | sed 's/,tcpip,/,gprs,/'; } >"$work/m.csv"
gprs_inventory amm_gprs_cmd
A=${S[0]} A2=${S[2]} P=${S[3]} B2=${S[5]} B=${S[6]} C=${S[7]}
[ "${SEC[0]} ${SEC[2]} ${SEC[3]} ${SEC[6]}" = "hls-gmac hls-gmac hls-gmac hls-gmac" ] ||
	fail "seed $SEED no longer gives HLS-GMAC meters at 0, 2, 3, 6: ${SEC[*]}"
expect_eq "7 meters connect in, 1 has an APN address" "7 1" \
	"$(q "$dsn" "SELECT count(*) FILTER (WHERE host IS NULL) || ' ' || count(*) FILTER (WHERE host IS NOT NULL) FROM meter WHERE transport = 'gprs'")"

cat >"$work/hook.sh" <<EOF
#!/bin/sh
echo "\$(date +%s) \$*" >>"$work/hook.log"
EOF
chmod +x "$work/hook.sh"
: >"$work/hook.log"

HTTP_PORT=$(free_port)
PREFIX=t-gprs-cmd-$$
HTTP_LISTEN=127.0.0.1:$HTTP_PORT
gprs_conf "handshake_timeout_s = 10" "idle_timeout_s = 30" "connect_timeout_ms = 3000" \
	"response_timeout_ms = 6000" "wakeup_command = $work/hook.sh"
gprs_mqtt_conf "t-gprs-cmd-$$"

# metersim in real time: one process per way the meters are reached, each
# with its own control socket (and its own state)
sims=()
sim() { # NAME ARGS...
	local name=$1
	shift
	"$METERSIM" serve "${fleet[@]}" --control "$work/$name.sock" "$@" >"$work/$name.log" 2>&1 &
	sims+=($!)
	lib_cleanup_add kill $!
	for _ in $(seq 1 50); do [ -S "$work/$name.sock" ] && return 0; sleep 0.1; done
	cat "$work/$name.log" >&2
	fail "metersim $name did not come up"
}
ctl() { "$METERSIM" ctl "$work/$1.sock" "${@:2}"; }
field() { ctl "$1" show "$2" | sed -n "s/^$3=//p"; }
# seconds from queueing to the stored outcome
took() { q "$dsn" "SELECT round(extract(epoch FROM finished_at - created_at)::numeric, 1) FROM command WHERE id = $1"; }
metric() { # what= label of ammd_gprs_connections_total
	python3 - "$HTTP_PORT" "$1" <<'PY'
import re, sys, urllib.request
t = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
m = re.search(r'^ammd_gprs_connections_total\{what="%s"\} (\S+)' % re.escape(sys.argv[2]), t, re.M)
print(int(float(m.group(1))) if m else 0)
PY
}

sim outb --first 7 --base-port "$BASE"
wait_port $((BASE + 7)) 20 || fail "outbound module not listening"
ammd_start
wait_port "$LPORT" 20 || { cat "$work/ammd.log" >&2; fail "no GPRS listener"; }
sim gin --transport gprs --gprs-connect "127.0.0.1:$LPORT" --gprs-max 5 --push

# ---- first round: everyone but meters 5 and 6 (not connected) ---------------------------

i=0
until [ "$(q "$dsn" "SELECT count(DISTINCT meter_id) FROM session_log WHERE outcome = 'ok'")" = 6 ]; do
	sleep 0.2
	i=$((i + 1))
	[ $i -gt 300 ] && { tail -30 "$work/ammd.log" >&2; fail "first round not finished"; }
done
ok "first round: 5 inbound meters and the outbound one read"
expect_eq "meters 5 and 6 (not connected) have no session" "0" \
	"$(q "$dsn" "SELECT count(*) FROM session_log l JOIN meter m ON m.id = l.meter_id WHERE m.serial IN ('$B', '$B2')")"

# ---- (b) first: a command for a meter that is not connected -----------------------

# not due when it comes (the held-idle path), so only its command reads it
q "$dsn" "UPDATE meter SET next_due_at = now() + interval '1 hour' WHERE serial = '$B'" >/dev/null
bid=$(cmd disconnect "$B")
b2id=$(cmd read_now "$B2" registers='["1-0:1.8.0.255"]')
bq=$(date +%s)

# ---- (a) connected idle meters --------------------------------------------------------

# every inbound meter held idle: its session over, redialled, identified
sleep 3
idle0=$(metric idle)
[ "$idle0" -ge 5 ] || fail "meters held idle: $idle0"
ok "the inbound meters are held idle after their session ($idle0 idle holds)"
ctl gin set "$A2" payment prepaid >/dev/null && ctl gin set "$A2" credit 20000 >/dev/null || fail "ctl set credit"
ctl gin set "$A2" clock $(($(date +%s) - 3600)) >/dev/null || fail "ctl set clock"
c0=$(field gin "$A2" credit_wh)
e0=$(field gin "$A2" clock_error_ms)
[ "${e0#-}" -gt 3500000 ] || fail "clock of $A2 not moved ($e0 ms)"
ta=$(date +%s.%N)
aid=$(cmd disconnect "$A")
a2id=$(cmd credit_add "$A2" amount_wh=5000 transaction_id=G-1)
cmd_ok "$aid" "(a) disconnect of idle HLS-GMAC meter $A"
expect_eq "... its breaker is open in metersim" "0 0" "$(field gin "$A" control_state) $(field gin "$A" output_state)"
expect_eq "... result: before closed, after open" "1 0" "$(res "$aid" before,control_state,value) $(res "$aid" after,control_state,value)"
cmd_ok "$a2id" "(a) credit_add of idle HLS-GMAC meter $A2"
c1=$(field gin "$A2" credit_wh)
[ $((c1 - c0)) -gt 4900 ] && [ $((c1 - c0)) -le 5000 ] || fail "credit of $A2 grew by $((c1 - c0))"
ok "... its credit grew by the amount less consumption ($c0 -> $c1 Wh)"
t_a=$(python3 -c "print(round($(date +%s.%N) - $ta, 1))")
ok "(a) both ran within $t_a s of being queued (idle_timeout_s is 30: no redial waited for; $(took "$aid") s and $(took "$a2id") s)"
python3 -c "import sys; sys.exit(0 if $t_a < 20 else 1)" || fail "(a) took $t_a s"
taken=$(metric idle-command)
[ "$taken" -ge 2 ] || fail "held connections taken for commands: $taken"
ok "... on the held connections (idle-command: $taken)"
# the next ones: the meters hung up after the commands' sessions, redialled
# and are held again (or are being identified): they run there too
rid=$(cmd read_now "$A" registers='["1-0:1.8.0.255","1-0:2.8.0.255"]')
kid=$(cmd clock_sync "$A2")
cmd_ok "$rid" "(a) read_now of $A"
ap=$(field gin "$A" A+)
rv=$(res "$rid" values,1-0:1.8.0.255,value)
# the energy register moves on between the read and the look
[ -n "$rv" ] && [ "$rv" -le "$ap" ] && [ $((ap - rv)) -le 50 ] || fail "read_now A+ ($rv) against metersim ($ap)"
ok "... A+ in the result equals metersim's ($rv, now $ap)"
cmd_ok "$kid" "(a) clock_sync of $A2"
e1=$(field gin "$A2" clock_error_ms)
[ "${e1#-}" -lt 5000 ] || fail "clock of $A2 still off by $e1 ms"
ok "... its clock is within 5 s ($e0 -> $e1 ms)"

# ---- (c) the outbound GPRS meter -------------------------------------------------

ctl outb set "$C" clock $(($(date +%s) - 600)) >/dev/null || fail "ctl set clock"
cid=$(cmd disconnect "$C")
cmd_ok "$cid" "(c) disconnect of the outbound GPRS meter $C"
expect_eq "... its breaker is open in metersim ($(took "$cid") s from queueing)" "0 0" "$(field outb "$C" control_state) $(field outb "$C" output_state)"
ckid=$(cmd clock_sync "$C")
cmd_ok "$ckid" "(c) clock_sync of $C"
e=$(field outb "$C" clock_error_ms)
[ "${e#-}" -lt 5000 ] || fail "clock of $C still off by $e ms"
ok "... its clock is within 5 s ($e ms)"
expect_eq "(c) the command sessions were outbound calls over gprs" "gprs" \
	"$(q "$dsn" "SELECT string_agg(DISTINCT l.transport, ',') FROM session_log l JOIN meter m ON m.id = l.meter_id WHERE m.serial = '$C'")"

# ---- push on an idle connection --------------------------------------------------

mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t "$PREFIX/meter/$P/registers" >"$work/sub.txt" 2>/dev/null &
lib_cleanup_add kill $!
sleep 0.5
ip0=$(metric idle-push)
pushed_at=$(date +%s)
# the breaker opened from the meter's side: its alarm register changes and
# the module pushes on its idle connection
ctl gin set "$P" breaker disconnect >/dev/null || fail "ctl set breaker"
i=0
until [ "$(q "$dsn" "SELECT count(*) FROM register_reading r JOIN meter m ON m.id = r.meter_id WHERE m.serial = '$P' AND r.obis = '0-0:97.98.0.255' AND r.value = 1")" = 1 ]; do
	sleep 0.2
	i=$((i + 1))
	[ $i -gt 100 ] && { grep -a "$P" "$work/ammd.log" | tail -20 >&2; fail "the pushed alarm of $P not stored"; }
done
ok "push on an idle connection: the alarm register (breaker open, 1) is stored"
expect_eq "... once, at the push's time (not before it)" "1" \
	"$(q "$dsn" "SELECT count(*) FROM register_reading r JOIN meter m ON m.id = r.meter_id WHERE m.serial = '$P' AND r.obis = '0-0:97.98.0.255' AND r.value = 1 AND r.captured_at >= to_timestamp($pushed_at - 2)")"
expect_eq "... metersim's breaker is open (alarm bit 0)" "0" "$(field gin "$P" output_state)"
ip1=$(metric idle-push)
expect_eq "... pushed on an idle connection" "1" "$((ip1 - ip0))"
expect_match "... read on that connection" "$P.*pushed while idle: read on this connection" "$(cat "$work/ammd.log")"
# a redial would have been identified again (an `identify` row of a due meter)
expect_eq "... not after a redial" "0" \
	"$(q "$dsn" "SELECT count(*) FROM session_log l JOIN meter m ON m.id = l.meter_id WHERE m.serial = '$P' AND l.outcome = 'identify' AND l.started_at >= to_timestamp($pushed_at)")"
expect_eq "... by a session with the meter's HLS-GMAC association" "ok" \
	"$(q "$dsn" "SELECT outcome FROM session_log l JOIN meter m ON m.id = l.meter_id WHERE m.serial = '$P' AND l.started_at >= to_timestamp($pushed_at - 1) ORDER BY l.id LIMIT 1")"
for _ in $(seq 1 50); do grep -aq '"0-0:97.98.0.255"' "$work/sub.txt" && break; sleep 0.1; done
pub=$(python3 - "$work/sub.txt" <<'PY'
import json, sys
n = 0
for line in open(sys.argv[1], errors="replace"):
    topic, _, payload = line.partition(" ")
    try:
        m = json.loads(payload)
    except ValueError:
        continue
    n += sum(1 for r in m.get("registers", []) if r.get("obis") == "0-0:97.98.0.255" and r.get("value") == 1)
print(n)
PY
)
expect_eq "... and published once on $PREFIX/meter/$P/registers" "1" "$pub"

# ---- (b) the wake-up hook, then the meters connect --------------------------------

i=0
until grep -q " $B\$" "$work/hook.log" && grep -q " $B2\$" "$work/hook.log"; do
	sleep 0.2
	i=$((i + 1))
	# a pass every 10 s: the command module's tick must not skip it
	[ $(($(date +%s) - bq)) -gt 35 ] && { cat "$work/hook.log" >&2; fail "wake-up hook not called for $B and $B2 within 35 s of queueing"; }
done
ok "(b) the wake-up hook ran for $B and $B2 ($(($(grep " $B\$" "$work/hook.log" | head -1 | cut -d' ' -f1) - bq)) s after queueing)"
# let at least one more wake-up pass (every 10 s) go by with them queued
sleep 11
expect_eq "... the commands still wait" "queued queued" \
	"$(q "$dsn" "SELECT state FROM command WHERE id = $bid") $(q "$dsn" "SELECT state FROM command WHERE id = $b2id")"
expect_eq "... the hook ran once for each, with the serial as its argument" "1 1" \
	"$(grep -c " $B\$" "$work/hook.log") $(grep -c " $B2\$" "$work/hook.log")"
tb=$(date +%s.%N)
sim gin5 --transport gprs --gprs-connect "127.0.0.1:$LPORT" --first 5 --gprs-max 2 --push
cmd_ok "$bid" "(b) the command ran when $B connected"
t_b=$(python3 -c "print(round($(date +%s.%N) - $tb, 1))")
expect_eq "... its breaker is open in metersim" "0 0" "$(field gin5 "$B" control_state) $(field gin5 "$B" output_state)"
# (the alarm its module pushes when the breaker opens, during that session,
# is stored like any push: not counted as collected)
expect_eq "... in a command session only (it was not due: nothing collected)" "0" \
	"$(q "$dsn" "SELECT count(*) FROM register_reading r JOIN meter m ON m.id = r.meter_id WHERE m.serial = '$B' AND r.obis <> '0-0:97.98.0.255'")"
ok "... $t_b s after the module started"
cmd_ok "$b2id" "(b) the read_now ran when $B2 connected"
ap=$(field gin5 "$B2" A+)
rv=$(res "$b2id" values,1-0:1.8.0.255,value)
[ -n "$rv" ] && [ "$rv" -le "$ap" ] && [ $((ap - rv)) -le 50 ] || fail "read_now A+ of $B2 ($rv) against metersim ($ap)"
ok "... A+ in the result equals metersim's ($rv, now $ap)"
expect_eq "... $B2 was due: identified and collected on that connection" "1 1" \
	"$(q "$dsn" "SELECT count(*) FILTER (WHERE l.outcome = 'identify') || ' ' || count(*) FILTER (WHERE l.outcome = 'ok') FROM session_log l JOIN meter m ON m.id = l.meter_id WHERE m.serial = '$B2' AND l.started_at < (SELECT finished_at FROM command WHERE id = $b2id)")"

expect_eq "no command failed" "0" "$(q "$dsn" "SELECT count(*) FROM command WHERE state <> 'succeeded'")"
ammd_term || fail "ammd exit status $?"
ok "ammd stops cleanly"
