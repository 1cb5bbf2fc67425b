#!/bin/bash
# t_fault_kill.sh: ammd killed with SIGKILL at random points of collection
# rounds, restarted each time, loses nothing and stores nothing twice or
# wrong.
#
# A fleet of simulated meters (metersim serve on consecutive loopback
# ports, time frozen) is collected by an ammd that is killed with SIGKILL
# after a seeded random delay (0.05-1.5 s: during start-up, claims,
# associations, transfers and store commits alike), then restarted at once,
# at least KILLS times (24 by default).  When a round completes between two
# kills every meter is made due again, so the kills keep landing inside
# sessions.  A last start finishes the round undisturbed.  Then:
#   * the database equals `metersim expect` exactly (registers, intervals,
#     events, billing values; every stored row true);
#   * the same row counts as an uninterrupted round of the same fleet;
#   * every meter has an ok session, no failure counted, and every outcome
#     in session_log is one the daemon writes;
#   * read pointers are sane: the profile pointer of each meter is the last
#     stored interval (never ahead of what was committed) and no event
#     pointer is ahead of the meter's clock;
#   * the ciphered meters' send counters were reserved once per claim and
#     never went back (the guard trigger would have refused), and the
#     restarted instance took back the leases its killed predecessor held
#     (resumed at once instead of waiting lease_seconds).
# FAULT_KILLS and FAULT_SEED override the number of kills and the seed.
. "$(dirname "$0")/lib.sh"

N=${COLLECT_METERS:-300}
SEED=17
KILLS=${FAULT_KILLS:-24}
RANDOM=${FAULT_SEED:-4242}
DAYS=2
CONC=${COLLECT_CONCURRENCY:-4}
. "$(dirname "$0")/collect.sh"
collect_clock
collect_work
fleet=(--count "$N" --seed "$SEED" --origin "$ORIGIN")

collect_fleet amm_fault_kill
sim_start "$START"
conf "$dsn"

# ---- the kills -----------------------------------------------------------------

kills=0 rounds=0 resumed=0
mid_session=0
while [ $kills -lt "$KILLS" ]; do
	leased_before=$(q "$dsn" "SELECT count(*) FROM meter WHERE leased_by IS NOT NULL")
	ammd_start
	ms=$((50 + RANDOM % 1450))
	sleep "$(printf '0.%03d' $((ms % 1000)))"
	[ $ms -ge 1000 ] && sleep 1
	# a restart after a kill that left leases must lease those meters again
	if [ "$leased_before" -gt 0 ] && grep -q 'leases of a previous run' "$work/ammd.log"; then
		resumed=$((resumed + 1))
	fi
	kill -KILL "$ammd_pid" 2>/dev/null
	wait "$ammd_pid" 2>/dev/null
	kills=$((kills + 1))
	echo "--- kill $kills after $ms ms" >>"$work/ammd.log"
	# killed while sessions were open: leases in its name are left behind
	[ "$(q "$dsn" "SELECT count(*) FROM meter WHERE leased_by IS NOT NULL")" -gt 0 ] &&
		mid_session=$((mid_session + 1))
	if [ "$(q "$dsn" "SELECT count(*) FROM meter WHERE next_due_at IS NULL OR next_due_at <= now() OR leased_by IS NOT NULL")" = 0 ]; then
		rounds=$((rounds + 1))
		q "$dsn" "UPDATE meter SET next_due_at = NULL" >/dev/null
	fi
done
ok "$kills SIGKILLs at seeded random points ($mid_session with leases held, i.e. inside a round; $rounds rounds completed between kills)"
[ $mid_session -ge $((KILLS / 2)) ] || fail "only $mid_session of $kills kills landed inside a round"
ok "at least half the kills landed inside a round"
[ $resumed -ge 1 ] || { tail -20 "$work/ammd.log" >&2; fail "no restart took back its predecessor's leases"; }
ok "restarts took back the killed instance's leases ($resumed times)"
sessions_killed=$(q "$dsn" "SELECT count(*) FROM session_log")

# ---- the undisturbed end of the round ---------------------------------------------

ammd_start
round_wait "$dsn" 300
ammd_term || fail "ammd exit status $?"
expect_eq "no lease left" "0" "$(q "$dsn" "SELECT count(*) FROM meter WHERE leased_by IS NOT NULL")"
expect_eq "every meter has an ok session" "$N" \
	"$(q "$dsn" "SELECT count(DISTINCT meter_id) FROM session_log WHERE outcome = 'ok'")"
expect_eq "every meter reachable, no failure counted" "$N" \
	"$(q "$dsn" "SELECT count(*) FROM meter WHERE reachability = 'reachable' AND failures = 0")"
expect_eq "only outcomes the daemon writes" "0" "$(q "$dsn" "SELECT count(*) FROM session_log
	WHERE outcome NOT IN ('ok', 'partial', 'timeout', 'refused', 'rejected', 'auth', 'protocol', 'aborted', 'error')")"
echo "  session_log: $(q "$dsn" "SELECT string_agg(outcome || ' ' || n, ', ') FROM (SELECT outcome, count(*) n FROM session_log GROUP BY 1 ORDER BY 1) x") ($sessions_killed logged before the last start)"
lo=$(iso $((START_S - DAYS * 86400 + 3600)))
hi=$(iso $((START_S - 3600)))
expect_load "$dsn" "$(iso $((START_S - DAYS * 86400 - 86400)))" "$(iso $((START_S + 3600)))" "$START"
compare "$dsn" "$lo" "$hi"

# pointers: never ahead of what is stored
expect_eq "profile pointer = last stored interval, every meter" "0" "$(q "$dsn" "
	SELECT count(*) FROM meter m LEFT JOIN read_pointer p ON p.meter_id = m.id AND p.what = 'profile'
	WHERE p.last_ts IS DISTINCT FROM (SELECT max(ts) FROM interval_reading i WHERE i.meter_id = m.id)")"
expect_eq "no event pointer ahead of the meters' clock" "0" \
	"$(q "$dsn" "SELECT count(*) FROM read_pointer WHERE what LIKE 'events%' AND last_ts > '$START'")"

# counters: one window of 4,096 per claim of a ciphered meter, never lower
hls=$(q "$dsn" "SELECT count(*) FROM meter WHERE security = 'hls-gmac'")
[ "$hls" -gt 0 ] || fail "the fleet has no ciphered meter"
expect_eq "ciphered meters' send counters reserved in whole windows" "0" \
	"$(q "$dsn" "SELECT count(*) FROM meter_key k JOIN meter m ON m.id = k.meter_id
	             WHERE m.security = 'hls-gmac' AND (k.tx_counter = 0 OR k.tx_counter % 4096 <> 0)")"
expect_eq "... and the counters the meters sent were kept" "0" \
	"$(q "$dsn" "SELECT count(*) FROM meter_key k JOIN meter m ON m.id = k.meter_id
	             WHERE m.security = 'hls-gmac' AND k.rx_counter = 0")"

# the same rows as an uninterrupted round of the same fleet
rows_killed=$(counts "$dsn")
dsn2=$(pg_newdb amm_fault_nokill)
"$AMMCTL" db migrate --dsn "$dsn2" >/dev/null || fail "migrate"
"$AMMCTL" meter import --dsn "$dsn2" "$work/m.csv" >/dev/null || fail "import"
sim_start "$START"
conf "$dsn2"
ammd_start
round_wait "$dsn2" 300
ammd_term || fail "ammd exit status $?"
expect_eq "the same rows as an uninterrupted round (registers intervals events)" \
	"$(counts "$dsn2")" "$rows_killed"
sim_stop
