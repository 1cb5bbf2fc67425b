#!/bin/bash
# t_sim_dlms.sh: metersim serves DLMS/COSEM over the TCP wrapper (per-meter
# ports and per-meter loopback addresses) and over HDLC, for each security
# mode (none, LLS, HLS-GMAC with the keys `metersim export` lists), and what
# it serves equals what `metersim expect` prints: registers and a
# load-profile range read with selective access.  The clock is frozen at a
# fixed start (--speed 0) so both sides talk about the same instant.
#
# Readers: build/bench_sim_serve --check (meterlib's dlms_client engine,
# registers and profile rows in expect's CSV) and `ammctl read`.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim_lib.sh"

SEED=11
N=60
START=2024-03-01T12:00:00Z
T=1709294400 # $START in epoch seconds
PFROM=$((T - 6 * 3600))
fleet=(--seed $SEED --count $N)

base=$(sim_base_port $N)
sim_start wrap "${fleet[@]}" --transport tcpip --base-port "$base" --speed 0 --start $START
"$METERSIM" export "${fleet[@]}" --transport tcpip --base-port "$base" >"$SIM_WORK/inv.csv"
expect_eq "inventory lists every meter" $((N + 1)) "$(wc -l <"$SIM_WORK/inv.csv")"

# what expect says of SERIAL: the registers we read and the profile rows
truth() {
	"$METERSIM" expect "${fleet[@]}" --meter "$1" --from $((PFROM - 1)) --to $T --format csv \
		--what registers,intervals |
		grep -E '^register,.*,1-0:(1\.8\.[0-8]|2\.8\.0|3\.8\.0|4\.8\.0)\.255,|^interval,'
}

# read SERIAL [extra check args]: what the simulator serves
read_meter() {
	local line host port client sec ek ak pw
	line=$(grep "^$1," "$SIM_WORK/inv.csv")
	IFS=, read -r _ _ _ host port _ client _ sec ek ak pw _ <<<"$line"
	"$CHECK" --check dlms "$host:$port" --security "$sec" --client "$client" \
		${pw:+--password "$pw"} ${ek:+--ek "$ek" --ak "$ak"} --at $T \
		--profile $PFROM $T "${@:2}"
}

for sec in none lls hls-gmac; do
	serial=$(awk -F, -v s=$sec 'NR > 1 && $9 == s { print $1; exit }' "$SIM_WORK/inv.csv")
	[ -n "$serial" ] || fail "no $sec meter in the fleet"
	got=$(read_meter "$serial") || fail "$sec read of $serial: $got"
	want=$(truth "$serial")
	expect_eq "wrapper, $sec: registers and profile of $serial equal expect" \
		"$want" "$(grep -E '^(register|interval),' <<<"$got")"
	expect_match "wrapper, $sec: 25 profile rows (6 h at 15 min, both ends)" '^25$' \
		"$(grep -c '^interval,' <<<"$got")"
done

# the same through `ammctl read`: A+ register and the profile's A+ column
ammctl_read() { # SERIAL [--hdlc] ARGS...: ammctl read with the meter's inventory settings
	local line host port client sec ek ak pw hd=()
	line=$(grep "^$1," "$SIM_WORK/inv.csv")
	IFS=, read -r _ _ _ host port _ client _ sec ek ak pw _ <<<"$line"
	[ "$sec" = hls-gmac ] && hd=(--cipher --ek "$ek" --ak "$ak")
	[ "$sec" = lls ] && hd=(--password "$pw")
	"$AMMCTL" read --host "$host" --port "$port" --client "$client" --auth "$sec" "${hd[@]}" "${@:2}"
}
json_get() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
for sec in none lls hls-gmac; do
	serial=$(awk -F, -v s=$sec 'NR > 1 && $9 == s { print $1; exit }' "$SIM_WORK/inv.csv")
	want=$(truth "$serial" | awk -F, '$3 == "1-0:1.8.0.255" { print $4 }')
	got=$(ammctl_read "$serial" 1-0:1.8.0.255 | json_get 'd["scaled"]') || fail "ammctl read ($sec)"
	expect_eq "ammctl read, $sec: A+ of $serial equals expect" "$want" "$got"
	want=$(truth "$serial" | awk -F, '$1 == "interval" { printf "%s:%s ", $2, $4 }')
	got=$(ammctl_read "$serial" --from "$(date -u -d @$PFROM +%FT%TZ)" --to $START 1-0:99.1.0.255 2>&1 |
		json_get '" ".join("%s:%d" % (r["time"], round(r["values"][2])) for r in d["rows"]) + " "') ||
		fail "ammctl read profile ($sec): $got"
	expect_eq "ammctl read, $sec: profile A+ column of $serial equals expect" "$want" "$got"
