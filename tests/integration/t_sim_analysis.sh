#!/bin/bash
# t_sim_analysis.sh: the simulated meters' analysis logger, special-day
# and clock methods, and the ground truth of commanded meters.
#
#   * the analysis logger 1-0:99.2.0.255 of a 162, a 282 and a 382M, read
#     by range with `ammctl read`, has the clock plus U, I, P per measured
#     phase and P+/P- as columns (6, 9, 12) and exactly the rows and
#     values `metersim expect --what analysis` prints; entries_in_use is
#     the number of captures in its 40 days; it is in the object list;
#     reconfigured (SET of capture_objects / capture_period over DLMS, or
#     ctl set ... analysis) it serves the new period and channels and
#     starts empty; a channel the type does not measure is refused;
#   * special days: `ammctl action` insert (method 1) of a spec_day_entry
#     makes today a special day, so the current tariff drops from the
#     weekday's T2 to T1; the table reads back the entry; delete (method
#     2) restores T2, a second delete of the index is refused;
#   * clock: preset_adjusting_time (method 5) and adjust_to_preset_time
#     (method 4) set the clock to the preset inside the validity
#     interval, once; an interval the clock is outside is refused;
#     shift_time (6) moves it on;
#   * `metersim ctl PATH expect` prints for an uncommanded meter exactly
#     what `metersim expect` prints, and for the commanded meter the
#     events the commands caused (special_days_changed, clock adjusted
#     old/new, remote_disconnect), which the separate `metersim expect`
#     does not know.
# The clock is frozen (--speed 0) at a Monday noon, local time.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim_lib.sh"

SEED=3
N=12
START=2024-03-04T11:00:00Z # Monday 12:00 local: weekday tariff T2
T=1709550000
fleet=(--seed $SEED --count $N)
port=$(free_port)
sim_start ana "${fleet[@]}" --loopback-port "$port" --speed 0 --start $START
"$METERSIM" export "${fleet[@]}" --loopback-port "$port" >"$SIM_WORK/inv.csv"
host_of() { awk -F, -v s="$1" '$1 == s { print $4 }' "$SIM_WORK/inv.csv"; }
ammctl_m() { local h=$1; shift; "$AMMCTL" "$1" --host "$h" --port "$port" "${@:2}"; }

# ---- analysis logger: one meter of each type ------------------------------------
declare -A want_cols=([162]=6 [282]=9 [382M]=12)
for type in 162 282 382M; do
	serial=$(awk -F, -v t=$type 'NR > 1 && $2 == t { print $1; exit }' "$SIM_WORK/inv.csv")
	[ -n "$serial" ] || fail "no $type meter in the fleet"
	h=$(host_of "$serial")
	ammctl_m "$h" read --from 2024-03-04T10:00:00Z --to 2024-03-04T11:00:00Z 1-0:99.2.0.255 \
		>"$SIM_WORK/read.json" || fail "ammctl read of the analysis logger of $serial"
	"$METERSIM" expect "${fleet[@]}" --meter "$serial" --from $((T - 3601)) --to $T \
		--what analysis --format csv >"$SIM_WORK/exp.csv" || fail "metersim expect"
	# compare every value; the expect CSV has model units (0.1 V, mA, W)
	res=$(python3 - "$SIM_WORK/read.json" "$SIM_WORK/exp.csv" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
rows = [l.rstrip("\n").split(",") for l in open(sys.argv[2]) if l.startswith("analysis,")]
col = {"32.7.0": (3, 10), "52.7.0": (4, 10), "72.7.0": (5, 10),
       "31.7.0": (6, 1000), "51.7.0": (7, 1000), "71.7.0": (8, 1000),
       "21.7.0": (9, 1), "41.7.0": (10, 1), "61.7.0": (11, 1),
       "1.7.0": (12, 1), "2.7.0": (13, 1)}
cols = [c["obis"] for c in d["columns"]]
bad = 0
if len(d["rows"]) != len(rows):
    bad += 1
for r, e in zip(d["rows"], rows):
    if r["time"] != e[1] or r["values"][0] != e[1]:
        bad += 1
    for k, o in enumerate(cols[1:], 1):
        i, div = col[o.split(":")[1].rsplit(".", 1)[0]]
        if e[i] == "" or abs(float(e[i]) / div - r["values"][k]) > 1e-9:
            bad += 1
# phases the meter does not measure: not captured, empty in expect
measured = {i for o in cols[1:] for i in [col[o.split(":")[1].rsplit(".", 1)[0]][0]]}
bad += sum(1 for e in rows for i in range(3, 12) if i not in measured and e[i] != "")
print(len(cols), len(d["rows"]), bad, d["capture_period"])
EOF
) || fail "comparing $serial"
	read -r ncols nrows nbad period <<<"$res"
	expect_eq "$type $serial: columns (clock, U/I/P per phase, P+, P-)" "${want_cols[$type]}" "$ncols"
	expect_eq "$type $serial: capture period 10 min" 600 "$period"
	expect_eq "$type $serial: 7 rows from 10:00 to 11:00 UTC" 7 "$nrows"
	expect_eq "$type $serial: every value equals metersim expect" 0 "$nbad"
