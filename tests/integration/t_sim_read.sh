#!/bin/bash
# t_sim_read.sh: `ammctl read` against metersim over every transport, in
# every security mode metersim has for DLMS, each value compared with
# `metersim expect` (registers) or `metersim info` (instantaneous values)
# at the simulated instant (--speed 0 from a fixed --start):
#
#   wrapper, HDLC     --host:   none, LLS, HLS-GMAC without and with ciphering
#   GPRS              --listen: the same four; the meter connects in and
#                               pushes a DataNotification first (--push)
#   M-Bus gateway     --mbus --primary N and --secondary ID
#   Modbus gateway    --modbus --unit N (the map named and found by default)
#
# and the refusals: a wrong LLS password, wrong HLS keys, an OBIS the
# readout lacks, a Modbus unit without a meter.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim_lib.sh"

SEED=13
N=8
START=2024-03-01T12:00:00Z
T=1709294400 # $START in epoch seconds
MAP=$ROOT/meterlib/maps/kamstrup382.map
fleet=(--seed $SEED --count $N)
REGS='1-0:(1\.8\.[0-2]|[2-4]\.8\.0)\.255'

# expect's registers of SERIAL at T as "OBIS VALUE" lines, sorted
truth() {
	"$METERSIM" expect "${fleet[@]}" --meter "$1" --from $((T - 60)) --to $T --format csv \
		--what registers | awk -F, -v re="^$REGS\$" '$1 == "register" && $3 ~ re { print $3, $4 }' |
		sort
}
# a reading's scaled value from ammctl's JSON: one object, or "readings"
json_get() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# numbers as "%.6f" less trailing zeros, on both sides of a comparison
FMT='def fmt(v): return ("%.6f" % v).rstrip("0").rstrip(".")'
readings() { # "OBIS VALUE" of every reading whose OBIS matches $1, sorted
	python3 -c "$FMT"'
import json,re,sys
for r in json.load(sys.stdin)["readings"]:
    if re.fullmatch(sys.argv[1], r["obis"]): print(r["obis"], fmt(r["scaled"]))' "$1" | sort
}
# the meter of inventory row in $inv with security $1 (first one)
serial_with() { awk -F, -v s="$1" 'NR > 1 && $9 == s { print $1; exit }' "$inv"; }

# dlms_args SERIAL MODE: ammctl's connection options for a meter of the
# inventory $inv; MODE none|lls|hls|hls-cipher
dlms_args() {
	local line host port client sec ek ak pw
	line=$(grep "^$1," "$inv")
	IFS=, read -r _ _ _ host port _ client _ sec ek ak pw _ <<<"$line"
	args=(--client "$client")
	[ -n "$host" ] && args+=(--host "$host" --port "$port")
	case $2 in
	none) args+=(--auth none) ;;
	lls) args+=(--auth lls --password "$pw") ;;
	hls) args+=(--auth hls-gmac --ek "$ek" --ak "$ak") ;;
	hls-cipher) args+=(--auth hls-gmac --cipher --ek "$ek" --ak "$ak") ;;
	esac
}
# expect_truth WHAT WANT GOT: expect_eq, and the ground truth is not empty
expect_truth() {
	[ -n "$2" ] || fail "$1: no ground truth"
	expect_eq "$@"
}
sec_of() { case $1 in hls*) echo hls-gmac ;; *) echo "$1" ;; esac; }

# check_dlms LABEL SERIAL ARGS...: A+ and A+ tariff 1 read one by one equal expect
check_dlms() {
	local label=$1 serial=$2 want got o
	shift 2
	want=$(truth "$serial" | awk '$1 ~ /^1-0:1\.8\.[01]\.255$/')
	got=$(for o in 1-0:1.8.0.255 1-0:1.8.1.255; do
		printf '%s ' $o
		"$AMMCTL" read "$@" $o | json_get 'd["scaled"]' || echo "read failed"
	done)
	expect_truth "$label: A+ and A+ T1 of $serial equal expect" "$want" "$got"
}

