#!/bin/bash
# bench_cmd.sh: latency of operator commands from insert to verified,
# stored result (command.finished_at - created_at, both stamped by
# PostgreSQL), for TCP/IP meters served by metersim, at 1 command at a time
# and at 100 concurrent commands (one INSERT for 100 meters).  The kind is
# tariff_force (read before, ACTION, read back, verify).  A private
# PostgreSQL (tests/integration/lib.sh), metersim and ammd on this machine;
# the first collection round is let finish before measuring.
# BENCH_CMD_SEQ (default 50) sequential commands, BENCH_CMD_ROUNDS (3)
# rounds of 100.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$root/build}
case $BUILD in /*) ;; *) BUILD=$root/$BUILD ;; esac
AMMCTL=$BUILD/ammctl
export BUILD AMMCTL
. "$root/tests/integration/lib.sh"
SEQ=${BENCH_CMD_SEQ:-50}
ROUNDS=${BENCH_CMD_ROUNDS:-3}

pg_start
N=100
SEED=55
work=$(mktemp -d)
lib_cleanup_add rm -rf "$work"
. "$root/tests/integration/cmd_lib.sh"
CMD_CONC=200
CMD_LOG_LEVEL=notice
CMD_CONF="[commands]
tariff_per_minute = 100000"
cmd_setup amm_bench_cmd
cmd_ammd_start
for _ in $(seq 1 600); do
	[ "$(q "$dsn" "SELECT count(*) FROM meter WHERE leased_by IS NOT NULL OR next_due_at IS NULL OR next_due_at <= now()")" = 0 ] && break
	sleep 0.2
done

final() { q "$dsn" "SELECT count(*) FROM command WHERE state IN ('succeeded', 'failed', 'expired')"; }

# latency FIRST: of the commands after id FIRST, how many succeeded and the
# median and 99th percentile of their time from creation to the end.
latency() {
	q "$dsn" "SELECT count(*) FILTER (WHERE state = 'succeeded') || ' ok; p50 ' ||
	round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)) * 1000)::numeric, 1) || ' ms, p99 ' ||
	round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - created_at)) * 1000)::numeric, 1) || ' ms'
	FROM command WHERE id > $1"
}

# ---- one at a time ----------------------------------------------------------------
first=$(q "$dsn" "SELECT coalesce(max(id), 0) FROM command")
for i in $(seq 1 "$SEQ"); do
	m=$(( (i - 1) % N ))
	q "$dsn" "INSERT INTO command (meter_id, kind, params, expires_at) SELECT id, 'tariff_force',
		'{\"tariff\": $(( i % 4 + 1 ))}', now() + interval '1 hour' FROM meter WHERE serial = '${S[$m]}'" >/dev/null
	for _ in $(seq 1 2000); do
		[ "$(final)" = "$i" ] && break
		sleep 0.005
	done
done
one=$(latency "$first")
echo "   1 at a time ($SEQ commands): $one"

# ---- 100 at once ---------------------------------------------------------------------
first=$(q "$dsn" "SELECT coalesce(max(id), 0) FROM command")
base=$(final)
for r in $(seq 1 "$ROUNDS"); do
	q "$dsn" "INSERT INTO command (meter_id, kind, params, expires_at) SELECT id, 'tariff_force',
		'{\"tariff\": $(( r % 4 + 1 ))}', now() + interval '1 hour' FROM meter" >/dev/null
	for _ in $(seq 1 6000); do
		[ "$(final)" = "$((base + r * N))" ] && break
		sleep 0.01
	done
done
hundred=$(latency "$first")
echo "   100 concurrent ($ROUNDS rounds of $N): $hundred"
[ -n "${BENCH_CMD_DEBUG:-}" ] && { grep -a "waits\|given back\|claimed (attempt [2-9])" "$work/ammd.log" | head -20; }
bad=$(q "$dsn" "SELECT count(*) FROM command WHERE state <> 'succeeded'")
cmd_ammd_term
[ "$bad" = 0 ] || { echo "bench_cmd: $bad commands did not succeed" >&2; exit 1; }
exit 0
