#!/bin/sh
# run.sh: the `make bench` driver.  Runs every benchmark program the build
# made (build/bench_*, or $BUILD/bench_*), each once, and prints its figures
# under a heading; benchmarks added later are picked up by name.  Exits
# non-zero when any benchmark fails, after running the rest.
BUILD=${BUILD:-build}
status=0
found=0
for b in "$BUILD"/bench_*; do
	[ -x "$b" ] && [ -f "$b" ] || continue
	case "$b" in *.o | *.d) continue ;; esac
	found=$((found + 1))
	echo "== ${b##*/}"
	start=$(date +%s)
	if "$b"; then
		echo "   (${b##*/}: $(($(date +%s) - start)) s)"
	else
		rc=$?
		echo "bench: ${b##*/} failed with exit code $rc" >&2
		status=1
	fi
done
# The fleet-scale round (a shell script, not a build/bench_* program):
# 20,000 meters by default; the full 100,000 with `make bench SCALE=100000`
# or BENCH_SCALE=1 (tens of minutes on two cores).
here=$(cd "$(dirname "$0")" && pwd)
if [ -x "$here/bench_scale.sh" ] && [ -x "$BUILD/ammd" ] && [ -x "$BUILD/metersim" ]; then
	found=$((found + 1))
	echo "== bench_scale (${SCALE:-$([ "${BENCH_SCALE:-0}" = 1 ] && echo 100000 || echo 20000)} meters)"
	start=$(date +%s)
	if BUILD=$BUILD "$here/bench_scale.sh"; then
		echo "   (bench_scale: $(($(date +%s) - start)) s)"
	else
		echo "bench: bench_scale failed with exit code $?" >&2
		status=1
	fi
fi
# Operator command latency, insert to verified result (bench_cmd.sh).
if [ -x "$here/bench_cmd.sh" ] && [ -x "$BUILD/ammd" ] && [ -x "$BUILD/metersim" ]; then
	found=$((found + 1))
	echo "== bench_cmd"
	if BUILD=$BUILD "$here/bench_cmd.sh"; then :; else
		echo "bench: bench_cmd failed with exit code $?" >&2
		status=1
	fi
fi
if [ "$found" -eq 0 ]; then
	echo "bench: no benchmark programs in $BUILD (make them with make bench)" >&2
	exit 1
fi
echo "bench: $found benchmark(s) run"
exit $status
