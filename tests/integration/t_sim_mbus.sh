#!/bin/bash
# t_sim_mbus.sh: metersim's M-Bus gateways over TCP.  REQ_UD2 to a primary
# address and to a meter selected by its secondary address answer with the
# model's values (`metersim expect` registers, `metersim info` instant
# values); a repeated request with the same FCB gets the same telegram; a
# wildcard selection that matches several meters collides; answers take
# the time the bytes need at the configured baud rate; the second bus
# serves meters 250 on.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim_lib.sh"

SEED=5
N=300
START=2024-03-01T12:00:00Z
T=1709294400
fleet=(--seed $SEED --count $N)
base=$(sim_base_port 2)
sim_start mbus "${fleet[@]}" --transport mbus --base-port "$base" --speed 0 --start $START --baud 9600
"$METERSIM" export "${fleet[@]}" --transport mbus --base-port "$base" >"$SIM_WORK/inv.csv"

truth() {
	"$METERSIM" expect "${fleet[@]}" --meter "$1" --from $((T - 60)) --to $T --format csv \
		--what registers | grep -E '^register,.*,1-0:(1\.8\.[0-2]|2\.8\.0)\.255,' | sort
}
instant() {
	"$METERSIM" info "${fleet[@]}" --meter "$1" --at $START |
		python3 -c 'import json,sys; d=json.load(sys.stdin)["instant"]
print("power_w,%d" % d["p_import_w"])
for i in range(3): print("voltage_dv_%d,%d" % (i, d["voltage_dv"][i]))
for i in range(3): print("current_ma_%d,%d" % (i, d["current_ma"][i]))'
}

for row in 2 262; do # inventory rows: meter index 0 (bus 0, address 1), 260 (bus 1, address 11)
	IFS=, read -r serial _ _ _ _ _ _ _ _ _ _ _ _ _ gw prim _ <<<"$(sed -n ${row}p "$SIM_WORK/inv.csv")"
	got=$("$CHECK" --check mbus "$gw" --addr "$prim" --at $T) || fail "REQ_UD2 $gw/$prim: $got"
	expect_eq "primary $gw/$prim: meter id" "meter,$serial" "$(grep '^meter,' <<<"$got")"
	expect_eq "primary $gw/$prim: energies equal expect" "$(truth "$serial")" \
		"$(grep '^register,' <<<"$got" | sort)"
	expect_eq "primary $gw/$prim: power, voltages, currents equal info" "$(instant "$serial")" \
		"$(grep -E '^(power_w|voltage|current)' <<<"$got")"
done

IFS=, read -r serial _ _ _ _ _ _ _ _ _ _ _ _ _ gw prim sec <<<"$(sed -n 42p "$SIM_WORK/inv.csv")"
got=$("$CHECK" --check mbus "$gw" --secondary "$serial" --at $T) || fail "secondary: $got"
expect_eq "secondary address $serial selects that meter" "meter,$serial" "$(grep '^meter,' <<<"$got")"
expect_eq "secondary address: energies equal expect" "$(truth "$serial")" \
	"$(grep '^register,' <<<"$got" | sort)"

got=$("$CHECK" --check mbus "$gw" --addr "$prim" --fcb-repeat --at $T)
expect_match "same FCB twice: the same telegram again" '^fcb_repeat,same' "$got"

# a selection by wildcard: the first six digits, two 'F' nibbles
got=$("$CHECK" --check mbus "$gw" --secondary "${serial:0:6}FF" 2>&1)
n=$(awk -F, -v p="${serial:0:6}" -v g="$gw" 'NR > 1 && $15 == g && substr($1, 1, 6) == p' \
	"$SIM_WORK/inv.csv" | wc -l)
expect_eq "wildcard ${serial:0:6}FF matches one meter on this bus" 1 "$n"
expect_match "wildcard matching one meter selects it" "meter,$serial" "$got"
# all-wildcard identification: every meter on the bus answers the selection
got=$("$CHECK" --check mbus "$gw" --secondary FFFFFFFF 2>&1)
expect_match "wildcard matching 250 meters: the ACKs collide" 'error,select,garbled' "$got"
got=$("$CHECK" --check mbus "$gw" --secondary 00000000 2>&1)
expect_match "a secondary address nobody has: no answer" 'error,select,no answer' "$got"

# bus timing: at 300 Bd a REQ_UD2 (5 bytes) and its answer (~90 bytes) take ~3.5 s
sim_stop mbus
base=$(sim_base_port 2)
sim_start slow "${fleet[@]}" --transport mbus --base-port "$base" --speed 0 --start $START --baud 300
t0=$(date +%s%N)
"$CHECK" --check mbus "127.0.0.1:$base" --addr 3 >/dev/null || fail "slow bus read"
ms=$((($(date +%s%N) - t0) / 1000000))
[ $ms -ge 3000 ] || fail "300 Bd answer came after $ms ms"
ok "300 Bd: SND_NKE + REQ_UD2 took $ms ms (bytes x 11 bits / baud)"
