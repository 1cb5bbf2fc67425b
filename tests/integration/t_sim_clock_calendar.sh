#!/bin/bash
# t_sim_clock_calendar.sh: a head-end sets and adjusts a simulated meter's
# clock and writes its activity calendar, and the meter behaves as a real
# one: GET of the clock reflects the setting (an offset journalled per
# meter, drift counted from there), the RTC log (0-0:99.98.7.255) gets
# "clock adjusted" old/new time (codes 4 and 5), the load-profile interval
# of the setting carries the clock-adjusted status bit, shift_time and
# adjust_to_quarter act, out-of-range shifts are refused; a passive
# calendar written attribute by attribute (as ammd's command queue encodes
# it: named seasons and week profiles, day ids out of order) reads back
# byte for byte, and once activated the active attributes read the same
# and the tariff follows it.  The clock is frozen (--speed 0).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim_lib.sh"

SEED=3
N=10
START=2024-03-01T12:00:00Z # a Friday, 13:00 local
T=1709294400
fleet=(--seed $SEED --count $N)
port=$(free_port)
sim_start clk "${fleet[@]}" --loopback-port "$port" --speed 0 --start $START
"$METERSIM" export "${fleet[@]}" --loopback-port "$port" >"$SIM_WORK/inv.csv"
IFS=, read -r serial _ _ host _ <<<"$(sed -n 3p "$SIM_WORK/inv.csv")"
IFS=, read -r other _ _ ohost _ <<<"$(sed -n 4p "$SIM_WORK/inv.csv")"
hp=$host:$port
json_get() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# the uncommanded meter's clock: true time plus its drift (seconds off at most)
c0=$("$CHECK" --check dlms "$hp" --ops clock | sed -n 's/^clock,\([0-9]*\),.*/\1/p')
[ -n "$c0" ] && [ $((c0 - T)) -ge -600 ] && [ $((c0 - T)) -le 600 ] ||
	fail "clock before setting: '$c0' vs $T"
ok "uncommanded clock reads $c0 ($((c0 - T)) s from true time)"
prof0=$("$CHECK" --check dlms "$hp" --ops none --profile $((T - 900)) $T | grep '^interval,' | tail -1)

# SET attribute 2: GET returns what was set; ctl show knows the offset
SETTO=$((T + 3600 + 7))
out=$("$CHECK" --check dlms "$hp" --set-clock $SETTO --ops clock)
expect_match "SET of the clock is accepted" '^result,set_clock,ok' "$out"
expect_match "GET of the clock returns the time set" "^clock,$SETTO,0\$" "$out"
expect_match "ctl show: the clock is 3607 s ahead" '^clock_error_ms=3607000$' \
	"$(sim_ctl show "$serial")"

# the RTC log has clock adjusted (old time) 4 and (new time) 5 at the setting
got=$("$AMMCTL" read --host "$host" --port "$port" --from 2024-03-01T12:00:00Z \
	--to 2024-03-01T12:00:00Z 0-0:99.98.7.255 |
	json_get '" ".join("%s:%d" % (r["time"], r["values"][1]) for r in d["rows"])') ||
	fail "ammctl read of the RTC log"
expect_eq "RTC log: clock adjusted old/new time at the setting" \
	"2024-03-01T12:00:00Z:4 2024-03-01T12:00:00Z:5" "$got"