done
inuse=$(ammctl_m "$h" read 1-0:99.2.0.255:7 | python3 -c 'import json,sys; print(json.load(sys.stdin)["value"]["value"])')
expect_eq "entries_in_use: the captures of the last 40 days" \
	"$("$METERSIM" expect "${fleet[@]}" --meter "$serial" --from $((T - 40 * 86400)) --to $T \
		--what analysis --format csv | grep -c '^analysis,')" "$inuse"
# reconfigured (ctl set, as a SET of capture_objects/capture_period does):
# cleared, the new period and channels (U L1..L3 and P+: mask 0x207)
m382=$(awk -F, 'NR > 1 && $2 == "382M" { print $1; exit }' "$SIM_WORK/inv.csv")
sim_ctl set "$m382" analysis 300 0x207 || fail "ctl set analysis"
expect_status "ctl set analysis refuses a period not dividing a day" 1 sim_ctl set "$m382" analysis 700
got=$(ammctl_m "$(host_of "$m382")" read --from 2024-03-04T10:00:00Z --to 2024-03-04T11:00:00Z 1-0:99.2.0.255 |
	python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["capture_period"], " ".join(c["obis"] for c in d["columns"]), len(d["rows"]))')
expect_eq "reconfigured: 5 min, clock U1 U2 U3 P+, buffer cleared" \
	"300 0-0:1.0.0.255 1-0:32.7.0.255 1-0:52.7.0.255 1-0:72.7.0.255 1-0:1.7.0.255 0" "$got"
# SET over DLMS (ammctl has no SET): wrapper, the public client's AARQ
# (LN referencing, no security, as ammctl sends it), SET-Request-Normal
dlms_set() { # HOST CLASS OBIS_HEX ATTR DATA_HEX: prints the SET result byte
	python3 - "$1" "$port" "$2" "$3" "$4" "$5" <<'EOF'
import socket, struct, sys
host, port, cls, obis, attr, data = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6]
s = socket.create_connection((host, port), timeout=5)
def xfer(apdu):
    s.sendall(struct.pack(">HHHH", 1, 0x10, 1, len(apdu)) + apdu)
    n = struct.unpack(">HHHH", s.recv(8))[3]
    b = b""
    while len(b) < n:
        b += s.recv(n - len(b))
    return b
aare = xfer(bytes.fromhex("601da109060760857405080101be10040e01000000065f1f0400001e9d0800"))
assert aare[0] == 0x61
r = xfer(bytes([0xc1, 1, 0xc1]) + struct.pack(">H", cls) + bytes.fromhex(obis) + bytes([attr, 0]) + bytes.fromhex(data))
print(r[3])
EOF
}
m282=$(awk -F, 'NR > 1 && $2 == "282" { print $1; exit }' "$SIM_WORK/inv.csv")
co() { printf '020412%04x0906%s0f%02x120000' "$1" "$2" "$3"; }
expect_eq "SET capture_objects (clock, U L3, P+) accepted" 0 \
	"$(dlms_set "$(host_of "$m282")" 7 0100630200ff 3 "0103$(co 8 0000010000ff 2)$(co 3 0100480700ff 2)$(co 3 0100010700ff 2)")"
