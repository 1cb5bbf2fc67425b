#!/bin/bash
# t_demo.sh: `make demo` (tests/demo.sh) end to end, without a terminal.
#
#   1. With DEMO_SECONDS=45 and stdin not a terminal, the demo starts its
#      own PostgreSQL, mosquitto, metersim (1,000 meters) and ammd, stops by
#      itself and exits 0; its output shows the round progressing in
#      `ammctl status` (more meters read at the end than at the start),
#      five decoded MQTT messages, and a summary with readings, intervals
#      and events stored; afterwards no process of the run is left and its
#      directory is gone.
#   2. Interrupted with SIGINT (what Ctrl-C sends) while collecting, it
#      stops everything within a bounded time and leaves nothing behind.
#
# The demo picks its own free ports, so it runs beside run.sh's services.
. "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$root/build}
export BUILD
for p in ammctl ammd metersim; do [ -x "$BUILD/$p" ] || fail "no $BUILD/$p"; done

dir=$(mktemp -d /tmp/t_demo.XXXXXX) || fail "mktemp"
chmod 755 "$dir"
lib_cleanup_add rm -rf "$dir"
out=$dir/out

# Processes whose command line names the run's directory (postgres -D,
# mosquitto -c, metersim --control, ammd -f all do).
leftovers() {
	local w=$1 p
	for p in /proc/[0-9]*; do
		tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- "$w" && echo "${p#/proc/}: $(tr '\0' ' ' <"$p/cmdline")"
	done
	return 0
}
workdir() { sed -n 's/^== ammd demo: .* data in \(.*\)$/\1/p' "$1" | head -1; }

# ---- 1. a bounded run ------------------------------------------------------------

DEMO_DIR=$dir DEMO_SECONDS=45 timeout -k 10 200 "$root/tests/demo.sh" </dev/null >"$out" 2>&1
rc=$?
[ $rc = 0 ] || fail "demo exited $rc: $(tail -40 "$out")"
ok "demo without a terminal stops by itself and exits 0"

w=$(workdir "$out")
[ -n "$w" ] || fail "the demo does not say where its data is: $(head -5 "$out")"
case $w in "$dir"/*) ;; *) fail "data not under DEMO_DIR: $w" ;; esac
ok "data under DEMO_DIR ($w)"

reads=$(sed -n 's/.*%  \([0-9]*\) of 1000 read$/\1/p' "$out")
first=$(echo "$reads" | head -1)
last=$(echo "$reads" | tail -1)
[ "$(echo "$reads" | wc -l)" -ge 5 ] || fail "fewer than 5 status refreshes: $reads"
[ -n "$last" ] && [ "$last" -gt 0 ] && [ "$last" -gt "$first" ] ||
	fail "the round did not progress (first $first, last $last): $(grep -A12 'ammctl status' "$out" | tail -14)"
ok "ammctl status refreshed, round progressing: $first -> $last of 1000 read"
grep -q '^round .*window from ' "$out" && grep -q '^fleet  *1000 meters, 1000 enabled' "$out" ||
	fail "status lacks the fleet or round lines"
ok "status shows the fleet of 1000 and the collection window"

hdrs=$(grep -cE '^ammd/v1/meter/[0-9]+/(registers|profile|events|state)  ammd\.(Registers|ProfileBlock|Events|MeterState), [0-9]+ bytes' "$out")
[ "$hdrs" -ge 5 ] || fail "fewer than 5 decoded MQTT messages ($hdrs): $(sed -n '/MQTT messages/,+30p' "$out")"
grep -qE '^  "meter": "[0-9]+",$' "$out" || fail "no decoded payload field in the MQTT output"
ok "five MQTT messages shown, decoded ($hdrs headers)"

val() { sed -n "s/^   $1 \([0-9]*\)$/\1/p" "$out" | tail -1; }
for what in "meters read:" "register readings:" "load-profile intervals:" "events:"; do
	v=$(val "$what")
	[ -n "$v" ] && [ "$v" -gt 0 ] || fail "summary: '$what' is '${v:-missing}': $(sed -n '/what was collected/,+8p' "$out")"
done
ok "collected: $(val 'meters read:') meters, $(val 'register readings:') registers, $(val 'load-profile intervals:') intervals, $(val 'events:') events"
[ "$(val 'meters read:')" = "$last" ] || [ "$(val 'meters read:')" -ge "$last" ] ||
	fail "summary counts fewer meters than status showed"

grep -q '^demo: everything stopped$' "$out" || fail "no final line"
left=$(leftovers "$w")
[ -z "$left" ] || fail "processes left behind: $left"
[ ! -e "$w" ] || fail "$w left behind"
ok "nothing left running, directory removed"

# ---- 2. Ctrl-C ----------------------------------------------------------------------
# A shell starts background commands with SIGINT ignored, and an ignored
# signal cannot be trapped: start the demo with SIGINT at its default, as
# a terminal's foreground job has it.
out2=$dir/out2
DEMO_DIR=$dir python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$root/tests/demo.sh" </dev/null >"$out2" 2>&1 &
pid=$!
lib_cleanup_add "kill $pid"
i=0
until grep -q "^== ammctl status" "$out2" 2>/dev/null; do
	kill -0 $pid 2>/dev/null || fail "demo ended early: $(tail -20 "$out2")"
	[ $i -gt 900 ] && fail "demo did not reach the status view in 90 s"
	sleep 0.1
	i=$((i + 1))
done
w2=$(workdir "$out2")
sleep 3
kill -INT $pid
s=$(date +%s)
i=0
while kill -0 $pid 2>/dev/null; do
	[ $i -gt 900 ] && fail "demo still running 90 s after SIGINT"
	sleep 0.1
	i=$((i + 1))
done
wait $pid
rc=$?
took=$(($(date +%s) - s))
[ $rc = 130 ] || fail "exit status $rc after SIGINT, want 130: $(tail -20 "$out2")"
grep -q '^demo: everything stopped$' "$out2" || fail "no final line after SIGINT: $(tail -20 "$out2")"
left=$(leftovers "$w2")
[ -z "$left" ] || fail "processes left behind after SIGINT: $left"
[ ! -e "$w2" ] || fail "$w2 left behind after SIGINT"
ok "SIGINT: everything stopped in $took s, exit 130, nothing left"
