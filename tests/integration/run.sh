#!/bin/bash
# tests/integration/run.sh: the integration suite against real services.
#
# Starts one private PostgreSQL 15 cluster and one mosquitto broker for the
# whole run (loopback only, ports picked free, see lib.sh), then runs every
# tests/integration/t_*.sh (or those named as arguments, e.g. `run.sh
# t_schema`) each in its own bash with a time limit, and prints PASS/FAIL
# per test with the failing test's output.  Appends "integration PASSED
# FAILED" to $RESULTS when set (tests/summary.sh sums it).  Exits non-zero
# on any failure.  Everything it started is stopped on exit, however the
# run ends.  INTEGRATION_VERBOSE=1 prints a passing test's output too
# (the figures some tests report).
#
# Environment given to each test: BUILD (the build directory, ammctl and
# friends), AMMCTL, PG_SUPER_DSN, PG_SOCK, PG_PORT, MQTT_PORT, AMM_VECTORS.
# A test makes its own database with pg_newdb (lib.sh).
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
RESULTS=${RESULTS:-}
T_TIMEOUT=${T_TIMEOUT:-300}	# seconds per test

. "$here/lib.sh"

record() {
	[ -n "$RESULTS" ] && echo "integration $1 $2" >>"$RESULTS"
	return 0
}

echo "== integration tests (PostgreSQL 15 and mosquitto on loopback)"
[ -x "$BUILD/ammctl" ] || { echo "no $BUILD/ammctl: build first" >&2; record 0 1; exit 1; }

tests=()
if [ $# -gt 0 ]; then
	for n in "$@"; do tests+=("$here/${n%.sh}.sh"); done
else
	for t in "$here"/t_*.sh; do [ -e "$t" ] && tests+=("$t"); done
fi

t0=$(date +%s)
# The services start in this shell so that lib.sh's EXIT trap stops them;
# a service that cannot start counts as one failure.
die() { echo "integration: $*" >&2; record 0 1; exit 1; }
pg_start
mqtt_start
echo "   postgres on 127.0.0.1:$PG_PORT (socket $PG_SOCK), mosquitto on 127.0.0.1:$MQTT_PORT" \
	"($(($(date +%s) - t0)) s to start)"

# A private copy of ammctl, so that a rebuild during the run (a shared tree)
# cannot swap the binary under a test.
snap=$(mktemp -d)
lib_cleanup_add rm -rf "$snap"
for _ in 1 2 3 4 5 6 7 8 9 10; do
	cp "$BUILD/ammctl" "$snap/ammctl" 2>/dev/null && "$snap/ammctl" help >/dev/null 2>&1 && break
	sleep 1
done
"$snap/ammctl" help >/dev/null 2>&1 || die "$BUILD/ammctl does not run"
export BUILD AMMCTL="$snap/ammctl" AMM_VECTORS="${AMM_VECTORS:-}"
export AMMD_SQL_DIR="$root/sql"
unset AMMD_DB

pass=0
failed=0
for t in "${tests[@]}"; do
	name=$(basename "$t" .sh)
	if [ ! -f "$t" ]; then
		echo "FAIL $name (no such test)"
		failed=$((failed + 1))
		continue
	fi
	log=$(mktemp)
	s=$(date +%s.%N)
	timeout -k 10 "$T_TIMEOUT" bash "$t" >"$log" 2>&1
	rc=$?
	secs=$(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	checks=$(grep -c '^  ok ' "$log")
	if [ $rc = 0 ]; then
		echo "PASS $name ($checks checks, $secs s)"
		[ "${INTEGRATION_VERBOSE:-0}" = 1 ] && sed 's/^/    | /' "$log"
		pass=$((pass + 1))
	else
		[ $rc = 124 ] && echo "  (timed out after $T_TIMEOUT s)" >>"$log"
		echo "FAIL $name (exit $rc, $secs s)"
		sed 's/^/    | /' "$log"
		failed=$((failed + 1))
	fi
	rm -f "$log"
done

echo "integration: $pass passed, $failed failed ($(($(date +%s) - t0)) s)"
record "$pass" "$failed"
[ "$failed" = 0 ]
