#!/bin/bash
# bench_round.sh: one collection round of a whole simulated fleet, timed.
#
# What `make bench` runs through build/bench_round (which execs this): a
# private PostgreSQL 15 (tests/integration/lib.sh, loopback only, removed at
# exit), `metersim serve --loopback-port P` (one listener for the whole
# fleet, simulated time frozen) and ammd, all on this machine.  Each run
# takes a fresh database, imports the fleet and lets ammd read every meter
# once: registers (ammd's default 14), discovery on first contact, one day
# of 15-minute profile (profile_backfill_days = 1) and the event logs.
# Then it prints, per run and as medians:
#   * wall time of the round (ammd start to every meter read and stored) and
#     meters/s;
#   * CPU seconds of ammd and of metersim (/proc/PID/stat while they still
#     run) and of PostgreSQL (the postmaster with its reaped backends plus
#     its live children, before ammd starts and after it exits);
#   * rows stored (register, interval, event, billing, session_log) and
#     rows/s into PostgreSQL;
#   * a raw COPY of the same rows into the same tables: the stored rows are
#     dumped with COPY TO, the tables emptied, and COPY FROM timed (server
#     side, text format); the ratio of ammd's rows/s to it;
#   * ammd's peak RSS (VmHWM) per meter.
#
# The round runs as fast as the machine allows: imported meters have no
# next_due_at, so they are all due at once (window_start, window_length and
# the per-meter jitter only place the *next* round); concurrency 200 (the
# default), lease_batch 1000, log_level warning.
#
#   bench_round.sh [--meters N] [--runs R] [--concurrency C]
#
# Environment: BENCH_ROUND_METERS, BENCH_ROUND_RUNS override the defaults
# (10,000 meters, 3 runs).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
N=${BENCH_ROUND_METERS:-10000}
RUNS=${BENCH_ROUND_RUNS:-3}
CONC=200
while [ $# -gt 0 ]; do
	case $1 in
	--meters) N=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--concurrency) CONC=$2; shift 2 ;;
	*) echo "usage: bench_round.sh [--meters N] [--runs R] [--concurrency C]" >&2; exit 2 ;;
	esac
done
. "$root/tests/integration/lib.sh"
for p in ammd ammctl metersim; do
	[ -x "$BUILD/$p" ] || die "no $BUILD/$p: build first"
done

work=$(mktemp -d)
chmod 755 "$work"
lib_cleanup_add rm -rf "$work"
# private copies: the shared build tree may be relinked while we run
for p in ammd ammctl metersim; do cp "$BUILD/$p" "$work/$p" || die "copy $p"; done
export AMMD_SQL_DIR=$root/sql
TCK=$(getconf CLK_TCK)
START=2024-03-01T00:00:00Z
fleet=(--count "$N" --seed 7 --origin "$START")

pg_start
PG_PM=$(head -1 "$PG_DIR/data/postmaster.pid")