expect_eq "SET capture_objects with U L2 (not measured on a 282) refused: type-unmatched" 12 \
	"$(dlms_set "$(host_of "$m282")" 7 0100630200ff 3 "0102$(co 8 0000010000ff 2)$(co 3 0100340700ff 2)")"
expect_eq "SET capture_period 900 accepted" 0 "$(dlms_set "$(host_of "$m282")" 7 0100630200ff 4 0600000384)"
got=$(ammctl_m "$(host_of "$m282")" read --from 2024-03-04T10:00:00Z --to 2024-03-04T11:00:00Z 1-0:99.2.0.255 |
	python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["capture_period"], " ".join(c["obis"] for c in d["columns"]), len(d["rows"]))')
expect_eq "after the SETs: 15 min, clock U3 P+, buffer cleared" \
	"900 0-0:1.0.0.255 1-0:72.7.0.255 1-0:1.7.0.255 0" "$got"
expect_match "the association object list has the analysis logger" '"hex": "0100630200ff"' \
	"$(ammctl_m "$h" read 0-0:40.0.0.255)"

# ---- uncommanded: ctl expect = expect ------------------------------------------
other=$(sed -n 3p "$SIM_WORK/inv.csv" | cut -d, -f1)
what=registers,intervals,events,billing,analysis
"$METERSIM" expect "${fleet[@]}" --meter "$other" --from $((T - 86400)) --to $T --what $what \
	--format csv >"$SIM_WORK/e1.csv"
sim_ctl expect --meter "$other" --from $((T - 86400)) --to $T --what $what --format csv \
	>"$SIM_WORK/e2.csv" || fail "ctl expect"
[ "$(grep -c '^interval,' "$SIM_WORK/e1.csv")" = 96 ] || fail "expect has no full day"
cmp -s "$SIM_WORK/e1.csv" "$SIM_WORK/e2.csv" || fail "ctl expect differs for an uncommanded meter"
ok "ctl expect of an uncommanded meter = metersim expect ($(wc -l <"$SIM_WORK/e1.csv") lines)"
expect_eq "ctl expect JSON = metersim expect JSON" \
	"$("$METERSIM" expect "${fleet[@]}" --meter "$other" --from $((T - 3600)) --to $T | md5sum)" \
	"$(sim_ctl expect --meter "$other" --from $((T - 3600)) --to $T | md5sum)"

# ---- special days: insert and delete ---------------------------------------------
tariff() { ammctl_m "$h" read 0-0:96.14.0.255 | python3 -c 'import json,sys; print(json.load(sys.stdin)["value"]["value"])'; }
expect_eq "Monday noon: tariff T2" 2 "$(tariff)"
# spec_day_entry {index 40, 2024-03-04, day_id 2 (the weekend profile)}
ammctl_m "$h" action 0-0:11.0.0.255:1 0203120028090507e80304ff1102 >/dev/null ||
	fail "special days insert"
expect_eq "after inserting today as a special day: T1" 1 "$(tariff)"
expect_eq "the table has the entry (index 40, 2024-03-04, day 2)" "33 [40, '07e80304ff', 2]" \
	"$(ammctl_m "$h" read 0-0:11.0.0.255 | python3 -c '
import json,sys; it=json.load(sys.stdin)["value"]["items"]
print(len(it), [x.get("value", x.get("hex")) for x in it[-1]["items"]])')"
ammctl_m "$h" action 0-0:11.0.0.255:2 long-unsigned:40 >/dev/null || fail "special days delete"
expect_eq "after deleting it: T2 again" 2 "$(tariff)"
expect_status "a second delete of index 40 is refused" 1 ammctl_m "$h" action 0-0:11.0.0.255:2 long-unsigned:40

