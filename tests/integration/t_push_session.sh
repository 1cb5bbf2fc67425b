#!/bin/bash
# t_push_session.sh: a DataNotification a meter pushes in the middle of a
# session (issue 6: pushes are stored and published like polled data).
#
# Two simulated GPRS meters connect in (seed 1: meter 0 HLS-GMAC with
# ciphering, meter 1 LLS, in clear), without pushing on connect; meter 2
# (HLS-GMAC) is a TCP/IP meter ammd calls.  After their first session
# their breakers are opened from metersim's side (the alarm register's
# bit 0) and `metersim ctl push SERIAL session` arms each to push inside
# its next session: the meter sends the DataNotification
# (general-glo-ciphered with the meter's keys when it ciphers) after the
# head-end's second request came in and before answering it.  The meters
# are made due; each session must store the push's values once and publish
# them once, equal to what metersim pushed, and go on to end "ok".
. "$(dirname "$0")/lib.sh"

N=3
SEED=1
DAYS=1
CONC=10
. "$(dirname "$0")/gprs_lib.sh"
[ -n "${MQTT_PORT:-}" ] || mqtt_start

gprs_fleet_export
{ head -n 3 "$work/in.csv"; sed -n 4p "$work/tcp.csv"; } >"$work/m.csv"
gprs_inventory amm_push_session
[ "${SEC[*]}" = "hls-gmac lls hls-gmac" ] || fail "seed $SEED no longer gives HLS-GMAC, LLS, HLS-GMAC meters: ${SEC[*]}"
TR=(gprs gprs tcpip)
q "$dsn" "UPDATE meter SET next_due_at = now()" >/dev/null # all due at once

PREFIX=t-push-session-$$
gprs_conf "handshake_timeout_s = 10" "idle_timeout_s = 2" "connect_timeout_ms = 3000" "response_timeout_ms = 6000"
gprs_mqtt_conf "t-push-session-$$"

# the TCP/IP meter listens before ammd calls it
"$METERSIM" serve "${fleet[@]}" --control "$work/tcp.sock" --first 2 --base-port "$BASE" \
	>"$work/tcp.log" 2>&1 &
lib_cleanup_add kill $!
wait_port $((BASE + 2)) 20 || fail "TCP/IP meter not listening"
ammd_start
wait_port "$LPORT" 20 || { cat "$work/ammd.log" >&2; fail "no GPRS listener"; }
# metersim for the modules (meters 0, 1)
"$METERSIM" serve "${fleet[@]}" --control "$work/sim.sock" --transport gprs \
	--gprs-connect "127.0.0.1:$LPORT" --gprs-max 2 >"$work/sim.log" 2>&1 &
lib_cleanup_add kill $!
for _ in $(seq 1 50); do [ -S "$work/sim.sock" ] && [ -S "$work/tcp.sock" ] && break; sleep 0.1; done
[ -S "$work/sim.sock" ] && [ -S "$work/tcp.sock" ] || { cat "$work/sim.log" "$work/tcp.log" >&2; fail "metersim did not come up"; }
ctl_of() { # SERIAL -> the control socket of the process serving it
	[ "$1" = "${S[2]}" ] && echo "$work/tcp.sock" || echo "$work/sim.sock"
}
ctl() { # SERIAL CMD... : to the process serving SERIAL
	local s=$1
	shift
	"$METERSIM" ctl "$(ctl_of "$s")" "$@"
}
pushes() { # metersim's pushes, both processes
	echo $(($("$METERSIM" ctl "$work/sim.sock" counters | sed -n 's/^pushes=//p') + $("$METERSIM" ctl "$work/tcp.sock" counters | sed -n 's/^pushes=//p')))
}
alarm_rows() { # SERIAL -> rows of the alarm register with value 1
	q "$dsn" "SELECT count(*) FROM register_reading r JOIN meter m ON m.id = r.meter_id WHERE m.serial = '$1' AND r.obis = '0-0:97.98.0.255' AND r.value = 1"
}

i=0
until [ "$(q "$dsn" "SELECT count(DISTINCT meter_id) FROM session_log WHERE outcome = 'ok'")" = 3 ]; do
	sleep 0.2
	i=$((i + 1))
	[ $i -gt 150 ] && { q "$dsn" "SELECT meter_id, outcome, error FROM session_log" >&2; grep -a "${S[2]}" "$work/ammd.log" | tail -20 >&2; fail "first sessions not done"; }
done
ok "first sessions of the three meters done"
expect_eq "no push so far, no alarm register stored" "0 0" \
	"$(pushes) $(q "$dsn" "SELECT count(*) FROM register_reading WHERE obis = '0-0:97.98.0.255'")"

mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t "$PREFIX/meter/+/registers" >"$work/sub.txt" 2>/dev/null &
lib_cleanup_add kill $!
sleep 0.5
t0=$(date +%s)
for s in "${S[@]}"; do
	ctl "$s" set "$s" breaker disconnect >/dev/null || fail "ctl set $s breaker"
	ctl "$s" push "$s" session >/dev/null || fail "ctl push $s session"
