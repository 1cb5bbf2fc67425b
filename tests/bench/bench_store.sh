#!/bin/bash
# bench_store.sh: runs build/bench_store against a private PostgreSQL 15
# (tests/integration/lib.sh: loopback only, removed at exit).  bench_store
# calls this itself when it is started without a database, which is how
# `make bench` (tests/bench/run.sh) runs it; arguments are passed on.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BENCH_STORE=${BENCH_STORE:-$root/build/bench_store}
AMMCTL=${AMMCTL:-$(dirname "$BENCH_STORE")/ammctl}
. "$root/tests/integration/lib.sh"

pg_start
dsn=$(pg_newdb amm_bench_store)
pg_super -c "GRANT pg_checkpoint TO amm" >/dev/null || die "grant pg_checkpoint"
AMMD_SQL_DIR=$root/sql "$AMMCTL" db migrate --dsn "$dsn" >/dev/null || die "migrate failed"
"$BENCH_STORE" --dsn "$dsn" "$@"
