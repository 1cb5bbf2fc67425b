#!/bin/bash
# t_sim_scale.sh: one metersim process serves 100,000 TCP/IP meters on
# their own loopback addresses through ONE listener (INADDR_ANY; the
# address the client dialled names the meter), so the fleet costs one file
# descriptor and a connection one more only while it is open.  Meters at
# index 0, 50,000 and 99,999 are read with the check client (registers and
# a profile range, compared with `metersim expect`) and with `ammctl read`
# using their inventory settings (security, keys); an address outside the
# fleet is reset; the per-meter listener mode still serves its slice.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim_lib.sh"

SEED=5
N=100000
START=2024-03-01T12:00:00Z
T=1709294400 # $START in epoch seconds
PFROM=$((T - 2 * 3600))
fleet=(--seed $SEED --count $N)
port=$(free_port)

sim_start big "${fleet[@]}" --loopback-port "$port" --speed 0 --start $START
line=$(grep '^metersim: serving' "$SIM_WORK/big.log")
expect_match "all 100,000 meters served through one listener" \
	'^metersim: serving 100000 of 100000 meters over tcpip \(1 listeners\)' "$line"
ok "start-up: ${line#metersim: serving 100000 of 100000 meters over tcpip (1 listeners), }"
"$METERSIM" export "${fleet[@]}" --loopback-port "$port" >"$SIM_WORK/inv.csv"
expect_eq "inventory lists every meter" $((N + 1)) "$(wc -l <"$SIM_WORK/inv.csv")"

truth() {
	"$METERSIM" expect "${fleet[@]}" --meter "$1" --from $((PFROM - 1)) --to $T --format csv \
		--what registers,intervals |
		grep -E '^register,.*,1-0:(1\.8\.[0-8]|2\.8\.0|3\.8\.0|4\.8\.0)\.255,|^interval,'
}
json_get() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

for idx in 0 50000 99999; do
	line=$(sed -n "$((idx + 2))p" "$SIM_WORK/inv.csv")
	IFS=, read -r serial _ _ host hport _ client _ sec ek ak pw _ <<<"$line"
	expect_eq "meter $idx is dialled at 127.x.y.z:$port" "$port" "$hport"
	got=$("$CHECK" --check dlms "$host:$port" --security "$sec" --client "$client" \
		${pw:+--password "$pw"} ${ek:+--ek "$ek" --ak "$ak"} --at $T \
		--profile $PFROM $T --ops ldn,registers) || fail "check read of meter $idx: $got"
	expect_eq "meter $idx at $host answers as $serial" "meter,$serial" \
		"$(grep '^meter,' <<<"$got")"
	expect_eq "meter $idx ($sec): registers and profile equal expect" "$(truth "$serial")" \
		"$(grep -E '^(register|interval),' <<<"$got")"
	hd=()
	[ "$sec" = hls-gmac ] && hd=(--cipher --ek "$ek" --ak "$ak")
	[ "$sec" = lls ] && hd=(--password "$pw")
	want=$(truth "$serial" | awk -F, '$3 == "1-0:1.8.0.255" { print $4 }')
	got=$("$AMMCTL" read --host "$host" --port "$port" --client "$client" --auth "$sec" \
		"${hd[@]}" 1-0:1.8.0.255 | json_get 'd["scaled"]') || fail "ammctl read of meter $idx"
	expect_eq "ammctl read of meter $idx ($sec): A+ equals expect" "$want" "$got"
done

# 127.0.0.1 and addresses past the fleet name no meter: reset, not served
out=$("$CHECK" --check dlms "127.0.0.1:$port" --ops ldn 2>&1)
expect_match "127.0.0.1 is no meter" '^error,' "$out"
out=$("$CHECK" --check dlms "127.2.150.1:$port" --ops ldn 2>&1) # index 100000
expect_match "the address after the last meter is no meter" '^error,' "$out"

pid=$SIM_PID_big
nfd=$(ls "/proc/$pid/fd" | wc -l)
[ "$nfd" -lt 64 ] || fail "$nfd file descriptors open for an idle fleet"
ok "idle fleet holds $nfd file descriptors"
rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
[ "$rss" -lt $((2 * N)) ] || fail "RSS $rss KiB: more than 2 KiB per meter"
ok "RSS $rss KiB after the reads ($((rss * 1024 / N)) bytes per meter)"
expect_match "connections counted" '^connections=[1-9]' "$(sim_ctl counters)"
sim_stop big

# per-meter listeners (--per-meter-listeners): a small slice, same answers
port=$(free_port)
fleet=(--seed $SEED --count 20)
sim_start per --seed $SEED --count 20 --loopback-port "$port" --per-meter-listeners --speed 0 \
	--start $START
expect_match "per-meter listeners: one per meter" '\(20 listeners\)' \
	"$(grep '^metersim: serving' "$SIM_WORK/per.log")"
"$METERSIM" export --seed $SEED --count 20 --loopback-port "$port" >"$SIM_WORK/inv20.csv"
IFS=, read -r serial _ _ host _ <<<"$(sed -n 5p "$SIM_WORK/inv20.csv")"
got=$("$CHECK" --check dlms "$host:$port" --at $T --profile $PFROM $T) || fail "per-meter: $got"
expect_eq "per-meter listener: values equal expect" "$(truth "$serial")" \
	"$(grep -E '^(register|interval),' <<<"$got")"
sim_stop per
echo "t_sim_scale: $T_CHECKS checks passed"