done
q "$dsn" "UPDATE meter SET next_due_at = now()" >/dev/null

i=0
until [ "$(alarm_rows "${S[0]}")$(alarm_rows "${S[1]}")$(alarm_rows "${S[2]}")" = 111 ]; do
	sleep 0.2
	i=$((i + 1))
	[ $i -gt 150 ] && { grep -a "push" "$work/ammd.log" | tail -20 >&2; fail "the pushed alarms were not stored"; }
done
ok "the alarm register each meter pushed inside its session (breaker open: 1) is stored"
expect_eq "metersim pushed three times, once per meter" "3" "$(pushes)"

# let the sessions end (their rows are written at the end)
i=0
until [ "$(q "$dsn" "SELECT count(DISTINCT meter_id) FROM session_log WHERE outcome <> 'identify' AND started_at >= to_timestamp($t0)")" = 3 ]; do
	sleep 0.2
	i=$((i + 1))
	[ $i -gt 100 ] && fail "the sessions with the pushes did not end"
done

for k in 0 1 2; do
	s=${S[$k]}
	what="meter $s (${TR[$k]}, ${SEC[$k]})"
	expect_match "$what: the push came during its session" \
		"$s.*push during the session \([0-9]+ bytes\): held to be stored" "$(cat "$work/ammd.log")"
	expect_match "$what: its values (A+, alarm register) stored through the push mapping" \
		"$s.*push during the session: 2 values stored" "$(cat "$work/ammd.log")"
	expect_eq "$what: no push refused, none pushed while idle or before identification" "0" \
		"$(grep -a "$s" "$work/ammd.log" | grep -Eac 'push during the session refused|pushed while idle|not stored')"
	expect_eq "$what: stored once, at the push's time (not before the push was armed)" "1" \
		"$(q "$dsn" "SELECT count(*) FROM register_reading r JOIN meter m ON m.id = r.meter_id WHERE m.serial = '$s' AND r.obis = '0-0:97.98.0.255' AND r.captured_at >= to_timestamp($t0 - 1)")"
	expect_eq "$what: the session went on and ended ok (outcome of every session since)" "ok" \
		"$(q "$dsn" "SELECT string_agg(DISTINCT l.outcome, ',') FROM session_log l JOIN meter m ON m.id = l.meter_id WHERE m.serial = '$s' AND l.outcome <> 'identify' AND l.started_at >= to_timestamp($t0)")"
	# ground truth: metersim's register at the push's instant (the breaker
	# is open, A+ no longer moves)
	at=$(q "$dsn" "SELECT extract(epoch FROM r.captured_at)::bigint FROM register_reading r JOIN meter m ON m.id = r.meter_id WHERE m.serial = '$s' AND r.obis = '0-0:97.98.0.255' AND r.value = 1")
	want=$(ctl "$s" expect --meter "$s" --from "$at" --to "$at" --format csv --what registers | awk -F, '$3 == "1-0:1.8.0.255" {print $4}')
	got=$(q "$dsn" "SELECT (r.value * 10 ^ coalesce(r.scaler, 0))::bigint FROM register_reading r JOIN meter m ON m.id = r.meter_id WHERE m.serial = '$s' AND r.obis = '1-0:1.8.0.255' AND r.captured_at = to_timestamp($at)")
	[ -n "$want" ] || fail "$what: metersim expect has no A+ at $at"
	expect_eq "$what: A+ at the push's time equals metersim's ($want Wh)" "$want" "$got"
	expect_eq "$what: metersim's breaker is open" "0" "$(ctl "$s" show "$s" | sed -n 's/^output_state=//p')"
done

for _ in $(seq 1 50); do
	[ "$(grep -ac '"0-0:97.98.0.255"' "$work/sub.txt")" -ge 3 ] && break
	sleep 0.1
done
sleep 0.5
pub=$(python3 - "$work/sub.txt" "$PREFIX" "${S[@]}" <<'PY'
import json, sys
path, prefix, serials = sys.argv[1], sys.argv[2], sys.argv[3:]
n = {s: 0 for s in serials}
for line in open(path, errors="replace"):
    topic, _, payload = line.partition(" ")
    try:
        m = json.loads(payload)
    except ValueError:
        continue
    for s in serials:
        if topic == "%s/meter/%s/registers" % (prefix, s):
            n[s] += sum(1 for r in m.get("registers", [])
                        if r.get("obis") == "0-0:97.98.0.255" and r.get("value") == 1)
print(" ".join(str(n[s]) for s in serials))
PY
)
expect_eq "each push published once on $PREFIX/meter/SERIAL/registers" "1 1 1" "$pub"

ammd_term || fail "ammd exit status $?"
ok "ammd stops cleanly"
