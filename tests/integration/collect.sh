# tests/integration/collect.sh: helpers of the t_collect_*.sh tests,
# sourced after lib.sh.  The caller sets N, DAYS, CONC and the array fleet
# (metersim's fleet options), and `work` (a scratch directory: collect_work
# makes one).
#
#   collect_clock            ORIGIN and START (2024-03-01T00:00:00Z: fleet
#                            origin, frozen simulated time), START_S epoch
#   collect_progs            METERSIM, AMMD (defaults under $BUILD) built
#   collect_work             collect_progs, then $work (removed at exit)
#                            holding private copies of both programs
#   collect_fleet DB [SED]   BASE (N free ports), $work/m.csv exported (SED
#                            applied when given), dsn: new database DB,
#                            migrated, m.csv imported
#   sim_start T / sim_stop   metersim serve on ports BASE.., time frozen at T
#   conf DSN                 ammd.conf for the test in $work
#   conf_write FILE DSN ID CONC BATCH LEASE   such a file, any instance
#   ammd_start / ammd_term   the daemon (term: SIGTERM, bounded wait, status)
#   round_wait DSN SECS      until no meter is due or leased
#   expect_load DSN F T AT   ground truth into tables er, ei, ee, eb
#   compare DSN LO HI        stored = truth (see the function)
#   counts DSN, iso EPOCH, port_block N

# port_block N: the first of N consecutive free ports below the ephemeral
# range (outgoing connections would otherwise take ports of the block).
port_block() {
	python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(50):
    base = random.randrange(10000, 32000 - n)
    socks = []
    try:
        for p in range(base, base + n):
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p)); socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(base); break
PY
}

# ---- helpers ---------------------------------------------------------------

collect_clock() {
	ORIGIN=2024-03-01T00:00:00Z
	START=2024-03-01T00:00:00Z
	START_S=$(date -u -d "$START" +%s)
}

collect_progs() {
	METERSIM=${METERSIM:-$BUILD/metersim}
	AMMD=${AMMD:-$BUILD/ammd}
	[ -x "$METERSIM" ] && [ -x "$AMMD" ] || fail "build ammd and metersim first"
}

collect_work() {
	collect_progs
	work=$(mktemp -d)
	lib_cleanup_add rm -rf "$work"
	# private copies: the shared build tree may be relinked while we run
	cp "$METERSIM" "$work/metersim" && cp "$AMMD" "$work/ammd" || fail "copying the programs"
	METERSIM=$work/metersim
	AMMD=$work/ammd
}

