#!/bin/bash
# t_store.sh: the daemon's store against a real PostgreSQL, through
# build/bench_store --check (see tests/bench/bench_store.c): 10,000 meters
# x 96 intervals + registers, events, billing, pointers, meter state,
# session log and outbox written by sessions submitting on a libevent loop;
# PostgreSQL is stopped for about 10 s in the middle of that round and
# started again: the driver's loop keeps running, the store reconnects, and
# in the end every row is there exactly once (counts and sums checked in the
# database), every callback fired once, the outbox rows came with their
# data.  The same data again adds nothing; pointers never move back; a
# batch the server refuses fails alone.  A smaller run checks COPY text.
#
# Runs its own PostgreSQL cluster (lib.sh), since it stops and restarts it.
. "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$root/build}
AMMCTL=${AMMCTL:-$BUILD/ammctl}
DRIVER=$BUILD/bench_store
[ -x "$DRIVER" ] || fail "no $DRIVER (make build/bench_store)"
export AMMD_SQL_DIR=${AMMD_SQL_DIR:-$root/sql}

pg_start
dsn=$(pg_newdb amm_store)
"$AMMCTL" db migrate --dsn "$dsn" >/dev/null || fail "migrate"

# pg_pause / pg_resume: stop the cluster (clients are cut off) and start it
# again on the same data, port and socket.
pg_pause() { _as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 stop >/dev/null 2>&1; }
pg_resume() {
	_as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start >/dev/null 2>&1
}

out=$(mktemp)
lib_cleanup_add rm -f "$out"
"$DRIVER" --check --dsn "$dsn" --meters 10000 --intervals 96 --rate 600 >"$out" 2>&1 &
drv=$!
lib_cleanup_add kill -9 "$drv"

for _ in $(seq 100); do grep -q '^round 1 started' "$out" && break; sleep 0.1; done
grep -q '^round 1 started' "$out" || { cat "$out"; fail "driver did not start"; }
sleep 4
pg_pause || fail "could not stop PostgreSQL"
t_stop=$(date +%s.%N)
sleep 10
kill -0 "$drv" 2>/dev/null || { cat "$out"; fail "driver ended while the database was down"; }
ok "the driver's loop runs on while PostgreSQL is stopped"
pg_resume || fail "could not start PostgreSQL again"
echo "   PostgreSQL was down for $(awk -v a="$t_stop" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"

wait "$drv"
rc=$?
sed -n '/^round 1:/p' "$out"
grep -E '^  (ok|FAILED)' "$out" | sed 's/^  ok [0-9]* - /  ok - store: /'
T_CHECKS=$((T_CHECKS + $(grep -c '^  ok ' "$out")))
[ $rc = 0 ] || { cat "$out" >&2; fail "bench_store --check exited $rc"; }

# The outage really happened and was recovered from.
expect_match "the store lost its connection and reconnected" \
	'connection losses [1-9]|connect failures [1-9]' "$(grep '^round 1:' "$out")"
grep -q 'database connection restored' "$out" || { cat "$out"; fail "no reconnection logged"; }
ok "reconnection logged"

# COPY text gives the same rows as COPY binary; and the daemon's group role
# (ammd) has every right the store needs (temp tables, partitions, pointers,
# meter state, sequences).
dsn2=$(pg_newdb amm_store_text)
"$AMMCTL" db migrate --dsn "$dsn2" >/dev/null || fail "migrate (text)"
pg_login_role amm_store_daemon ammd
"$DRIVER" --check --text --dsn "host=$PG_SOCK port=$PG_PORT user=amm_store_daemon dbname=amm_store_text" \
	--meters 300 --intervals 96 --rate 0 >"$out" 2>&1 ||
	{ cat "$out" >&2; fail "bench_store --check --text as a member of ammd"; }
ok "COPY text, as a member of ammd: the same checks pass ($(grep -c '^  ok ' "$out") checks)"

# A failure the server calls transient (serialization_failure, as a deadlock
# between instances would be) on two flushes in a row: the store retries
# once, then reports the batches failed; the driver submits them again, as
# sessions would, and in the end every row is there once.
dsn3=$(pg_newdb amm_store_fail)
"$AMMCTL" db migrate --dsn "$dsn3" >/dev/null || fail "migrate (fail)"
q "$dsn3" "CREATE SEQUENCE fail_seq;
	CREATE FUNCTION fail_twice() RETURNS trigger LANGUAGE plpgsql AS \$\$
	BEGIN
		IF NEW.meter_id = 77 AND nextval('fail_seq') <= 2 THEN
			RAISE EXCEPTION 'injected conflict' USING ERRCODE = 'serialization_failure';
		END IF;
		RETURN NEW;
	END \$\$;
	CREATE TRIGGER fail_twice BEFORE INSERT ON interval_reading
		FOR EACH ROW EXECUTE FUNCTION fail_twice();" >/dev/null || fail "trigger"
"$DRIVER" --check --dsn "$dsn3" --meters 500 --intervals 96 --rate 0 >"$out" 2>&1 ||
	{ cat "$out" >&2; fail "bench_store --check with injected failures"; }
expect_match "batches failed twice are reported and resubmitted" \
	'[1-9][0-9]* failed and resubmitted' "$(grep '^round 1:' "$out")"
ok "after resubmission every row is there once ($(grep -c '^  ok ' "$out") checks)"
