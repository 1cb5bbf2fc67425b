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
if [ "$found" -eq 0 ]; then
	echo "bench: no benchmark programs in $BUILD (make them with make bench)" >&2
	exit 1
fi
echo "bench: $found benchmark(s) run"
exit $status
