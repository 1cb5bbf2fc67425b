#!/bin/bash
# t_collect_round.sh: ammd collects a fleet over TCP/IP end to end.
#
# 1,000 simulated meters (metersim serve on consecutive loopback ports,
# simulated time frozen at START so the ground truth is stable), imported
# with `metersim export | ammctl meter import`, one collection round by
# ammd, then:
#   * every meter's stored registers, intervals and events equal
#     `metersim expect` exactly (inside the backfill window; every stored
#     row anywhere matches the ground truth too), every session logged;
#   * discovery stored each meter's object list and profile layout;
#   * a second round stores no duplicate;
#   * holes cut into 20 meters' profiles are filled at the next round;
#   * a day later (simulator restarted at START + 1 day) the next round
#     reads exactly the new intervals and events;
#   * SIGTERM in the middle of a round on a fresh database: exit 0 within
#     shutdown_timeout, leases given back, and the next start completes the
#     round with the same exact result.
# Prints the figures (meters/s, session durations, bytes per meter).
. "$(dirname "$0")/lib.sh"

N=${COLLECT_METERS:-1000}
SEED=11
ORIGIN=2024-03-01T00:00:00Z
START=2024-03-01T00:00:00Z
START_S=$(date -u -d "$START" +%s)
DAYS=2
CONC=${COLLECT_CONCURRENCY:-50}
METERSIM=$BUILD/metersim
AMMD=$BUILD/ammd
[ -x "$METERSIM" ] && [ -x "$AMMD" ] || fail "build ammd and metersim first"

work=$(mktemp -d)
lib_cleanup_add rm -rf "$work"
fleet=(--count "$N" --seed "$SEED" --origin "$ORIGIN")

# ---- helpers ---------------------------------------------------------------

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

