#!/bin/sh
# Runs one Criterion test binary, shows its output, and appends the stage's
# counts ("STAGE PASSED FAILED") to RESULTS for tests/summary.sh.
# usage: tests/check.sh STAGE RESULTS BINARY [ARGS...]
stage=$1 results=$2; shift 2
log=$(mktemp)
"$@" 2>&1 | tee "$log"
syn=$(grep -a 'Synthesis:' "$log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g')
rm -f "$log"
tested=$(echo "$syn" | sed -n 's/.*Tested: \([0-9]*\).*/\1/p')
passing=$(echo "$syn" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
failing=$(echo "$syn" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
crashing=$(echo "$syn" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
[ -n "$tested" ] || { echo "$stage: no Criterion synthesis line" >&2; echo "$stage 0 1" >> "$results"; exit 1; }
echo "$stage $passing $((failing + crashing))" >> "$results"
[ "$((failing + crashing))" = 0 ] && [ "$tested" -gt 0 ]
