#!/bin/bash
# bench_scale.sh: a daily collection of a large simulated TCP/IP fleet by
# one ammd on this machine (DESIGN §8: 100,000 meters a day on two cores).
#
# A private PostgreSQL (tests/integration/lib.sh), `metersim serve` with
# the whole fleet behind one loopback listener, time frozen at a fixed
# instant so the data is the same every run, and ammd with
# profile_backfill_days = 1 and the default registers, concurrency and
# lease batch.  Two rounds:
#
#   first contact  discovery (object list, profile layout), registers,
#                  one day of 15-minute profile, events, billing;
#   daily          the simulator a day later: registers, the day's 96
#                  intervals, the day's events — the round that repeats
#                  every day, and the one the 10-minute goal is about.
#
# For each round: wall time, CPU seconds per meter of ammd, metersim and
# PostgreSQL (all its processes, exited backends included), ammd's peak
# RSS, rows stored per second; then every stored row is copied out with
# COPY TO (binary) and loaded into empty copies of the tables with COPY
# FROM, timed in the same run, for the ratio "round / raw COPY".
#
# Meters: $BENCH_SCALE_METERS, else $SCALE, else 20,000 (make bench);
# `make bench SCALE=100000` or BENCH_SCALE=1 for the full fleet.
# BENCH_PERF=SECS records ammd with perf for that long during the daily
# round and prints the top of the profile.  Checks: every meter has an
# ok session in each round and no row is stored twice; otherwise exit 1.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
AMMCTL=${AMMCTL:-$BUILD/ammctl}
. "$root/tests/integration/lib.sh"

N=${BENCH_SCALE_METERS:-${SCALE:-20000}}
[ "${BENCH_SCALE:-0}" = 1 ] && [ -z "${BENCH_SCALE_METERS:-}" ] && [ -z "${SCALE:-}" ] && N=100000
SEED=7
ORIGIN=2024-03-01T00:00:00Z
START=2024-03-10T00:00:00Z
START_S=$(date -u -d "$START" +%s)
ROUND_LIMIT=${BENCH_SCALE_LIMIT:-1800} # seconds a round may take before we give up
HZ=$(getconf CLK_TCK)

work=$(mktemp -d)
lib_cleanup_add rm -rf "$work"
# private copies: the shared build tree may be relinked while we run
cp "$BUILD/metersim" "$work/metersim" && cp "$BUILD/ammd" "$work/ammd" || die "build ammd and metersim first"
METERSIM=$work/metersim
AMMD=$work/ammd
fleet=(--count "$N" --seed "$SEED" --origin "$ORIGIN")

# ---- helpers -------------------------------------------------------------