done

# LLS with a wrong password is refused
serial=$(awk -F, 'NR > 1 && $9 == "lls" { print $1; exit }' "$SIM_WORK/inv.csv")
line=$(grep "^$serial," "$SIM_WORK/inv.csv")
IFS=, read -r _ _ _ host port _ client _ _ _ _ _ _ <<<"$line"
out=$("$CHECK" --check dlms "$host:$port" --security lls --client "$client" --password wrong)
expect_match "LLS with a wrong password is rejected" '^error,associate,association rejected' "$out"

# object list and a method: remote disconnect shows in the control socket
serial=$(awk -F, 'NR > 1 && $9 == "none" { print $1; exit }' "$SIM_WORK/inv.csv")
out=$(read_meter "$serial" --ops objects,disconnect)
expect_match "association object list is served" '^result,object_list,ok' "$out"
expect_match "remote_disconnect succeeds" '^result,disconnect,ok' "$out"
expect_match "the breaker is open afterwards" '^output_state=0$' "$(sim_ctl show "$serial")"
sim_ctl set "$serial" breaker connect >/dev/null || fail "reconnect through ctl"
expect_match "reconnected through the control socket" \
	'^control_state=(1|2)$' "$(sim_ctl show "$serial")"
expect_match "counters count associations and APDUs" '^apdus=[1-9]' "$(sim_ctl counters)"
# tariff script table: execute script 3 forces tariff 3 (ammctl action)
line=$(grep "^$serial," "$SIM_WORK/inv.csv")
IFS=, read -r _ _ _ host port _ <<<"$line"
"$AMMCTL" action --host "$host" --port "$port" 0-0:10.0.100.255:1 120003 >/dev/null ||
	fail "ammctl action tariff script"
expect_match "script 3 of the tariff script table forces tariff 3" '^active_tariff=3$' \
	"$(sim_ctl show "$serial")"
got=$("$AMMCTL" read --host "$host" --port "$port" 0-0:96.14.0.255 | json_get 'd["value"]["value"]')
expect_eq "current tariff object reads 3" 3 "$got"
sim_stop wrap

# HDLC over TCP: same values
base=$(sim_base_port $N)
sim_start hdlc "${fleet[@]}" --hdlc --base-port "$base" --speed 0 --start $START
"$METERSIM" export "${fleet[@]}" --transport hdlc --base-port "$base" >"$SIM_WORK/inv.csv"
for sec in none hls-gmac; do
	serial=$(awk -F, -v s=$sec 'NR > 1 && $9 == s { print $1; exit }' "$SIM_WORK/inv.csv")
	line=$(grep "^$serial," "$SIM_WORK/inv.csv")
	IFS=, read -r _ _ _ host port _ client _ _ ek ak pw _ <<<"$line"
	got=$("$CHECK" --check dlms "$host:$port" --hdlc --security $sec --client "$client" \
		${ek:+--ek "$ek" --ak "$ak"} --at $T --profile $PFROM $T) || fail "hdlc $sec: $got"
	expect_eq "HDLC, $sec: registers and profile of $serial equal expect" \
		"$(truth "$serial")" "$(grep -E '^(register|interval),' <<<"$got")"
	want=$(truth "$serial" | awk -F, '$3 == "1-0:1.8.0.255" { print $4 }')
	got=$(ammctl_read "$serial" --hdlc 1-0:1.8.0.255 | json_get 'd["scaled"]') ||
		fail "ammctl read --hdlc ($sec)"
	expect_eq "ammctl read --hdlc, $sec: A+ of $serial equals expect" "$want" "$got"
done
sim_stop hdlc

# per-meter loopback addresses (127.x.y.z, one shared listener; a free port
# rather than 4059, which a demo may be using at the same time)
loport=$(free_port)
sim_start lo --seed $SEED --count 8 --loopback-port "$loport" --speed 0 --start $START
"$METERSIM" export --seed $SEED --count 8 --loopback-port "$loport" >"$SIM_WORK/inv.csv"
serial=$(awk -F, 'NR > 1 && $9 == "none" { print $1; exit }' "$SIM_WORK/inv.csv")
line=$(grep "^$serial," "$SIM_WORK/inv.csv")
IFS=, read -r _ _ _ host port _ <<<"$line"
expect_match "meter on its own loopback address" '^127\.[0-9]+\.[0-9]+\.[0-9]+$' "$host"
got=$("$CHECK" --check dlms "$host:$port" --at $T --profile $PFROM $T) || fail "loopback: $got"
fleet=(--seed $SEED --count 8)
expect_eq "loopback: values equal expect" "$(truth "$serial")" \
	"$(grep -E '^(register|interval),' <<<"$got")"