# ---- clock: preset_adjusting_time, adjust_to_preset_time, shift_time -------------
dt() { python3 -c "import time,sys; t=time.gmtime($1); print('090c%04x%02x%02xff%02x%02x%02x00000000' % (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec))"; }
clock() { ammctl_m "$h" read 0-0:1.0.0.255 | python3 -c 'import json,sys; print(json.load(sys.stdin)["value"]["datetime"])'; }
c0=$(clock)
ammctl_m "$h" action 0-0:1.0.0.255:5 "0203$(dt $((T + 1800)))$(dt $((T + 600)))$(dt $((T + 900)))" >/dev/null ||
	fail "preset_adjusting_time"
expect_status "adjust_to_preset_time outside the validity interval is refused" 1 \
	ammctl_m "$h" action 0-0:1.0.0.255:4 integer:0
expect_eq "the clock stays" "$c0" "$(clock)"
ammctl_m "$h" action 0-0:1.0.0.255:5 "0203$(dt $((T + 1800)))$(dt $((T - 600)))$(dt $((T + 600)))" >/dev/null ||
	fail "preset_adjusting_time"
ammctl_m "$h" action 0-0:1.0.0.255:4 integer:0 >/dev/null || fail "adjust_to_preset_time"
expect_eq "adjust_to_preset_time: the clock reads the preset" "2024-03-04T12:30:00+01:00" "$(clock)"
expect_status "the preset is used up" 1 ammctl_m "$h" action 0-0:1.0.0.255:4 integer:0
ammctl_m "$h" action 0-0:1.0.0.255:6 long:30 >/dev/null || fail "shift_time"
expect_eq "shift_time 30 s" "2024-03-04T12:30:30+01:00" "$(clock)"
expect_match "ctl show: clock 1830 s ahead" '^clock_error_ms=1830000$' "$(sim_ctl show "$serial")"
ammctl_m "$h" action 0-0:96.3.10.255:1 integer:0 >/dev/null || fail "remote disconnect"

# ---- ctl expect of the commanded meter ---------------------------------------------
sim_ctl expect --meter "$serial" --from $((T - 60)) --to $T --what events,registers --format csv \
	>"$SIM_WORK/c.csv" || fail "ctl expect"
got=$(awk -F, '$1 == "event" && $2 == "2024-03-04T11:00:00Z" { printf "%s ", $7 }' "$SIM_WORK/c.csv")
# sorted by (time, log, code): standard, disconnector, RTC log
expect_eq "ctl expect: the commands' events at $START" \
	"special_days_changed special_days_changed remote_disconnect clock_adjusted_old clock_adjusted_old clock_adjusted_new clock_adjusted_new " \
	"$got"
"$METERSIM" expect "${fleet[@]}" --meter "$serial" --from $((T - 60)) --to $T --what events,registers \
	--format csv >"$SIM_WORK/p.csv"
expect_eq "metersim expect (no commands) has none of them" 0 \
	"$(grep -c '2024-03-04T11:00:00Z.*\(special_days\|clock_adjusted\|remote_disconnect\)' "$SIM_WORK/p.csv")"
expect_eq "registers are the same (nothing flowed since)" \
	"$(grep '^register,' "$SIM_WORK/p.csv")" "$(grep '^register,' "$SIM_WORK/c.csv")"
got=$(ammctl_m "$h" read --from 2024-03-04T11:00:00Z --to 2024-03-04T11:00:00Z 0-0:99.98.7.255 |
	python3 -c 'import json,sys; print(" ".join(str(r["values"][1]) for r in json.load(sys.stdin)["rows"]))')
expect_eq "the RTC log served agrees with ctl expect" \
	"$(awk -F, '$1 == "event" && $4 == "rtc" && $2 == "2024-03-04T11:00:00Z" { print $6 }' "$SIM_WORK/c.csv" | xargs)" \
	"$got"
expect_eq "... two adjustments: two old/new pairs" "4 4 5 5" "$got"
expect_status "ctl expect without --meter is refused" 1 sim_ctl expect --from 1 --to 2
sim_stop ana
echo "t_sim_analysis: $T_CHECKS checks passed"