# CPU ticks (user + system, and waited-for children) of the given pids.
ticks() {
	local p
	for p in "$@"; do
		[ -r "/proc/$p/stat" ] && sed 's/.*) //' "/proc/$p/stat"
	done | awk '{ s += $12 + $13 + $14 + $15 } END { print s + 0 }'
}
pg_ticks() { # the postmaster (its cutime holds exited backends) and its children
	local pm
	pm=$(head -1 "$PG_DIR/data/postmaster.pid")
	ticks "$pm" $(pgrep -P "$pm")
}
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) }'; }
per_meter_ms() { awk -v t="$1" -v n="$N" -v hz="$HZ" 'BEGIN { printf "%.3f", t / hz / n * 1000 }'; }
rows() { q "$dsn" "SELECT (SELECT count(*) FROM register_reading) + (SELECT count(*) FROM interval_reading)
	+ (SELECT count(*) FROM event) + (SELECT count(*) FROM billing_value)"; }

sim_pid=
sim_start() { # START-TIME
	"$METERSIM" serve "${fleet[@]}" --loopback-port "$PORT" --start "$1" --speed 0 >"$work/sim.log" 2>&1 &
	sim_pid=$!
	lib_cleanup_add kill "$sim_pid"
	wait_port "$PORT" 20 || { cat "$work/sim.log" >&2; die "metersim serve did not come up"; }
}
sim_stop() { kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null; }

round_wait() { # until every meter had its session: none due, none leased
	local t0=$SECONDS
	while [ "$(q "$dsn" "SELECT count(*) FROM meter WHERE next_due_at IS NULL OR next_due_at <= now() OR leased_by IS NOT NULL")" != 0 ]; do
		sleep 1
		kill -0 "$ammd_pid" 2>/dev/null || { tail -20 "$work/ammd.log" >&2; die "ammd died"; }
		[ $((SECONDS - t0)) -gt "$ROUND_LIMIT" ] && { tail -20 "$work/ammd.log" >&2; die "round not finished after $ROUND_LIMIT s"; }
	done
}

# round NAME: wait for the round that was just made due and print its figures.
round() {
	local name=$1 t0 t1 a0 a1 s0 s1 p0 p1 r0 r1 wall
	r0=$(rows)
	a0=$(ticks "$ammd_pid"); s0=$(ticks "$sim_pid"); p0=$(pg_ticks)
	t0=$(date +%s.%N)
	q "$dsn" "UPDATE meter SET next_due_at = NULL" >/dev/null
	if [ -n "${BENCH_PERF:-}" ] && [ "$name" = daily ] && command -v perf >/dev/null 2>&1; then
		perf record -F 499 -g -p "$ammd_pid" -o "$work/perf.data" -- sleep "$BENCH_PERF" >/dev/null 2>&1 &
		perf_pid=$!
	fi
	round_wait
	t1=$(date +%s.%N)
	a1=$(ticks "$ammd_pid"); s1=$(ticks "$sim_pid"); p1=$(pg_ticks)
	r1=$(rows)
	wall=$(secs "$t0" "$t1")
	local sess
	sess=$(q "$dsn" "SELECT count(DISTINCT meter_id) FILTER (WHERE outcome = 'ok') || ' ' || count(*)
		FROM session_log WHERE started_at >= to_timestamp($t0)")
	[ "${sess%% *}" = "$N" ] || { q "$dsn" "SELECT outcome, count(*), min(error) FROM session_log
		WHERE started_at >= to_timestamp($t0) GROUP BY 1" >&2; die "$name round: ok sessions for ${sess%% *} of $N meters"; }
	local rss
	rss=$(awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$ammd_pid/status")
	round_rows=$((r1 - r0))
	printf '   %-13s %6d meters in %8.1f s (%s sessions), %s rows, %.0f rows/s\n' "$name" "$N" "$wall" \
		"${sess#* }" "$round_rows" "$(awk -v r="$round_rows" -v w="$wall" 'BEGIN { print r / w }')"
	printf '   %-13s CPU ms/meter: ammd %s, metersim %s, postgres %s; ammd peak RSS %s MiB\n' "" \
		"$(per_meter_ms $((a1 - a0)))" "$(per_meter_ms $((s1 - s0)))" "$(per_meter_ms $((p1 - p0)))" "$rss"
	round_wall=$wall
}

# ---- set-up ----------------------------------------------------------------

pg_start
dsn=$(pg_newdb amm_bench_scale)
# a round writes some GB of WAL: no checkpoint in the middle of the figures
pg_super -c "ALTER SYSTEM SET max_wal_size = '8GB'" -c "SELECT pg_reload_conf()" >/dev/null
AMMD_SQL_DIR=$root/sql "$AMMCTL" db migrate --dsn "$dsn" >/dev/null || die "migrate failed"
PORT=$(free_port)
"$METERSIM" export "${fleet[@]}" --loopback-port "$PORT" >"$work/m.csv" || die "metersim export"
t=$(date +%s.%N)
"$AMMCTL" meter import --dsn "$dsn" "$work/m.csv" >/dev/null || die "import"
echo "   $N meters (seed $SEED, TCP/IP, one loopback listener), imported in $(secs "$t" "$(date +%s.%N)") s"

cat >"$work/ammd.conf" <<EOF
[daemon]
log_level = warning
instance_id = bench-scale
http_listen =
shutdown_timeout = 30
[database]
dsn = $dsn
[collection]
profile_backfill_days = 1
[tcpip]
connect_timeout_ms = 5000
response_timeout_ms = 10000
EOF

sim_start "$START"
# every meter due only once ammd is up, so its start-up is not in the figures
q "$dsn" "UPDATE meter SET next_due_at = now() + interval '1 day'" >/dev/null
"$AMMD" -d -f "$work/ammd.conf" >"$work/ammd.log" 2>&1 &
ammd_pid=$!
lib_cleanup_add kill -9 "$ammd_pid"
sleep 1

round "first contact"
# A day later.  The restarted simulator counts its invocation counters
# from the start again, which a real meter never does: forget the ones
# the first run used, as a key change would.
sim_stop
sim_start "$(date -u -d "@$((START_S + 86400))" +%Y-%m-%dT%H:%M:%SZ)"
q "$dsn" "ALTER TABLE meter_key DISABLE TRIGGER meter_key_guard; UPDATE meter_key SET rx_counter = 0;
	ALTER TABLE meter_key ENABLE TRIGGER meter_key_guard" >/dev/null
round daily
daily_wall=$round_wall
daily_rows=$round_rows
if [ -n "${perf_pid:-}" ]; then
	wait "$perf_pid"
	echo "   perf (ammd, daily round, top of the flat profile):"
	perf report -i "$work/perf.data" --stdio --no-children --sort symbol 2>/dev/null |
		grep -E '^ +[0-9.]+%' | head -25 | sed 's/^/     /'
fi
kill -TERM "$ammd_pid"
wait "$ammd_pid"
sim_stop

dup=$(q "$dsn" "SELECT (SELECT count(*) - count(DISTINCT (meter_id, ts)) FROM interval_reading)
	+ (SELECT count(*) - count(DISTINCT (meter_id, ts, log, code)) FROM event)")
[ "$dup" = 0 ] || die "$dup rows stored twice"

# ---- the same rows by raw COPY ------------------------------------------------

sdsn="host=$PG_SOCK port=$PG_PORT user=postgres dbname=amm_bench_scale"
tables=(register_reading interval_reading event billing_value)
total=0
for t in "${tables[@]}"; do
	psql "$sdsn" -X -q -v ON_ERROR_STOP=1 -c "CREATE TABLE copy_$t (LIKE $t INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)" >/dev/null ||
		die "copy table $t"
done
t0=$(date +%s.%N)
for t in "${tables[@]}"; do
	psql "$sdsn" -X -q -v ON_ERROR_STOP=1 -c "COPY (SELECT * FROM $t) TO '$PG_DIR/$t.bin' (FORMAT binary)" >/dev/null || die "COPY TO $t"
done
t1=$(date +%s.%N)
for t in "${tables[@]}"; do
	psql "$sdsn" -X -q -v ON_ERROR_STOP=1 -c "COPY copy_$t FROM '$PG_DIR/$t.bin' (FORMAT binary)" >/dev/null || die "COPY FROM $t"
done
t2=$(date +%s.%N)
total=$(rows)
copy_in=$(secs "$t1" "$t2")
awk -v n="$total" -v o="$(secs "$t0" "$t1")" -v i="$copy_in" -v dr="$daily_rows" -v dw="$daily_wall" 'BEGIN {
	printf "   raw COPY      %d rows: COPY TO %.1f s, COPY FROM (binary, into empty tables with their keys) %.1f s = %.0f rows/s\n", n, o, i, n / i
	printf "   ratio         daily round %.0f rows/s vs COPY FROM %.0f rows/s: the round takes %.1fx the time a raw COPY of its rows takes\n", dr / dw, n / i, (n / i) / (dr / dw)
}'
awk -v w="$daily_wall" -v n="$N" 'BEGIN {
	printf "   goal          daily round of %d meters in %.1f s (%.1f min): %s; at this rate 100,000 meters take %.1f min\n",
		n, w, w / 60, (n >= 100000 ? (w < 600 ? "under 10 minutes" : "NOT under 10 minutes") : "(goal is for 100,000)"), w * 100000 / n / 60
}'
exit 0
