#!/bin/bash
# t_schema.sh: the migrations apply on an empty database, are idempotent,
# serialise concurrent runners, refuse an edited migration, roll a failing
# one back; partitions exist ahead and out-of-range rows land in the
# default partition; the schema's own guards (key counters, idempotency
# keys, rate caps, NOTIFY, completeness) hold.
. "$(dirname "$0")/lib.sh"

dsn=$(pg_newdb amm_schema)
nfiles=$(ls "$AMMD_SQL_DIR"/[0-9][0-9][0-9][0-9]_*.sql | wc -l)

out=$("$AMMCTL" db migrate --dsn "$dsn") || fail "migrate: $out"
expect_match "migrate applies every migration" "^$nfiles migrations? applied" "$(echo "$out" | tail -1)"
expect_eq "schema_migrations rows" "$nfiles" "$(q "$dsn" 'SELECT count(*) FROM schema_migrations')"

objs() { q "$dsn" "SELECT count(*) || '/' || coalesce(sum(relpages), 0) FROM pg_class"; }
before=$(objs)
out=$("$AMMCTL" db migrate --dsn "$dsn") || fail "second migrate: $out"
expect_eq "second migrate is a no-op" "database is up to date" "$out"
expect_eq "no object created by the second run" "$before" "$(objs)"
out=$(AMMD_DB="$dsn" "$AMMCTL" db status) || fail "status: $out"
expect_eq "status says up to date (DSN from AMMD_DB)" "up to date" "$(echo "$out" | tail -1)"
out=$("$AMMCTL" db status --dsn "$dsn" --json)
expect_eq "status --json: nothing pending" "0 0 $nfiles" \
	"$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["pending"], d["changed"], sum(m["applied"] for m in d["migrations"]))')"

# Two runners at once on a fresh database: each migration applied once.
dsn2=$(pg_newdb amm_schema2)
"$AMMCTL" db migrate --dsn "$dsn2" >/tmp/amm-m1.$$ 2>&1 &
p1=$!
"$AMMCTL" db migrate --dsn "$dsn2" >/tmp/amm-m2.$$ 2>&1
r2=$?
wait $p1
r1=$?
expect_eq "concurrent migrate: both succeed" "0 0" "$r1 $r2"
expect_eq "concurrent migrate: each applied once" "$nfiles" \
	"$(cat /tmp/amm-m1.$$ /tmp/amm-m2.$$ | grep -c '^applied ')"
rm -f /tmp/amm-m1.$$ /tmp/amm-m2.$$