# ---- DLMS over the wrapper and over HDLC, dialled -----------------------------
for tr in tcpip hdlc; do
	base=$(sim_base_port $N)
	hd=()
	[ $tr = hdlc ] && hd=(--hdlc)
	sim_start $tr "${fleet[@]}" --transport $tr --base-port "$base" --speed 0 --start $START
	inv=$SIM_WORK/$tr.csv
	"$METERSIM" export "${fleet[@]}" --transport $tr --base-port "$base" >"$inv"
	for mode in none lls hls hls-cipher; do
		serial=$(serial_with "$(sec_of $mode)")
		[ -n "$serial" ] || fail "no $(sec_of $mode) meter in the fleet"
		dlms_args "$serial" $mode
		check_dlms "$tr, $mode" "$serial" "${args[@]}" "${hd[@]}"
	done
	serial=$(serial_with lls)
	dlms_args "$serial" lls
	out=$("$AMMCTL" read "${args[@]}" "${hd[@]}" --password wrong 1-0:1.8.0.255 2>&1)
	expect_eq "$tr: LLS with a wrong password exits 1" 1 $?
	expect_match "$tr: ... refused by the meter" 'association rejected' "$out"
	serial=$(serial_with hls-gmac)
	dlms_args "$serial" hls-cipher
	out=$("$AMMCTL" read "${args[@]}" "${hd[@]}" --ak 000102030405060708090a0b0c0d0e0f \
		1-0:1.8.0.255 2>&1)
	expect_eq "$tr: HLS-GMAC with a wrong authentication key exits 1" 1 $?
	expect_match "$tr: ... the meter does not authenticate it" 'rejected|authentication' "$out"
	sim_stop $tr
done

# ---- GPRS: the meter connects in ------------------------------------------------
inv=$SIM_WORK/gprs.csv
"$METERSIM" export "${fleet[@]}" --transport gprs >"$inv"
port=$(sim_base_port 1)
for sec in none lls hls-gmac; do
	serial=$(serial_with $sec)
	index=$(awk -F, -v s="$serial" '$1 == s { print NR - 2 }' "$inv")
	modes=$sec
	[ $sec = hls-gmac ] && modes="hls hls-cipher"
	first=1
	for mode in $modes; do
		dlms_args "$serial" $mode
		"$AMMCTL" read --listen "127.0.0.1:$port" --wait 20000 "${args[@]}" 1-0:1.8.0.255 \
			>"$SIM_WORK/l.json" 2>"$SIM_WORK/l.err" &
		apid=$!
		if [ $first = 1 ]; then
			# this one meter of the fleet connects out to us (and after
			# the hang-up again, 1-2 s later)
			sleep 0.2
			sim_start gprs_${sec/-/_} "${fleet[@]}" --transport gprs --gprs-connect "127.0.0.1:$port" \
				--gprs-max 1 --first "$index" --push --speed 0 --start $START
			first=0
		fi
		wait $apid || fail "GPRS $mode: ammctl read --listen: $(cat "$SIM_WORK/l.err")"
		expect_match "GPRS $mode: meter $serial connected in" \
			'a meter connected from 127\.0\.0\.1 port' "$(cat "$SIM_WORK/l.err")"
		want=$(truth "$serial" | awk '$1 == "1-0:1.8.0.255" { print $2 }')
		expect_truth "GPRS $mode: A+ of $serial equals expect" "$want" \
			"$(json_get 'd["scaled"]' <"$SIM_WORK/l.json")"
	done
	sim_stop gprs_${sec/-/_}
done
out=$("$AMMCTL" read --listen "127.0.0.1:$port" --wait 500 1-0:1.8.0.255 2>&1)
expect_eq "GPRS: nobody connects within --wait: exit 1" 1 $?
expect_match "... and says so" 'no meter connected to 127\.0\.0\.1:[0-9]+ within 500 ms' "$out"

# ---- M-Bus gateway ----------------------------------------------------------------
base=$(sim_base_port 1)
sim_start mbus "${fleet[@]}" --transport mbus --base-port "$base" --speed 0 --start $START --baud 9600
inv=$SIM_WORK/mbus.csv
"$METERSIM" export "${fleet[@]}" --transport mbus --base-port "$base" >"$inv"
instant() { # SERIAL: power, voltages and currents as `metersim info` has them
	"$METERSIM" info "${fleet[@]}" --meter "$1" --at $START | python3 -c "$FMT"'
import json,sys
d = json.load(sys.stdin)["instant"]
print("1-0:1.7.0.255", fmt(d["p_import_w"]))
for i, c in enumerate((32, 52, 72)): print("1-0:%d.7.0.255" % c, fmt(d["voltage_dv"][i] / 10))
for i, c in enumerate((31, 51, 71)): print("1-0:%d.7.0.255" % c, fmt(d["current_ma"][i] / 1000))' |
		sort
}
IFS=, read -r serial _ _ _ _ _ _ _ _ _ _ _ _ _ gw prim _ <<<"$(sed -n 3p "$inv")"
out=$("$AMMCTL" read --mbus "$gw" --primary "$prim") || fail "mbus primary $prim: $out"
expect_eq "M-Bus primary $prim: the meter is $serial" "$serial" "$(json_get 'd["id"]' <<<"$out")"
want=$(truth "$serial" | awk '$1 ~ /^1-0:(1\.8\.[0-2]|2\.8\.0)\.255$/')
expect_truth "M-Bus primary $prim: energies equal expect" "$want" \
	"$(readings '1-0:(1\.8\.[0-2]|2\.8\.0)\.255' <<<"$out")"
