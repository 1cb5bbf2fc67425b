#!/bin/bash
# t_sim_faults.sh: metersim's fault injection, set at start (--faults) and
# changed at run time through the control socket, fires as configured and
# the client sees it: refused connections, dropped, stalled, aborted and
# truncated sessions, delayed answers, corrupted bytes (checksum failures),
# an invocation counter that is reset or replayed (the client refuses the
# answers), a busy gateway, M-Bus meters that do not answer or collide.
# The counters of the control socket count what fired.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim_lib.sh"

SEED=3
N=40
START=2024-03-01T12:00:00Z
fleet=(--seed $SEED --count $N)
base=$(sim_base_port $N)
"$METERSIM" export "${fleet[@]}" --transport tcpip --base-port "$base" >"$SIM_WORK/inv.csv"
none=$(awk -F, 'NR > 1 && $9 == "none" { print $1; exit }' "$SIM_WORK/inv.csv")
none2=$(awk -F, 'NR > 1 && $9 == "none" { n++; if (n == 2) { print $1; exit } }' "$SIM_WORK/inv.csv")
hls=$(awk -F, 'NR > 1 && $9 == "hls-gmac" { print $1; exit }' "$SIM_WORK/inv.csv")
sim_start dlms "${fleet[@]}" --transport tcpip --base-port "$base" --speed 0 --start $START \
	--faults "refuse@$none2"

# rd SERIAL [check args]: one session (registers unless --ops says otherwise)
rd() {
	local line host port client sec ek ak
	line=$(grep "^$1," "$SIM_WORK/inv.csv")
	IFS=, read -r _ _ _ host port _ client _ sec ek ak _ <<<"$line"
	"$CHECK" --check dlms "$host:$port" --security "$sec" --client "$client" \
		${ek:+--ek "$ek" --ak "$ak"} "${@:2}" 2>&1
}
fired() { sim_ctl counters | awk -F= -v k="fault_$1" '$1 == k { print $2 }'; }

expect_match "--faults at start: $none2 refuses connections" '^error,connect,refused' "$(rd "$none2")"
expect_match "the meter without faults is read" '^register,' "$(rd "$none")"

sim_ctl fault "refuse@$none" >/dev/null || fail "ctl fault"
expect_match "refuse set at run time: connection refused" '^error,connect,refused' "$(rd "$none")"
expect_match "faults lists the meter's set" "^$none refuse=1" "$(sim_ctl faults)"
sim_ctl clear "$none" >/dev/null
expect_match "cleared: read again" '^register,' "$(rd "$none")"
[ "$(fired refuse)" -ge 2 ] || fail "refusals not counted"
ok "refusals counted ($(fired refuse): listeners closed while refusing)"

sim_ctl fault "drop@$none" >/dev/null
expect_match "drop: the session is closed under the request" '^error,.*aborted' "$(rd "$none")"
sim_ctl clear "$none" >/dev/null
sim_ctl fault "abort@$none" >/dev/null
expect_match "abort: the association is lost" '^error,.*aborted' "$(rd "$none")"
sim_ctl clear "$none" >/dev/null

sim_ctl fault "delay=1200@$none" >/dev/null
t0=$(date +%s%N)
out=$(rd "$none" --ops ic)
ms=$((($(date +%s%N) - t0) / 1000000))
expect_match "delay: the read still succeeds" '^result,ic,ok' "$out"
[ $ms -ge 2400 ] || fail "two delayed answers came after $ms ms"
ok "delay: AARE and GET answered after $ms ms (2 x 1200 ms)"
sim_ctl clear "$none" >/dev/null

sim_ctl fault "stall=1000@$none" >/dev/null
expect_match "stall: no answer, then the connection closes" '^error,associate,aborted' "$(rd "$none")"
sim_ctl clear "$none" >/dev/null

sim_ctl fault "truncate@$none" >/dev/null
expect_match "truncate: half an answer, then nothing" '^error,associate,(timed out|aborted)' \
	"$(rd "$none")"