conf() { # DSN
	cat >"$work/ammd.conf" <<EOF
[daemon]
log_level = info
http_listen =
shutdown_timeout = 20
instance_id = t-collect
[database]
dsn = $1
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
concurrency = $CONC
lease_batch = 500
lease_seconds = 600
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
round_wait() { # DSN SECS
	local i=0
	while [ "$(q "$1" "SELECT count(*) FROM meter WHERE next_due_at IS NULL OR next_due_at <= now() OR leased_by IS NOT NULL")" != 0 ]; do
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
		xargs -P 2 -I{} sh -c "{ \"$METERSIM\" expect ${fleet[*]} --meter {} --from $2 --to $3 --what intervals,events --format csv && \"$METERSIM\" expect ${fleet[*]} --meter {} --from $4 --to $4 --what registers --format csv; } | sed 's/^/{},/' >\"$work/exp.d/{}\"" ||
		fail "metersim expect"
	cat "$work/exp.d"/* >"$f"
	awk -F, '$2 == "register" { print $1 "," $4 "," $5 }' "$f" >"$work/er.csv"
	awk -F, '$2 == "interval" { print $1 "," $3 "," $5 "," $6 "," $7 "," $8 "," $9 }' "$f" >"$work/ei.csv"
	awk -F, '$2 == "event" { split($6, o, "."); print $1 "," $3 "," o[3] "," $7 }' "$f" >"$work/ee.csv"
	psql "$1" -X -q -v ON_ERROR_STOP=1 <<EOF || fail "loading the ground truth"
DROP TABLE IF EXISTS er, ei, ee;
CREATE TABLE er (serial text, obis text, value numeric);
CREATE TABLE ei (serial text, ts timestamptz, a_plus numeric, a_minus numeric, r_plus numeric, r_minus numeric, status int);
CREATE TABLE ee (serial text, ts timestamptz, log int, code int);
\copy er FROM '$work/er.csv' CSV
\copy ei FROM '$work/ei.csv' CSV
\copy ee FROM '$work/ee.csv' CSV
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
	expect_eq "every stored event is true" "0" "$(q "$d" "
		SELECT count(*) FROM event e JOIN meter m ON m.id = e.meter_id
		WHERE NOT EXISTS (SELECT 1 FROM ee WHERE ee.serial = m.serial AND ee.ts = e.ts
		                  AND ee.log = e.log AND ee.code = e.code)")"
}

counts() { q "$1" "SELECT (SELECT count(*) FROM register_reading) || ' ' || (SELECT count(*) FROM interval_reading) || ' ' || (SELECT count(*) FROM event)"; }

iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }

# ---- the fleet ---------------------------------------------------------------

# N consecutive free ports below the ephemeral range (outgoing connections
# would otherwise take ports of the block).
BASE=$(python3 - "$N" <<'PY'
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
)
[ -n "$BASE" ] || fail "no block of $N free ports"
"$METERSIM" export "${fleet[@]}" --base-port "$BASE" >"$work/m.csv" || fail "metersim export"
dsn=$(pg_newdb amm_collect)
"$AMMCTL" db migrate --dsn "$dsn" >/dev/null || fail "migrate"
"$AMMCTL" meter import --dsn "$dsn" "$work/m.csv" >/dev/null || fail "import"
ok "$N meters imported"
sim_start "$START"
conf "$dsn"

# ---- round 1 -----------------------------------------------------------------

t0=$(date +%s.%N)
ammd_start
round_wait "$dsn" 300
t1=$(date +%s.%N)
expect_eq "every meter has one session, all ok" "$N ok" \
	"$(q "$dsn" "SELECT count(DISTINCT meter_id) || ' ' || string_agg(DISTINCT outcome, ',') FROM session_log")"
lo=$(iso $((START_S - DAYS * 86400 + 3600)))
hi=$(iso $((START_S - 3600)))
expect_load "$dsn" "$(iso $((START_S - DAYS * 86400 - 86400)))" "$(iso $((START_S + 3600)))" "$START"
compare "$dsn" "$lo" "$hi"
expect_eq "discovery stored for every meter" "$N $N" \
	"$(q "$dsn" "SELECT (SELECT count(DISTINCT meter_id) FROM meter_object) || ' ' || (SELECT count(DISTINCT meter_id) FROM meter_profile_layout)")"
expect_eq "every meter reachable, no error" "$N" \
	"$(q "$dsn" "SELECT count(*) FROM meter WHERE reachability = 'reachable' AND last_error IS NULL AND failures = 0")"
figures=$(q "$dsn" "SELECT round($N / ($t1 - $t0), 1) || ' meters/s; session median ' ||
	percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) || ' ms, p95 ' ||
	percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) || ' ms; bytes per meter in ' ||
	round(avg(bytes_in)) || ', out ' || round(avg(bytes_out)) FROM session_log")
echo "  figures (round 1, $N meters, $DAYS days backfilled, concurrency $CONC): $figures"
rows1=$(counts "$dsn")

# ---- round 2: nothing new, nothing twice ----------------------------------------

q "$dsn" "UPDATE meter SET next_due_at = NULL" >/dev/null
round_wait "$dsn" 300
expect_eq "second round: sessions ok" "ok" "$(q "$dsn" "SELECT string_agg(DISTINCT outcome, ',') FROM session_log")"
expect_eq "second round adds no row" "$rows1" "$(counts "$dsn")"
expect_eq "no meter was discovered twice" "$N" "$(q "$dsn" "SELECT count(*) FROM meter_object WHERE obis = '0-0:1.0.0.255'")"

# ---- round 3: holes -----------------------------------------------------------------

cut_from=$(iso $((START_S - 30 * 3600)))
cut_to=$(iso $((START_S - 27 * 3600)))
cut=$(q "$dsn" "WITH d AS (DELETE FROM interval_reading WHERE meter_id IN (SELECT id FROM meter ORDER BY id LIMIT 20)
	AND ts > '$cut_from' AND ts <= '$cut_to' RETURNING 1) SELECT count(*) FROM d")
[ "$cut" -gt 0 ] || fail "no rows cut"
q "$dsn" "UPDATE meter SET next_due_at = NULL" >/dev/null
round_wait "$dsn" 300
expect_eq "holes of $cut intervals filled" "$rows1" "$(counts "$dsn")"
compare "$dsn" "$lo" "$hi"

# ---- round 4: a day later ----------------------------------------------------------------

kill -TERM "$ammd_pid"; wait "$ammd_pid"
START2=$(iso $((START_S + 86400)))
sim_start "$START2"
q "$dsn" "UPDATE meter SET next_due_at = NULL" >/dev/null
ammd_start
round_wait "$dsn" 300
expect_load "$dsn" "$(iso $((START_S - DAYS * 86400 - 86400)))" "$(iso $((START_S + 86400 + 3600)))" "$START2"
compare "$dsn" "$lo" "$(iso $((START_S + 86400 - 3600)))"
ammd_term || fail "ammd exit status $?"

# ---- SIGTERM in the middle of a round ------------------------------------------------------

sim_start "$START"
dsn2=$(pg_newdb amm_collect_term)
"$AMMCTL" db migrate --dsn "$dsn2" >/dev/null || fail "migrate"
"$AMMCTL" meter import --dsn "$dsn2" "$work/m.csv" >/dev/null || fail "import"
CONC=5 conf "$dsn2"
ammd_start
i=0
until [ "$(q "$dsn2" "SELECT count(*) FROM session_log")" -ge $((N / 10)) ]; do
	sleep 0.05
	i=$((i + 1))
	[ $i -gt 1200 ] && fail "no sessions"
done
ammd_term || fail "ammd exit status $? after SIGTERM"
done1=$(q "$dsn2" "SELECT count(*) FROM session_log")
[ "$done1" -lt "$N" ] || fail "the round had finished before SIGTERM ($done1 sessions)"
ok "SIGTERM after $done1 of $N sessions: exit 0"
expect_eq "no lease left behind" "0" "$(q "$dsn2" "SELECT count(*) FROM meter WHERE leased_by IS NOT NULL")"
ammd_start
round_wait "$dsn2" 300
ammd_term || fail "ammd exit status $?"
q "$dsn2" "SELECT outcome, count(*), min(error) FROM session_log GROUP BY 1" >&2
q "$dsn2" "SELECT m.serial, m.next_due_at, m.failures FROM meter m WHERE NOT EXISTS (SELECT 1 FROM session_log s WHERE s.meter_id = m.id AND outcome = 'ok') LIMIT 3" >&2
expect_eq "the next start completes the round" "$N" "$(q "$dsn2" "SELECT count(DISTINCT meter_id) FROM session_log WHERE outcome = 'ok'")"
expect_load "$dsn2" "$(iso $((START_S - DAYS * 86400 - 86400)))" "$(iso $((START_S + 3600)))" "$START"
compare "$dsn2" "$lo" "$hi"
expect_eq "... with the same rows as an uninterrupted round" "$rows1" "$(counts "$dsn2")"
sim_stop