# An edited migration is noticed; a failing one leaves nothing behind.
sqlx=$(mktemp -d)
lib_cleanup_add rm -rf "$sqlx"
cp "$AMMD_SQL_DIR"/*.sql "$sqlx/"
printf 'CREATE TABLE zz_half (a int);\nSELECT 1 / 0;\n' >"$sqlx/9001_broken.sql"
out=$("$AMMCTL" db migrate --dsn "$dsn" --sql-dir "$sqlx" 2>&1)
expect_eq "failing migration: exit 1" "1" "$?"
expect_match "failing migration: named with the server's message" "9001_broken: division by zero" "$out"
expect_eq "failing migration: rolled back" "f" "$(q "$dsn" "SELECT to_regclass('zz_half') IS NOT NULL")"
expect_eq "failing migration: not recorded" "0" "$(q "$dsn" 'SELECT count(*) FROM schema_migrations WHERE version = 9001')"
rm "$sqlx/9001_broken.sql"
echo "-- edited" >>"$sqlx/0001_init.sql"
out=$("$AMMCTL" db status --dsn "$dsn" --sql-dir "$sqlx")
expect_match "status shows an edited migration" "0001_init .*CHANGED" "$out"
out=$("$AMMCTL" db migrate --dsn "$dsn" --sql-dir "$sqlx" 2>&1)
expect_eq "migrate refuses an edited migration" "1" "$?"
expect_match "... and says why" "0001_init was changed after it was applied" "$out"
expect_status "usage error exits 2" 2 "$AMMCTL" db migrate --bogus
expect_status "unreachable server exits 1" 1 "$AMMCTL" db status --dsn "host=/nonexistent port=1"

# Partitions: this month and three ahead exist for both series.
for k in 0 1 2 3; do
	m=$(q "$dsn" "SELECT to_char(now() AT TIME ZONE 'UTC' + interval '$k month', 'YYYY_MM')")
	expect_eq "partitions for $m" "2" \
		"$(q "$dsn" "SELECT count(*) FROM pg_inherits WHERE inhrelid IN (to_regclass('interval_reading_p$m'), to_regclass('event_p$m'))")"
done
q "$dsn" "INSERT INTO meter (serial, transport, host) VALUES ('S1', 'tcpip', 'h')" >/dev/null
mid=$(q "$dsn" "SELECT id FROM meter WHERE serial = 'S1'")
expect_eq "a row of now lands in this month's partition" \
	"interval_reading_p$(q "$dsn" "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM')")" \
	"$(q "$dsn" "INSERT INTO interval_reading VALUES ($mid, now(), 1, 0, 0, 0, 0) RETURNING tableoid::regclass")"
expect_eq "a row in 2099 lands in the default partition" "interval_reading_default" \
	"$(q "$dsn" "INSERT INTO interval_reading VALUES ($mid, '2099-03-01 00:15Z', 7.5, 0, 0, 0, 0) RETURNING tableoid::regclass")"
expect_eq "an event in 1999 lands in the default partition" "event_default" \
	"$(q "$dsn" "INSERT INTO event (meter_id, log, ts, code) VALUES ($mid, 0, '1999-12-31 23:59Z', 1) RETURNING tableoid::regclass")"
expect_eq "duplicate interval absorbed by the key" "0" \
	"$(q "$dsn" "INSERT INTO interval_reading VALUES ($mid, '2099-03-01 00:15Z', 9, 0, 0, 0, 0) ON CONFLICT DO NOTHING RETURNING 1" | wc -l)"
expect_eq "ensure_partitions creates the 2099 months" "4" \
	"$(q "$dsn" "SELECT ammd_ensure_partitions('2099-02-01', 1)")"
expect_eq "... and moves the default's row into its month" "interval_reading_p2099_03|7.5" \
	"$(q "$dsn" "SELECT tableoid::regclass, a_plus FROM interval_reading WHERE ts = '2099-03-01 00:15Z'")"
expect_eq "ensure_partitions twice creates nothing" "0" \
	"$(q "$dsn" "SELECT ammd_ensure_partitions('2099-02-01', 1)")"

# Timestamps are UTC whatever the client's zone.
expect_eq "an instant reads back the same from another zone" "2099-03-01 01:15+01" \
	"$(q "$dsn" "SET TimeZone = 'Europe/Copenhagen'; SELECT to_char(ts, 'YYYY-MM-DD HH24:MIOF') FROM interval_reading WHERE meter_id = $mid AND a_plus = 7.5")"

# Key counters never go lower; a key change restarts only the receive counter.
q "$dsn" "INSERT INTO meter_key (meter_id, ek, ak, tx_counter, rx_counter) VALUES ($mid, '\\x000102030405060708090a0b0c0d0e0f', '\\x000102030405060708090a0b0c0d0e0f', 100, 50)" >/dev/null
q_fails "$dsn" "UPDATE meter_key SET tx_counter = 99 WHERE meter_id = $mid" && ok "tx_counter cannot go back" || fail "tx_counter went back"
q_fails "$dsn" "UPDATE meter_key SET rx_counter = 49 WHERE meter_id = $mid" && ok "rx_counter cannot go back" || fail "rx_counter went back"
q "$dsn" "UPDATE meter_key SET tx_counter = 101, rx_counter = 51 WHERE meter_id = $mid" >/dev/null
q "$dsn" "UPDATE meter_key SET ek = '\\xffeeddccbbaa99887766554433221100' WHERE meter_id = $mid" >/dev/null
expect_eq "new key: tx kept, rx restarted" "101|0" \
	"$(q "$dsn" "SELECT tx_counter, rx_counter FROM meter_key WHERE meter_id = $mid")"
q_fails "$dsn" "UPDATE meter_key SET ek = '\\x000102030405060708090a0b0c0d0e0f', tx_counter = 1 WHERE meter_id = $mid" &&
	ok "an old key back does not reset tx_counter" || fail "tx_counter reset by a key change"

# Commands: NOTIFY on insert, idempotency key, rate cap, audit.
out=$(psql "$dsn" -X -q -v ON_ERROR_STOP=1 -c "LISTEN ammd_command" \
	-c "INSERT INTO command (meter_id, kind) VALUES ($mid, 'clock_sync')" 2>&1)
expect_match "insert notifies ammd_command" 'notification "ammd_command" with payload "[0-9]+"' "$out"
q "$dsn" "INSERT INTO command (meter_id, kind, params, idempotency_key) VALUES ($mid, 'credit_add', '{\"wh\": 5000}', 'tx-42')" >/dev/null
q_fails "$dsn" "INSERT INTO command (meter_id, kind, params, idempotency_key) VALUES ($mid, 'credit_add', '{\"wh\": 5000}', 'tx-42')" &&
	ok "the same credit transaction cannot be queued twice" || fail "duplicate credit_add accepted"
q "$dsn" "INSERT INTO command_rate_cap VALUES ('disconnect', 2)" >/dev/null
q "$dsn" "INSERT INTO command (meter_id, kind) VALUES ($mid, 'disconnect'), ($mid, 'disconnect')" >/dev/null
out=$(psql "$dsn" -X -q -v ON_ERROR_STOP=1 -c "INSERT INTO command (meter_id, kind) VALUES ($mid, 'disconnect')" 2>&1)
expect_match "rate cap refuses the third disconnect in an hour" "rate cap for disconnect" "$out"
expect_eq "audit: one row per queued command" "4" \
	"$(q "$dsn" "SELECT count(*) FROM command_audit WHERE new_state = 'queued'")"
q_fails "$dsn" "INSERT INTO command (meter_id, kind) VALUES ($mid, 'self_destruct')" &&
	ok "unknown command kind refused" || fail "unknown kind accepted"

# Completeness: a full day of 15-minute intervals yesterday, half of one today.
q "$dsn" "INSERT INTO meter (serial, transport, host, profile_period) VALUES ('S2', 'tcpip', 'h', 900)" >/dev/null
m2=$(q "$dsn" "SELECT id FROM meter WHERE serial = 'S2'")
q "$dsn" "INSERT INTO interval_reading (meter_id, ts, a_plus)
	SELECT $m2, d, 1 FROM generate_series(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '1 day' + interval '15 min',
		date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', interval '15 min') d" >/dev/null
q "$dsn" "DELETE FROM interval_reading WHERE meter_id = $m2 AND ts = date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '12 hours'" >/dev/null
expect_eq "completeness_daily: 95 of 96 yesterday" "96|95" \
	"$(q "$dsn" "SELECT expected, stored FROM completeness_daily WHERE meter_id = $m2 AND day = (now() AT TIME ZONE 'UTC')::date - 1")"
expect_eq "ammd_completeness: yesterday, and 0 the day before" "96|95,96|0" \
	"$(q "$dsn" "SELECT string_agg(expected || '|' || stored, ',' ORDER BY day DESC) FROM ammd_completeness(3) WHERE meter_id = $m2 AND day < (now() AT TIME ZONE 'UTC')::date")"
exit 0