# ticks PID [children]: user+system CPU ticks of a live process (with its
# reaped children's when the second argument is 1).
ticks() {
	sed 's/.*) //' "/proc/$1/stat" | awk -v c="${2:-0}" '{ s = $12 + $13; if (c) s += $14 + $15; print s }'
}
# All of PostgreSQL: the postmaster, what it reaped, and its live children.
pg_ticks() {
	local t c
	t=$(ticks "$PG_PM" 1)
	for c in $(pgrep -P "$PG_PM"); do t=$((t + $(ticks "$c" 0 2>/dev/null || echo 0))); done
	echo "$t"
}
secs() { awk -v t="$1" -v k="$TCK" 'BEGIN { printf "%.2f", t / k }'; }
now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
metric() { # NAME-REGEX: the sum of the matching /metrics samples
	curl -s --max-time 2 "http://127.0.0.1:$HTTP_PORT/metrics" |
		awk -v re="$1" '$0 ~ "^" re { s += $NF } END { print s + 0 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

results=$work/results
: >"$results"
echo "bench_round: $N meters (one day of 15-minute profile, 14 registers, events," \
	"discovery), concurrency $CONC, $RUNS run(s)"

for run in $(seq 1 "$RUNS"); do
	[ "$run" -gt 1 ] && pg_super -c "DROP DATABASE amm_bench_round_$((run - 1))" >/dev/null
	dsn=$(pg_newdb "amm_bench_round_$run")
	"$work/ammctl" db migrate --dsn "$dsn" >/dev/null || die "migrate"
	SIM_PORT=$(free_port)
	"$work/metersim" export "${fleet[@]}" --loopback-port "$SIM_PORT" >"$work/m.csv" || die "export"
	"$work/ammctl" meter import --dsn "$dsn" "$work/m.csv" >/dev/null || die "import"
	"$work/metersim" serve "${fleet[@]}" --loopback-port "$SIM_PORT" --start "$START" --speed 0 \
		>"$work/sim.log" 2>&1 &
	sim_pid=$!
	lib_cleanup_add kill "$sim_pid"
	wait_port "$SIM_PORT" 20 || { cat "$work/sim.log" >&2; die "metersim did not start"; }
	HTTP_PORT=$(free_port)
	cat >"$work/ammd.conf" <<-EOF
	[daemon]
	log_level = warning
	http_listen = 127.0.0.1:$HTTP_PORT
	instance_id = bench-round
	[database]
	dsn = $dsn
	[collection]
	profile_backfill_days = 1
	concurrency = $CONC
	lease_batch = 1000
	EOF
	psql "$dsn" -X -q -c "CHECKPOINT" >/dev/null 2>&1
	pg0=$(pg_ticks)
	t0=$(now)
	"$work/ammd" -d -f "$work/ammd.conf" >"$work/ammd.log" 2>&1 &
	ammd_pid=$!
	lib_cleanup_add kill -9 "$ammd_pid"
	# Watch /metrics (cheap) until every meter had its session, then ask
	# the database once a quarter second until all is stored.
	i=0
	while [ "$(metric 'ammd_sessions_total')" -lt "$N" ]; do
		sleep 0.25
		i=$((i + 1))
		kill -0 "$ammd_pid" 2>/dev/null || { tail "$work/ammd.log" >&2; die "ammd died"; }
		[ $i -gt 2400 ] && { tail "$work/ammd.log" >&2; die "round not done after 600 s"; }
	done
	until [ "$(q "$dsn" "SELECT count(*) FROM meter WHERE next_due_at IS NULL OR next_due_at <= now() OR leased_by IS NOT NULL")" = 0 ]; do
		sleep 0.25
		i=$((i + 1))
		[ $i -gt 2600 ] && die "round not stored after 650 s"
	done
	t1=$(now)
	ammd_cpu=$(ticks "$ammd_pid")
	ammd_hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$ammd_pid/status")
	sim_cpu=$(ticks "$sim_pid")
	kill -TERM "$ammd_pid"
	wait "$ammd_pid" || die "ammd exit status $?"
	kill "$sim_pid"
	wait "$sim_pid" 2>/dev/null
	sleep 0.5 # the backends' exits reaped by the postmaster
	pg1=$(pg_ticks)

	ok_sessions=$(q "$dsn" "SELECT count(DISTINCT meter_id) FROM session_log WHERE outcome = 'ok'")
	[ "$ok_sessions" = "$N" ] || {
		q "$dsn" "SELECT outcome, count(*), min(error) FROM session_log GROUP BY 1" >&2
		die "only $ok_sessions of $N meters read"
	}
	read -r nreg nint nev nbill nlog <<<"$(q "$dsn" "SELECT (SELECT count(*) FROM register_reading), (SELECT count(*) FROM interval_reading), (SELECT count(*) FROM event), (SELECT count(*) FROM billing_value), (SELECT count(*) FROM session_log)" | tr '|' ' ')"
	rows=$((nreg + nint + nev + nbill))
	wall=$(sub "$t0" "$t1")

	# The raw COPY of the same rows into the same (emptied) tables.
	tables="register_reading interval_reading event billing_value"
	sdsn="host=$PG_SOCK port=$PG_PORT user=postgres dbname=amm_bench_round_$run"
	cdir=$work/copy
	mkdir -p "$cdir"
	[ "$(id -u)" = 0 ] && chown postgres: "$cdir"
	args=()
	for t in $tables; do args+=(-c "COPY (SELECT * FROM $t) TO '$cdir/$t.copy'"); done
	psql "$sdsn" -X -q -v ON_ERROR_STOP=1 "${args[@]}" || die "COPY TO"
	psql "$sdsn" -X -q -v ON_ERROR_STOP=1 -c "TRUNCATE ${tables// /, }" -c "CHECKPOINT" || die "truncate"
	args=(-c BEGIN)
	for t in $tables; do args+=(-c "COPY $t FROM '$cdir/$t.copy'"); done
	args+=(-c COMMIT)
	c0=$(now)
	psql "$sdsn" -X -q -v ON_ERROR_STOP=1 "${args[@]}" || die "COPY FROM"
	c1=$(now)
	copy=$(sub "$c0" "$c1")
	back=$(q "$dsn" "SELECT (SELECT count(*) FROM register_reading) + (SELECT count(*) FROM interval_reading) + (SELECT count(*) FROM event) + (SELECT count(*) FROM billing_value)")
	[ "$back" = "$rows" ] || die "raw COPY loaded $back rows, not $rows"
	rm -rf "$cdir"

	line=$(awk -v n="$N" -v wall="$wall" -v a="$ammd_cpu" -v s="$sim_cpu" -v p="$((pg1 - pg0))" \
		-v k="$TCK" -v rows="$rows" -v copy="$copy" -v hwm="$ammd_hwm" 'BEGIN {
		printf "%.2f %.0f %.2f %.2f %.2f %.0f %.3f %.0f %.2f %.0f %.0f\n",
		    wall, n / wall, a / k, s / k, p / k, rows / wall, copy, rows / copy,
		    (rows / wall) / (rows / copy), hwm, hwm * 1024 / n }')
	echo "$line" >>"$results"
	set -- $line
	echo "  run $run: round $1 s ($2 meters/s); CPU ammd $3 s, metersim $4 s, postgres $5 s;" \
		"$rows rows ($nreg registers, $nint intervals, $nev events, $nbill billing; $nlog sessions)" \
		"= $6 rows/s; raw COPY $7 s = $8 rows/s, ammd at $9 of it; ammd peak RSS ${10} kB = ${11} B/meter"
done

med() { awk -v c="$1" '{ print $c }' "$results" | median; }
echo "bench_round: medians of $RUNS run(s), $N meters: round $(med 1) s ($(med 2) meters/s)," \
	"CPU ammd $(med 3) s, metersim $(med 4) s, postgres $(med 5) s; $(med 6) rows/s stored" \
	"vs $(med 8) rows/s raw COPY (ratio $(med 9)); ammd peak RSS $(med 10) kB, $(med 11) B/meter"