expect_truth "M-Bus primary $prim: power, voltages, currents equal info" "$(instant "$serial")" \
	"$(readings '1-0:(1|3[12]|5[12]|7[12])\.7\.0\.255' <<<"$out")"
IFS=, read -r serial _ _ _ _ _ _ _ _ _ _ _ _ _ gw prim sec <<<"$(sed -n 7p "$inv")"
out=$("$AMMCTL" read --mbus "$gw" --secondary "$sec" 1-0:1.8.0.255) || fail "mbus secondary: $out"
expect_truth "M-Bus secondary $sec: A+ of $serial equals expect" \
	"$(truth "$serial" | awk '$1 == "1-0:1.8.0.255" { print $2 }')" "$(json_get 'd["scaled"]' <<<"$out")"
out=$("$AMMCTL" read --mbus "$gw" --secondary "$serial" 1-0:2.8.0.255 1-0:1.8.1.255) ||
	fail "mbus secondary by id: $out"
expect_truth "M-Bus secondary ${serial} (id only): A- and A+ T1 equal expect" \
	"$(truth "$serial" | awk '$1 ~ /^1-0:(2\.8\.0|1\.8\.1)\.255$/')" \
	"$(readings '.*' <<<"$out")"
out=$("$AMMCTL" read --mbus "$gw" --primary "$prim" 1-0:3.8.0.255 2>&1)
expect_eq "M-Bus: an OBIS the telegram lacks exits 1" 1 $?
expect_match "... naming it" 'readout has no 1-0:3\.8\.0\.255' "$out"
sim_stop mbus

# ---- Modbus gateway ---------------------------------------------------------------
base=$(sim_base_port 1)
sim_start modbus "${fleet[@]}" --transport modbus --base-port "$base" --speed 0 --start $START \
	--modbus-map "$MAP"
inv=$SIM_WORK/modbus.csv
"$METERSIM" export "${fleet[@]}" --transport modbus --base-port "$base" >"$inv"
IFS=, read -r serial _ _ _ _ _ _ _ _ _ _ _ _ _ gw unit _ <<<"$(sed -n 4p "$inv")"
for _ in 1 2 3 4 5 6 7 8 9 10; do # the gateway thread may still be starting
	out=$("$AMMCTL" read --modbus "$gw" --unit "$unit" --map "$MAP" 2>&1) && break
	sleep 0.2
done
expect_truth "Modbus unit $unit: energies equal expect" "$(truth "$serial")" \
	"$(readings "$REGS" <<<"$out")"
expect_truth "Modbus unit $unit: power and voltages equal info" \
	"$(instant "$serial" | awk '$1 ~ /^1-0:(1|32|52|72)\./')" \
	"$(readings '1-0:(1|32|52|72)\.7\.0\.255' <<<"$out")"
IFS=, read -r serial _ _ _ _ _ _ _ _ _ _ _ _ _ gw unit _ <<<"$(sed -n 9p "$inv")"
out=$(cd "$ROOT" && "$AMMCTL" read --modbus "$gw" --unit "$unit" 1-0:1.8.0.255) ||
	fail "modbus, default map: $out"
expect_truth "Modbus unit $unit, map found as ammd finds it: A+ of $serial equals expect" \
	"$(truth "$serial" | awk '$1 == "1-0:1.8.0.255" { print $2 }')" "$(json_get 'd["scaled"]' <<<"$out")"
out=$("$AMMCTL" read --modbus "$gw" --unit 200 --map "$MAP" --timeout 2000 2>&1)
expect_eq "Modbus unit without a meter exits 1" 1 $?
expect_match "... with the gateway's answer" "Modbus unit 200 at $gw: " "$out"
sim_stop modbus
