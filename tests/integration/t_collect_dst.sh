#!/bin/bash
# t_collect_dst.sh: collection rounds spanning both daylight-saving changes.
#
# The simulated meters keep Copenhagen local time (CET/CEST) and stamp
# their profile and event entries in it.  Two fleets, each read once with
# a three-day backfill that spans a change: spring forward (31 March 2024,
# 02:00 local skipped) and fall back (27 October 2024, 02:00-03:00 local
# twice).  Every interval must be stored once, at the right UTC instant:
#   * stored intervals and events equal `metersim expect` exactly;
#   * every UTC day of the window holds 96 intervals per meter (no
#     duplicated or missing hour), every timestamp on the 15-minute grid;
#   * seen in local time, the spring day has 92 intervals and the autumn
#     day 100.
. "$(dirname "$0")/lib.sh"

N=${COLLECT_DST_METERS:-100}
SEED=5
DAYS=3
CONC=${COLLECT_CONCURRENCY:-50}
. "$(dirname "$0")/collect.sh"
collect_work

one_change() { # NAME START LOCAL-DAY LOCAL-COUNT
	local name=$1 start=$2 day=$3 want=$4 start_s lo hi dsn
	start_s=$(date -u -d "$start" +%s)
	# installed in the 90 days before the origin, a week before the round
	fleet=(--count "$N" --seed "$SEED" --origin "$(iso $((start_s - 7 * 86400)))")
	collect_fleet "amm_dst_$name"
	sim_start "$start"
	conf "$dsn"
	ammd_start
	round_wait "$dsn" 300
	ammd_term || fail "ammd exit status $?"
	expect_eq "$name: every session ok" "ok" "$(q "$dsn" "SELECT string_agg(DISTINCT outcome, ',') FROM session_log")"
	lo=$(iso $((start_s - DAYS * 86400 + 3600)))
	hi=$(iso $((start_s - 3600)))
	expect_load "$dsn" "$(iso $((start_s - DAYS * 86400 - 86400)))" "$(iso $((start_s + 3600)))" "$start"
	compare "$dsn" "$lo" "$hi"
	expect_eq "$name: 96 intervals in every full UTC day, every meter" "0" "$(q "$dsn" "
		SELECT count(*) FROM (SELECT meter_id, ((ts - interval '1 second') AT TIME ZONE 'UTC')::date AS d, count(*) AS n
		  FROM interval_reading
		  WHERE ts > date_trunc('day', '$lo'::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + interval '1 day'
		    AND ts <= date_trunc('day', '$hi'::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
		  GROUP BY 1, 2) x WHERE n <> 96")"
	expect_eq "$name: timestamps on the 15-minute grid" "0" \
		"$(q "$dsn" "SELECT count(*) FROM interval_reading WHERE extract(epoch FROM ts)::bigint % 900 <> 0")"
	expect_eq "$name: local day $day has $want intervals for every meter" "$N $want" "$(q "$dsn" "
		SELECT count(*) || ' ' || min(n) FROM (SELECT meter_id, count(*) AS n FROM interval_reading
		  WHERE (ts - interval '1 second') AT TIME ZONE 'Europe/Copenhagen' >= '$day'
		    AND (ts - interval '1 second') AT TIME ZONE 'Europe/Copenhagen' < '$day'::date + 1
		  GROUP BY 1 HAVING count(*) = $want) x")"
	sim_stop
}

one_change spring 2024-04-01T12:00:00Z 2024-03-31 92
one_change autumn 2024-10-28T12:00:00Z 2024-10-27 100
