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
#   * `ammctl meter discover` has the running daemon discover a meter again;
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
DAYS=2
CONC=${COLLECT_CONCURRENCY:-50}
. "$(dirname "$0")/collect.sh"
collect_clock
collect_work
fleet=(--count "$N" --seed "$SEED" --origin "$ORIGIN")

# ---- the fleet ---------------------------------------------------------------

collect_fleet amm_collect
ok "$N meters imported"
sim_start "$START"
HTTP_PORT=$(free_port)
HTTP_LISTEN=127.0.0.1:$HTTP_PORT conf "$dsn"

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
metrics=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$HTTP_PORT/metrics', timeout=3).read().decode())") ||
	fail "GET /metrics"
expect_match "metrics: sessions by outcome" "ammd_sessions_total\{transport=\"tcpip\",outcome=\"ok\"\} $N\b" "$metrics"
expect_match "metrics: session bytes" "ammd_session_bytes_total\{transport=\"tcpip\",direction=\"in\"\} [1-9]" "$metrics"
expect_match "metrics: queue depth" "ammd_scheduler_queue\{priority=\"schedule\"\} 0" "$metrics"
health=$(python3 -c "import urllib.request; r = urllib.request.urlopen('http://127.0.0.1:$HTTP_PORT/healthz', timeout=3); print(r.status, r.read().decode())") ||
	fail "GET /healthz"
expect_match "healthz: 200 with the scheduler check" "^200 .*scheduler" "$health"

# ---- round 2: nothing new, nothing twice ----------------------------------------

q "$dsn" "UPDATE meter SET next_due_at = NULL" >/dev/null
round_wait "$dsn" 300
expect_eq "second round: sessions ok" "ok" "$(q "$dsn" "SELECT string_agg(DISTINCT outcome, ',') FROM session_log")"
expect_eq "second round adds no row" "$rows1" "$(counts "$dsn")"
expect_eq "no meter was discovered twice" "$N" "$(q "$dsn" "SELECT count(*) FROM meter_object WHERE obis = '0-0:1.0.0.255'")"

# ---- ammctl meter discover: on demand, while the daemon runs ------------------------

s1=$(sed -n 2p "$work/m.csv" | cut -d, -f1)
before=$(q "$dsn" "SELECT max(o.discovered_at) FROM meter_object o JOIN meter m ON m.id = o.meter_id WHERE m.serial = '$s1'")
out=$("$AMMCTL" meter discover --dsn "$dsn" --wait 30 "$s1") || fail "meter discover: $out"
expect_eq "meter discover: stored again, mark cleared" "true false" "$(q "$dsn" "
	SELECT (SELECT min(o.discovered_at) > '$before' FROM meter_object o WHERE o.meter_id = m.id) || ' ' ||
	       (m.collect ? 'discover') FROM meter m WHERE m.serial = '$s1'")"
expect_status "meter discover: unknown serial fails" 1 "$AMMCTL" meter discover --dsn "$dsn" NOSUCH

# ---- round 3: holes -----------------------------------------------------------------

cut_from=$(iso $((START_S - 30 * 3600)))
cut_to=$(iso $((START_S - 27 * 3600)))
cut=$(q "$dsn" "WITH d AS (DELETE FROM interval_reading WHERE meter_id IN (SELECT id FROM meter ORDER BY id LIMIT 20)
	AND ts > '$cut_from' AND ts <= '$cut_to' RETURNING 1) SELECT count(*) FROM d")
[ "$cut" -gt 0 ] || fail "no rows cut"
q "$dsn" "UPDATE meter SET next_due_at = NULL" >/dev/null
round_wait "$dsn" 300
[ "$(counts "$dsn")" = "$rows1" ] || { grep -E "leased|holes|discover|draining|starting" "$work/ammd.log"; q "$dsn" "SELECT m.id, m.next_due_at, p.last_ts, (SELECT count(*) FROM interval_reading i WHERE i.meter_id = m.id), (SELECT max(started_at) FROM session_log s WHERE s.meter_id = m.id) FROM meter m JOIN read_pointer p ON p.meter_id = m.id AND p.what = 'profile' ORDER BY m.id LIMIT 3"; q "$dsn" "SELECT i.meter_id, i.ts, lag(i.ts) OVER (ORDER BY i.ts) FROM interval_reading i WHERE i.meter_id = 1 AND i.ts > '$cut_from'::timestamptz - interval '30 minutes' AND i.ts < '$cut_to'::timestamptz + interval '30 minutes'"; q "$dsn" "SELECT * FROM session_log WHERE meter_id = 1"; date -u; } >&2
expect_eq "holes of $cut intervals filled" "$rows1" "$(counts "$dsn")"
compare "$dsn" "$lo" "$hi"

# ---- round 4: a day later ----------------------------------------------------------------

kill -TERM "$ammd_pid"; wait "$ammd_pid"
START2=$(iso $((START_S + 86400)))
sim_start "$START2"
# A restarted simulator starts its meters' invocation counters again,
# which a real meter never does: ammd must refuse those meters' frames as
# replayed rather than read them.
q "$dsn" "UPDATE meter SET next_due_at = NULL" >/dev/null
ammd_start
round_wait "$dsn" 300
hls=$(q "$dsn" "SELECT count(*) FROM meter WHERE security = 'hls-gmac'")
expect_eq "replayed invocation counters refused" "$hls" \
	"$(q "$dsn" "SELECT count(*) FROM meter m WHERE m.security = 'hls-gmac' AND m.failures = 1 AND m.last_error IS NOT NULL")"
# ... so forget the counters the old simulator run used (as a key change
# would) and read again.
q "$dsn" "ALTER TABLE meter_key DISABLE TRIGGER meter_key_guard; UPDATE meter_key SET rx_counter = 0;
	ALTER TABLE meter_key ENABLE TRIGGER meter_key_guard; UPDATE meter SET next_due_at = NULL" >/dev/null
round_wait "$dsn" 300
expect_load "$dsn" "$(iso $((START_S - DAYS * 86400 - 86400)))" "$(iso $((START_S + 86400 + 3600)))" "$START2"
compare "$dsn" "$lo" "$(iso $((START_S + 86400 - 3600)))"
ammd_term || fail "ammd exit status $?"

# ---- SIGTERM in the middle of a round ------------------------------------------------------

sim_start "$START"
dsn2=$(pg_newdb amm_collect_term)
"$AMMCTL" db migrate --dsn "$dsn2" >/dev/null || fail "migrate"
"$AMMCTL" meter import --dsn "$dsn2" "$work/m.csv" >/dev/null || fail "import"
conf "$dsn2"
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
[ "$(q "$dsn2" "SELECT count(DISTINCT meter_id) FROM session_log WHERE outcome = 'ok'")" = "$N" ] ||
	q "$dsn2" "SELECT outcome, count(*), min(error) FROM session_log GROUP BY 1" >&2
expect_eq "the next start completes the round" "$N" "$(q "$dsn2" "SELECT count(DISTINCT meter_id) FROM session_log WHERE outcome = 'ok'")"
expect_load "$dsn2" "$(iso $((START_S - DAYS * 86400 - 86400)))" "$(iso $((START_S + 3600)))" "$START"
compare "$dsn2" "$lo" "$hi"
expect_eq "... with the same rows as an uninterrupted round" "$rows1" "$(counts "$dsn2")"
sim_stop
