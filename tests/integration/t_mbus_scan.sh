#!/bin/bash
# t_mbus_scan.sh: `ammctl mbus scan` and `ammctl mbus read` against
# metersim's M-Bus gateway.  A scan of a 250-meter bus whose telegrams
# collide (fault collision) finds every meter, each once, with the
# secondary address the inventory has; the probe count is printed for the
# report.  A scan under a mask finds only the meters under it.  A read by
# primary and by secondary address returns that meter's telegram.  A line
# slower than ammctl is told (every answer after its timeout, as on a busy
# host) still yields every meter under a mask: the late answers show as
# late, stray and repeated probes, never as missing meters.
. "$(dirname "$0")/lib.sh"
# private copies: the shared build tree may be relinked while we run
lib_snap METERSIM "${BUILD:-build}/metersim"
. "$(dirname "$0")/sim_lib.sh"
AMMCTL=${AMMCTL:-$BUILD/ammctl}

SEED=11
N=250
START=2024-03-01T12:00:00Z
fleet=(--seed $SEED --count $N)
base=$(sim_base_port 1)
gw=127.0.0.1:$base
# 38400 Bd and a small reply time keep the run short; the algorithm and the
# probe count do not depend on them
bus=(--baud 38400 --latency 0 --reply-ms 5)
sim_start mbus "${fleet[@]}" --transport mbus --base-port "$base" --speed 0 --start $START \
	--baud 38400 --faults collision=0.2
"$METERSIM" export "${fleet[@]}" --transport mbus --base-port "$base" >"$SIM_WORK/inv.csv"

t0=$(date +%s%N)
"$AMMCTL" mbus scan "$gw" "${bus[@]}" --json >"$SIM_WORK/scan.json" || fail "scan: $(cat "$SIM_WORK/scan.json")"
ms=$((($(date +%s%N) - t0) / 1000000))
read -r found probes requests collisions unresolved late < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["found"], d["probes"], d["requests"], d["collisions"], d["unresolved"],
      "%d/%d/%d" % (d["late"], d["stray"], d["repeated"]))' "$SIM_WORK/scan.json")
expect_eq "scan finds all $N meters" $N "$found"
expect_eq "no meter left unresolved" 0 "$unresolved"
expect_eq "every secondary address equals the inventory's, each once" \
	"$(awk -F, 'NR > 1 { print tolower($17) }' "$SIM_WORK/inv.csv" | sort)" \
	"$(python3 -c 'import json, sys
for m in json.load(open(sys.argv[1]))["meters"]: print(m["secondary"].lower())' "$SIM_WORK/scan.json" | sort)"
[ "$probes" -lt 5000 ] || fail "$probes probes: not a tree search"
fired=$(sim_ctl counters | sed -n 's/^fault_collision=//p')
[ "${fired:-0}" -gt 0 ] || fail "no collision fired"
ok "scan of $N meters: $probes probes, $requests requests on the bus, $collisions garbled answers (the simulator counted $fired collisions: ACKs and injected telegram faults), late/stray answers and repeated probes $late, $ms ms at 38400 Bd"

# a mask: the meters whose id starts with the first digit of row 2's serial
d=$(sed -n 2p "$SIM_WORK/inv.csv" | cut -c1)
want=$(awk -F, -v d="$d" 'NR > 1 && substr($1, 1, 1) == d' "$SIM_WORK/inv.csv" | wc -l)
out=$("$AMMCTL" mbus scan "$gw" "${bus[@]}" --mask "${d}FFFFFFF") || fail "masked scan: $out"
expect_match "scan under mask ${d}FFFFFFF finds the $want meters under it" "^found $want meters with" "$(tail -1 <<<"$out")"
expect_eq "masked scan lists only ids starting with $d" "$want" "$(grep -c "^$d" <<<"$out")"

# one telegram by primary and by secondary address
sim_ctl clear >/dev/null
IFS=, read -r serial _ _ _ _ _ _ _ _ _ _ _ _ _ _ prim sec <<<"$(sed -n 8p "$SIM_WORK/inv.csv")"
got=$("$AMMCTL" mbus read "$gw" "$prim" "${bus[@]}") || fail "read $prim: $got"
expect_match "read by primary address $prim: meter $serial" "\"id\": \"$serial\"" "$got"
got=$("$AMMCTL" mbus read "$gw" "$sec" "${bus[@]}") || fail "read $sec: $got"
expect_match "read by secondary address $sec: meter $serial" "\"id\": \"$serial\"" "$got"
expect_match "the telegram's records are decoded" '"quantity": "energy"' "$got"
got=$("$AMMCTL" mbus read "$gw" 00000001 "${bus[@]}" 2>&1)
expect_status "a secondary address nobody has fails" 1 "$AMMCTL" mbus read "$gw" 00000001 "${bus[@]}"
expect_match "and says so" "not found" "$got"

# A line four times slower than ammctl is told: the simulator's bus runs at
# 9600 Bd while ammctl times its requests for 38400 Bd, so every answer
# (E5 after ~21 ms, timeout ~19 ms) comes after its timeout, as when the
# host or the gateway is too busy.  Under the two-digit prefix that most
# meters share, the scan must find each of them all the same, and say that
# answers came late.
sbase=$(sim_base_port 1)
sim_start slow "${fleet[@]}" --transport mbus --base-port "$sbase" --speed 0 --start $START \
	--baud 9600 --faults collision=0.2
read -r cnt pre < <(awk -F, 'NR > 1 { print substr($1, 1, 2) }' "$SIM_WORK/inv.csv" | sort | uniq -c | sort -k1,1nr -k2 | head -1)
t0=$(date +%s%N)
"$AMMCTL" mbus scan "127.0.0.1:$sbase" "${bus[@]}" --mask "${pre}FFFFFF" --json >"$SIM_WORK/slow.json" ||
	fail "slow-line scan: $(cat "$SIM_WORK/slow.json")"
ms=$((($(date +%s%N) - t0) / 1000000))
read -r sfound sprobes slate sstray srep < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["found"], d["probes"], d["late"], d["stray"], d["repeated"])' "$SIM_WORK/slow.json")
expect_eq "slow line: the scan under ${pre}FFFFFF finds the $cnt meters under it, each once" \
	"$(awk -F, -v p="$pre" 'NR > 1 && substr($1, 1, 2) == p { print tolower($17) }' "$SIM_WORK/inv.csv" | sort)" \
	"$(python3 -c 'import json, sys
for m in json.load(open(sys.argv[1]))["meters"]: print(m.get("secondary", "error").lower())' "$SIM_WORK/slow.json" | sort)"
expect_eq "slow line: found $cnt" "$cnt" "$sfound"
[ $((slate + sstray)) -gt 0 ] || fail "slow line: no answer counted late or stray"
ok "slow line: $cnt meters in $sprobes probes ($srep repeated), $slate answers late, $sstray stray, $ms ms"