sim_ctl clear "$none" >/dev/null

sim_ctl fault "corrupt=0.2@$none" >/dev/null
out=$(rd "$none" --ops ic)
expect_match "corrupt: the client cannot use the answers" '^error,' "$out"
[ "$(fired corrupt)" -ge 1 ] || fail "corrupted bytes not counted"
ok "corrupted bytes counted ($(fired corrupt))"
sim_ctl clear "$none" >/dev/null

# invocation counter: what the client saw last, then a reset / a replay
ic=$(rd "$hls" --ops ic | awk -F, '$1 == "ic_seen" { print $2 }')
[ -n "$ic" ] && [ "$ic" -gt 0 ] || fail "no invocation counter from $hls"
ok "HLS-GMAC session ends with server counter $ic"
sim_ctl fault "ic_reset@$hls" >/dev/null
expect_match "counter reset: the client refuses (replay)" '(error|result),.*replay' \
	"$(rd "$hls" --ops ic --ic "$ic")"
sim_ctl clear "$hls" >/dev/null
ic=$(rd "$hls" --ops ic | awk -F, '$1 == "ic_seen" { print $2 }')
sim_ctl fault "ic_replay@$hls" >/dev/null
expect_match "counter replayed: the client refuses the repeated counter" '(error|result),.*replay' \
	"$(rd "$hls" --ops registers,ic --ic "$ic")"
sim_ctl clear "$hls" >/dev/null
[ "$(fired ic_reset)" -ge 1 ] && [ "$(fired ic_replay)" -ge 1 ] || fail "counter faults not counted"
ok "counter faults counted"
sim_stop dlms

# gateways
base=$(sim_base_port 1)
sim_start mbus "${fleet[@]}" --transport mbus --base-port "$base" --speed 0 --start $START --baud 9600
gw=127.0.0.1:$base
sim_ctl fault noanswer >/dev/null
expect_match "M-Bus noanswer: REQ_UD2 gets nothing" '^error,req_ud2,no answer' \
	"$("$CHECK" --check mbus $gw --addr 2)"
sim_ctl clear >/dev/null
sim_ctl fault collision >/dev/null
expect_match "M-Bus collision: a garbled telegram" '^error,frame,' "$("$CHECK" --check mbus $gw --addr 2)"
sim_ctl clear >/dev/null
sim_ctl fault corrupt=0.2 >/dev/null
expect_match "M-Bus corrupt: checksum failures" '^error,frame,' "$("$CHECK" --check mbus $gw --addr 2)"
sim_ctl clear >/dev/null
sim_ctl fault busy >/dev/null
expect_match "busy gateway: the connection is reset at once" '^error,(connect|snd_nke)' "$("$CHECK" --check mbus $gw --addr 2)"
sim_ctl clear >/dev/null
expect_match "no faults: read" '^register,' "$("$CHECK" --check mbus $gw --addr 2)"
out=$(sim_ctl counters)
for k in noanswer collision corrupt busy; do
	expect_match "M-Bus $k counted" "^fault_$k=[1-9]" "$out"
done
sim_stop mbus

base=$(sim_base_port 1)
sim_start mb "${fleet[@]}" --transport modbus --base-port "$base" --speed 0 --start $START \
	--modbus-map "$ROOT/meterlib/maps/kamstrup382.map" --faults busy
sleep 0.3
expect_match "Modbus busy: server-busy exception" '^error,read,Slave device or server is busy' \
	"$("$CHECK" --check modbus 127.0.0.1:$base --unit 1 --map "$ROOT/meterlib/maps/kamstrup382.map")"
sim_ctl fault none noanswer >/dev/null
expect_match "Modbus noanswer: gateway-target exception" '^error,read,Target device failed to respond' \
	"$("$CHECK" --check modbus 127.0.0.1:$base --unit 1 --map "$ROOT/meterlib/maps/kamstrup382.map")"