collect_fleet() { # DBNAME [SED-SCRIPT]
	BASE=$(port_block "$N")
	[ -n "$BASE" ] || fail "no block of $N free ports"
	if [ $# -gt 1 ]; then
		"$METERSIM" export "${fleet[@]}" --base-port "$BASE" | sed "$2" >"$work/m.csv"
	else
		"$METERSIM" export "${fleet[@]}" --base-port "$BASE" >"$work/m.csv"
	fi || fail "metersim export"
	dsn=$(pg_newdb "$1")
	"$AMMCTL" db migrate --dsn "$dsn" >/dev/null || fail "migrate"
	"$AMMCTL" meter import --dsn "$dsn" "$work/m.csv" >/dev/null || fail "import"
}

sim_pid=
sim_start() { # START-TIME
	sim_stop
	"$METERSIM" serve "${fleet[@]}" --base-port "$BASE" --start "$1" --speed 0 \
		>"$work/sim.log" 2>&1 &
	sim_pid=$!
	lib_cleanup_add kill "$sim_pid"
	wait_port "$BASE" 20 && wait_port $((BASE + N - 1)) 20 || { cat "$work/sim.log" >&2; fail "metersim serve did not come up"; }
}
sim_stop() { [ -n "$sim_pid" ] && { kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null; sim_pid=; }; return 0; }

conf() { conf_write "$work/ammd.conf" "$1" t-collect "$CONC" 500 600; } # DSN

# conf_write FILE DSN INSTANCE-ID CONCURRENCY LEASE-BATCH LEASE-SECONDS:
# an ammd.conf reading the registers compare checks; more sections may be
# appended to FILE.
conf_write() {
	cat >"$1" <<EOF
[daemon]
log_level = info
http_listen = ${HTTP_LISTEN:-}
shutdown_timeout = 20
instance_id = $3
[database]
dsn = $2
[collection]
registers = 1-0:1.8.0.255 1-0:1.8.1.255 1-0:1.8.2.255 1-0:1.8.3.255 1-0:1.8.4.255
	1-0:1.8.5.255 1-0:1.8.6.255 1-0:1.8.7.255 1-0:1.8.8.255
	1-0:2.8.0.255 1-0:2.8.1.255 1-0:2.8.2.255 1-0:2.8.3.255 1-0:2.8.4.255
	1-0:2.8.5.255 1-0:2.8.6.255 1-0:2.8.7.255 1-0:2.8.8.255
	1-0:3.8.0.255 1-0:3.8.1.255 1-0:3.8.2.255 1-0:3.8.3.255 1-0:3.8.4.255
	1-0:3.8.5.255 1-0:3.8.6.255 1-0:3.8.7.255 1-0:3.8.8.255
	1-0:4.8.0.255 1-0:4.8.1.255 1-0:4.8.2.255 1-0:4.8.3.255 1-0:4.8.4.255
	1-0:4.8.5.255 1-0:4.8.6.255 1-0:4.8.7.255 1-0:4.8.8.255
profile_backfill_days = $DAYS
concurrency = $4
lease_batch = $5
lease_seconds = $6
[tcpip]
connect_timeout_ms = 3000
response_timeout_ms = 5000
EOF
}

ammd_pid=
ammd_start() {
	"$AMMD" -d -f "$work/ammd.conf" >>"$work/ammd.log" 2>&1 &
	ammd_pid=$!
	lib_cleanup_add kill -9 "$ammd_pid"
}
ammd_term() { # -> exit status; fails when it takes longer than 25 s
	kill -TERM "$ammd_pid"
	local i=0
	while kill -0 "$ammd_pid" 2>/dev/null; do
		sleep 0.1
		i=$((i + 1))
		[ $i -gt 250 ] && { cat "$work/ammd.log" >&2; fail "ammd did not exit within 25 s of SIGTERM"; }
	done
	wait "$ammd_pid"
}

# Wait until every meter had a session since the mark (no meter due, none leased).
# A lease that has run out is nobody's: a killed instance leaves its last
# leases behind on meters that are no longer due (a command-only session
# does not make a meter due), and nothing need ever clear them.
round_wait() { # DSN SECS
	local i=0
	while [ "$(q "$1" "SELECT count(*) FROM meter WHERE next_due_at IS NULL OR next_due_at <= now() OR lease_until > now()")" != 0 ]; do
		sleep 0.2
		i=$((i + 1))
		[ $i -gt $(($2 * 5)) ] && { tail -30 "$work/ammd.log" >&2; fail "round not finished after $2 s"; }
	done
}

# The ground truth of every meter into tables er, ei, ee: intervals and
# events in (FROM, TO], registers at the simulated time AT.
expect_load() { # DSN FROM TO AT
	local f=$work/exp.csv
	rm -rf "$work/exp.d" && mkdir "$work/exp.d"
	# one file per meter: two writers on one pipe would interleave lines
	cut -d, -f1 "$work/m.csv" | tail -n +2 |
		xargs -P 2 -I{} sh -c "{ \"$METERSIM\" expect ${fleet[*]} --meter {} --from $2 --to $3 --what intervals,events,billing --format csv && \"$METERSIM\" expect ${fleet[*]} --meter {} --from $4 --to $4 --what registers --format csv; } | sed 's/^/{},/' >\"$work/exp.d/{}\"" ||
		fail "metersim expect"
	cat "$work/exp.d"/* >"$f"
	awk -F, '$2 == "register" { print $1 "," $4 "," $5 }' "$f" >"$work/er.csv"
	awk -F, '$2 == "interval" { print $1 "," $3 "," $5 "," $6 "," $7 "," $8 "," $9 }' "$f" >"$work/ei.csv"
	awk -F, '$2 == "billing" || $2 == "billing_peak" { print $1 "," $3 "," $4 "," $5 }' "$f" >"$work/eb.csv"
	awk -F, '$2 == "event" { split($6, o, "."); print $1 "," $3 "," o[3] "," $7 }' "$f" >"$work/ee.csv"
	psql "$1" -X -q -v ON_ERROR_STOP=1 <<EOF || fail "loading the ground truth"
DROP TABLE IF EXISTS er, ei, ee, eb;
CREATE TABLE er (serial text, obis text, value numeric);
CREATE TABLE ei (serial text, ts timestamptz, a_plus numeric, a_minus numeric, r_plus numeric, r_minus numeric, status int);
CREATE TABLE ee (serial text, ts timestamptz, log int, code int);
CREATE TABLE eb (serial text, period_end timestamptz, obis text, value numeric);
\copy er FROM '$work/er.csv' CSV
\copy ei FROM '$work/ei.csv' CSV
\copy ee FROM '$work/ee.csv' CSV
\copy eb FROM '$work/eb.csv' CSV
EOF
}

# Stored = expected: registers (latest read), and intervals and events in
# (LO, HI] both ways, and every stored row (any time) agrees with the truth.
compare() { # DSN LO HI
	local d=$1 lo=$2 hi=$3
	local regdiff="WITH s AS (SELECT DISTINCT ON (r.meter_id, r.obis) m.serial, r.obis, r.value
		           FROM register_reading r JOIN meter m ON m.id = r.meter_id
		           ORDER BY r.meter_id, r.obis, r.captured_at DESC)
		SELECT serial, obis, er.value, s.value FROM er FULL JOIN s USING (serial, obis)
		WHERE er.value IS DISTINCT FROM s.value"
	[ "$(q "$d" "SELECT count(*) FROM ($regdiff) x")" = 0 ] || q "$d" "$regdiff LIMIT 5" >&2
	expect_eq "registers equal metersim expect" "0" "$(q "$d" "SELECT count(*) FROM ($regdiff) x")"
	expect_eq "every expected interval stored" "0" "$(q "$d" "
		SELECT count(*) FROM ei WHERE ts > '$lo' AND ts <= '$hi' AND NOT EXISTS (
		  SELECT 1 FROM interval_reading i JOIN meter m ON m.id = i.meter_id
		  WHERE m.serial = ei.serial AND i.ts = ei.ts)")"
	expect_eq "every stored interval equals the truth" "0" "$(q "$d" "
		SELECT count(*) FROM interval_reading i JOIN meter m ON m.id = i.meter_id
		LEFT JOIN ei ON ei.serial = m.serial AND ei.ts = i.ts
		WHERE (ei.a_plus, ei.a_minus, ei.r_plus, ei.r_minus, ei.status)
		      IS DISTINCT FROM (i.a_plus, i.a_minus, i.r_plus, i.r_minus, i.status)")"
	local evmiss="SELECT * FROM ee WHERE ts > '$lo' AND ts <= '$hi' AND NOT EXISTS (
		  SELECT 1 FROM event e JOIN meter m ON m.id = e.meter_id
		  WHERE m.serial = ee.serial AND e.ts = ee.ts AND e.log = ee.log AND e.code = ee.code)"
	[ "$(q "$d" "SELECT count(*) FROM ($evmiss) x")" = 0 ] || q "$d" "$evmiss LIMIT 5" >&2
	expect_eq "every expected event stored" "0" "$(q "$d" "SELECT count(*) FROM ($evmiss) x")"
	expect_eq "every billing period end's totals stored" "0" "$(q "$d" "
		SELECT count(*) FROM eb WHERE period_end > '$lo' AND period_end <= '$hi'
		AND obis IN ('1-0:1.8.0.255', '1-0:2.8.0.255', '1-0:3.8.0.255', '1-0:4.8.0.255')
		AND NOT EXISTS (SELECT 1 FROM billing_value b JOIN meter m ON m.id = b.meter_id
		                WHERE m.serial = eb.serial AND b.period_end = eb.period_end AND b.obis = eb.obis)")"
	expect_eq "every stored billing value is true" "0" "$(q "$d" "
		SELECT count(*) FROM billing_value b JOIN meter m ON m.id = b.meter_id
		WHERE NOT EXISTS (SELECT 1 FROM eb WHERE eb.serial = m.serial AND eb.period_end = b.period_end
		                  AND eb.obis = b.obis AND eb.value = b.value)")"
	expect_eq "every stored event is true" "0" "$(q "$d" "
		SELECT count(*) FROM event e JOIN meter m ON m.id = e.meter_id
		WHERE NOT EXISTS (SELECT 1 FROM ee WHERE ee.serial = m.serial AND ee.ts = e.ts
		                  AND ee.log = e.log AND ee.code = e.code)")"
}

counts() { q "$1" "SELECT (SELECT count(*) FROM register_reading) || ' ' || (SELECT count(*) FROM interval_reading) || ' ' || (SELECT count(*) FROM event)"; }

iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }

