#!/bin/sh
# Sums the per-stage counts written by tests/check.sh, the integration runner
# and the fuzz run, and prints the closing "N passed, N failed" line.
results=$1
[ -f "$results" ] || { echo "no test results in $results" >&2; exit 1; }
echo "== summary"
awk '{ printf "  %-14s %6d passed %4d failed\n", $1, $2, $3; p += $2; f += $3 }
     END { printf "tests: %d passed, %d failed\n", p, f; exit (f > 0) }' "$results"