prof1=$("$CHECK" --check dlms "$hp" --ops none --profile $((T - 900)) $T | grep '^interval,' | tail -1)
st0=${prof0##*,} st1=${prof1##*,}
expect_eq "profile interval of the setting: clock-adjusted bit (0x20) added" \
	$((st0 | 0x20)) "$st1"
expect_eq "profile energies unchanged by the setting" "${prof0%,*}" "${prof1%,*}"

# methods: shift_time +60 s, out of range refused, adjust_to_quarter
out=$("$CHECK" --check dlms "$hp" --ops shift=60,clock)
expect_match "shift_time 60 is accepted" '^result,shift_time,ok' "$out"
expect_match "shift_time moved the clock 60 s" "^clock,$((SETTO + 60)),0\$" "$out"
out=$("$CHECK" --check dlms "$hp" --ops shift=901,clock)
expect_match "shift_time beyond 900 s is refused" '^result,shift_time,(access|.*refused)' "$out"
expect_match "a refused shift leaves the clock" "^clock,$((SETTO + 60)),0\$" "$out"
out=$("$CHECK" --check dlms "$hp" --ops quarter,clock)
expect_match "adjust_to_quarter rounds to the nearest quarter hour" "^clock,$((T + 3600)),0\$" "$out"
got=$("$AMMCTL" action --host "$host" --port "$port" 0-0:1.0.0.255:6 long:-300 >/dev/null &&
	"$AMMCTL" read --host "$host" --port "$port" 0-0:1.0.0.255 | json_get 'd["value"]["datetime"]') ||
	fail "ammctl action shift_time"
expect_eq "ammctl action shift_time -300, then read: 5 min earlier" "2024-03-01T13:55:00+01:00" "$got"
expect_eq "RTC log: one old/new pair per adjustment (4 of them)" 8 \
	"$("$AMMCTL" read --host "$host" --port "$port" --from 2024-03-01T12:00:00Z \
		--to 2024-03-01T12:00:00Z 0-0:99.98.7.255 | json_get 'd["count"]')"
# another meter is untouched
c2=$("$CHECK" --check dlms "$ohost:$port" --ops clock | sed -n 's/^clock,\([0-9]*\),.*/\1/p')
[ $((c2 - T)) -ge -600 ] && [ $((c2 - T)) -le 600 ] || fail "other meter's clock moved: $c2"
ok "another meter's clock is untouched ($((c2 - T)) s)"

# activity calendar: written attribute by attribute, read back byte for byte
out=$("$CHECK" --check dlms "$hp" --ops calwrite,calendar)
[ "$(grep -c '^result,set_calendar,ok' <<<"$out")" = 4 ] || fail "calendar SETs: $out"
for a in 6 7 8 9; do
	w=$(sed -n "s/^written,$a,//p" <<<"$out")
	[ -n "$w" ] || fail "nothing written for attribute $a"
	expect_eq "passive attribute $a reads back as written" "$w" \
		"$(sed -n "s/^calendar,$a,//p" <<<"$out")"
done
expect_match "not active before activation" '^active_tariff=[123]$' "$(sim_ctl show "$serial")"
out2=$("$CHECK" --check dlms "$hp" --ops activate,calendar)
expect_match "activate_passive_calendar succeeds" '^result,activate,ok' "$out2"
for a in 6 7 8 9; do
	w=$(sed -n "s/^written,$a,//p" <<<"$out")
	expect_eq "active attribute $((a - 4)) reads as written to $a" "$w" \
		"$(sed -n "s/^calendar,$((a - 4)),//p" <<<"$out2")"
	expect_eq "passive attribute $a still reads as written" "$w" \
		"$(sed -n "s/^calendar,$a,//p" <<<"$out2")"
done
# Friday 13:00 local in the "winter" season (from 1 January) names the
# "workweek" profile: day 1, T4 from 07:00 to 22:00
expect_match "the tariff follows the activated calendar (T4)" '^active_tariff=4$' \
	"$(sim_ctl show "$serial")"
codes=" $("$AMMCTL" read --host "$host" --port "$port" --from 2024-03-01T12:00:00Z \
	--to 2024-03-01T12:00:00Z 0-0:99.98.0.255 |
	json_get '" ".join(str(r["values"][1]) for r in d["rows"])') "
expect_match "standard log: TOU programmed (17)" ' 17 ' "$codes"
expect_match "standard log: TOU activated (10)" ' 10 ' "$codes"
sim_stop clk
echo "t_sim_clock_calendar: $T_CHECKS checks passed"
