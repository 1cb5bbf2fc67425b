#!/bin/bash
# t_cmd_queue.sh: the command queue from the operator's side (issue 7):
# ammctl cmd refuses bad parameters with a clear error before writing
# anything, merges an identical pending command, wants --confirm for
# several meters, cancels; credit_add transaction ids are used once; a
# plain SQL insert by an ammd_operator login works and is audited with
# that login, an ammd_reader cannot queue; the claim function enforces the
# per-minute caps across instances and one command per meter, counting
# actions (ammd_command_act(), the slot ammd takes just before sending)
# and claimed commands that have not acted yet; expired and abandoned
# commands are handled.
. "$(dirname "$0")/lib.sh"

dsn=$(pg_newdb amm_cmd)
"$AMMCTL" db migrate --dsn "$dsn" >/dev/null || fail "migrate"
q "$dsn" "INSERT INTO meter (serial, transport, host) SELECT 'C' || i, 'tcpip', 'h' FROM generate_series(1, 300) i" >/dev/null
pg_login_role t_op ammd_operator
pg_login_role t_rd ammd_reader
pg_login_role t_dm ammd
as() { echo "host=$PG_SOCK port=$PG_PORT dbname=amm_cmd user=$1"; }
o=$(as t_op) r=$(as t_rd) d=$(as t_dm)
cmd() { "$AMMCTL" cmd "$@" --dsn "$o"; }
count() { q "$dsn" "SELECT count(*) FROM command $1"; }

# ---- validation: nothing is written -------------------------------------------
bad() { # WHAT REGEX ARGS...
	local what=$1 re=$2 out
	shift 2
	out=$(cmd "$@" 2>&1) && fail "$what: accepted"
	expect_match "$what" "$re" "$out"
}
bad "unknown meter" "unknown meter: NOPE" disconnect NOPE
bad "negative credit" "amount_wh must not be negative" credit_set C1 amount_wh=-5
bad "credit_add without a transaction id" "transaction_id is required" credit_add C1 amount_wh=5000
bad "limiter threshold out of range" "threshold_normal_w 900000 out of range 0..250000" limiter C1 threshold_normal_w=900000
bad "emergency above normal" "threshold_emergency_w 9000 is above threshold_normal_w 5000" \
	limiter C1 threshold_normal_w=5000 threshold_emergency_w=9000
bad "unknown parameter" "unknown parameter 'colour'" disconnect C1 colour=red
bad "reconnect mode" "mode 'maybe' is neither" reconnect C1 mode=maybe
bad "tariff_force 0" "tariff 0 out of range 1..8" tariff_force C1 tariff=0
cal9='{"name":"W9","seasons":[{"name":"all","start":"01-01","week":"wk"}],"weeks":[{"name":"wk","days":[1,1,1,1,1,1,1]}],"days":[{"id":1,"actions":[{"at":"00:00","tariff":1},{"at":"07:00","tariff":9}]}]}'
bad "a calendar with nine tariffs" "days\[0\]\.actions\[1\]\.tariff 9 out of 1\.\.8" tariff_calendar C1 --params "$cal9"
bad "calendar activation in the past" "activate_at .* is in the past" tariff_calendar C1 \
	--params "${cal9/\"tariff\":9/\"tariff\":2}" activate_at=2001-01-01T00:00:00Z
bad "special day that does not exist" "date '2026-02-30' does not exist" special_days C1 \
	days='[{"date":"2026-02-30","day_id":1}]'
bad "read_now with nothing to read" "nothing to read" read_now C1
bad "bad expiry" "is not a duration" clock_sync C1 --expires soon
expect_eq "nothing was queued by the refused commands" "0" "$(count "")"

# ---- queue, merge, confirm, cancel ----------------------------------------------
out=$(cmd disconnect C1 --json) || fail "disconnect: $out"
id1=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
expect_match "a disconnect is queued" '"merged":false' "$out"
out=$(cmd disconnect C1) || fail "second disconnect: $out"
expect_match "an identical pending command is merged" "command $id1 merged for meter C1" "$out"
expect_eq "... and not queued twice" "1" "$(count "WHERE kind = 'disconnect'")"
cmd read_now C1 registers='["1-0:1.8.0.255"]' >/dev/null || fail "read_now"
cmd read_now C1 registers='["1-0:2.8.0.255"]' >/dev/null || fail "read_now 2"
expect_eq "different parameters are different commands" "2" "$(count "WHERE kind = 'read_now'")"
out=$(cmd disconnect C2 C3 C4 2>&1) && fail "bulk without --confirm accepted"
expect_match "several meters need --confirm" "needs --confirm" "$out"
expect_eq "... and nothing was queued" "1" "$(count "WHERE kind = 'disconnect'")"
cmd disconnect C2 C3 C4 --confirm --expires 10m >/dev/null || fail "bulk with --confirm"
expect_eq "with --confirm all three are queued" "4" "$(count "WHERE kind = 'disconnect'")"
expect_eq "--expires sets the expiry" "3" \
	"$(count "WHERE kind = 'disconnect' AND expires_at < now() + interval '11 minutes' AND meter_id > 1")"
out=$(cmd cancel "$id1") || fail "cancel: $out"
expect_match "a queued command is cancelled" "command $id1 cancelled" "$out"
out=$(cmd cancel "$id1" 2>&1) && fail "cancel twice accepted"
expect_match "a cancelled command cannot be cancelled again" "is cancelled: only a queued" "$out"
out=$(cmd disconnect C1) || fail "disconnect after cancel"
expect_match "after cancelling, the same command is queued anew" "queued for meter C1" "$out"
out=$(cmd show "$id1") || fail "show"
expect_match "show gives the audit trail with the operator" '"actor" : "t_op", "from" : "queued", "to" : "cancelled"' "$out"
out=$(cmd list --state queued --json) || fail "list"
expect_match "list shows queued commands as JSON" '"kind":"disconnect","state":"queued"' "$out"

# ---- credit_add: one command per transaction id ---------------------------------
cmd credit_add C5 amount_wh=5000 transaction_id=TX-1 >/dev/null || fail "credit_add"
out=$(cmd credit_add C5 amount_wh=5000 transaction_id=TX-1) || fail "credit_add again"
expect_match "the same transaction again is the same command" "merged for meter C5" "$out"
out=$(cmd credit_add C5 amount_wh=7000 transaction_id=TX-1 2>&1) && fail "reused txid accepted"
expect_match "a transaction id reused with another amount is refused" "TX-1 was already used" "$out"
q "$dsn" "UPDATE command SET state = 'succeeded' WHERE kind = 'credit_add'" >/dev/null
out=$(cmd credit_add C5 amount_wh=5000 transaction_id=TX-1) || fail "credit_add after success"
expect_match "... even after it succeeded" "merged for meter C5" "$out"
expect_eq "one credit_add row" "1" "$(count "WHERE kind = 'credit_add'")"

# ---- plain SQL by the roles -----------------------------------------------------
psql "$o" -X -q -v ON_ERROR_STOP=1 -c "INSERT INTO command (meter_id, kind, params)
	SELECT id, 'limiter', '{\"threshold_normal_w\": 6000}' FROM meter WHERE serial = 'C9'" ||
	fail "operator SQL insert"
ok "an ammd_operator login queues by plain INSERT"
expect_eq "... audited with the login" "t_op:queued" "$(q "$dsn" "SELECT a.actor || ':' || a.new_state
	FROM command_audit a JOIN command c ON c.id = a.command_id WHERE c.kind = 'limiter'")"
expect_eq "... created_by is the login" "t_op" "$(q "$dsn" "SELECT created_by FROM command WHERE kind = 'limiter'")"
psql "$o" -X -q -v ON_ERROR_STOP=1 -c "INSERT INTO command (meter_id, kind, created_by) SELECT id, 'clock_sync', 'mqtt:evil' FROM meter WHERE serial = 'C9'" >/dev/null ||
	fail "operator insert with created_by"
expect_eq "an operator cannot pose as an MQTT client" "t_op" \
	"$(q "$dsn" "SELECT created_by FROM command WHERE kind = 'clock_sync' AND meter_id = (SELECT id FROM meter WHERE serial = 'C9')")"
q_fails "$r" "INSERT INTO command (meter_id, kind) VALUES (1, 'disconnect')" && ok "an ammd_reader cannot INSERT a command" ||
	fail "reader inserted a command"
out=$("$AMMCTL" cmd disconnect C7 --dsn "$r" 2>&1) && fail "reader queued through ammctl"
expect_match "an ammd_reader cannot queue through ammctl" "permission denied" "$out"
expect_match "... nor cancel" "permission denied" "$("$AMMCTL" cmd cancel 2 --dsn "$r" 2>&1)"
psql "$d" -X -q -v ON_ERROR_STOP=1 -c "SELECT * FROM ammd_command_submit('{C9}', 'clock_sync', '{\"max_step_s\":60}', NULL, NULL, 0::smallint, 'mqtt:client-7', 'req-1')" >/dev/null ||
	fail "ammd submit for mqtt"
expect_eq "ammd records the MQTT client as the issuer" "mqtt:client-7|req-1" \
	"$(q "$dsn" "SELECT created_by || '|' || request_id FROM command WHERE params @> '{\"max_step_s\":60}'")"

# ---- claims: caps per minute across instances, one command per meter ----------------
q "$dsn" "DELETE FROM command_audit; DELETE FROM command" >/dev/null
q "$dsn" "INSERT INTO command (meter_id, kind) SELECT id, 'disconnect' FROM meter" >/dev/null
kinds="'{disconnect,reconnect}'::text[], '{disconnect,reconnect}'::text[], '{100,60}'::integer[]"
work=$(mktemp -d)
lib_cleanup_add rm -rf "$work"
for i in 1 2 3; do
	psql "$d" -X -q -At -v ON_ERROR_STOP=1 \
		-c "SELECT id FROM ammd_command_claim('i$i', $kinds, 80)" \
		-c "SELECT id FROM ammd_command_claim('i$i', $kinds, 80)" >"$work/c$i" &
done
wait
expect_eq "three instances claiming at once take exactly the cap of 100 per minute" "100" "$(cat "$work"/c? | wc -l)"
expect_eq "... none twice" "100" "$(cat "$work"/c? | sort -u | wc -l)"
expect_eq "a fourth gets nothing within the minute" "0" "$(q "$d" "SELECT count(*) FROM ammd_command_claim('i4', $kinds, 80)")"
# The cap is on actions (sql/0005): a claimed command keeps its slot until
# it has acted, and an action holds it for a minute.
q "$dsn" "UPDATE command SET started_at = started_at - interval '61 seconds' WHERE state = 'running'" >/dev/null
expect_eq "claimed commands that have not acted keep their slots past the minute" "0" \
	"$(q "$d" "SELECT count(*) FROM ammd_command_claim('i4', $kinds, 500)")"
act="'disconnect', '{disconnect,reconnect}', 100"
expect_eq "each of the 100 gets its action slot (as ammd asks just before the ACTION)" "1:100" \
	"$(q "$d" "SELECT a || ':' || count(*) FROM (SELECT ammd_command_act(id, claimed_by, NULL, $act) a
		FROM command WHERE state = 'running' ORDER BY id) x GROUP BY a")"
expect_eq "... recorded once each, with command.acted_at" "100 100 100" \
	"$(q "$d" "SELECT count(*) || ' ' || count(DISTINCT command_id) || ' ' ||
		(SELECT count(*) FROM command WHERE acted_at IS NOT NULL) FROM command_action")"
x=$(q "$dsn" "SELECT id FROM command WHERE state = 'running' ORDER BY id LIMIT 1")
expect_eq "another instance gets no slot for a command not its own" "-1" \
	"$(q "$d" "SELECT ammd_command_act($x, 'someone-else', NULL, $act)")"
q "$dsn" "INSERT INTO command (meter_id, kind, state, claimed_by, started_at, attempts)
	SELECT meter_id, 'disconnect', 'running', 'i9', now(), 1 FROM command WHERE id = $x" >/dev/null
y=$(q "$dsn" "SELECT max(id) FROM command")
expect_eq "a 101st action within the minute is refused" "0" "$(q "$d" "SELECT ammd_command_act($y, 'i9', NULL, $act)")"
expect_eq "... and not recorded" "100 0" \
	"$(q "$d" "SELECT (SELECT count(*) FROM command_action) || ' ' || (SELECT count(*) FROM command WHERE id = $y AND acted_at IS NOT NULL)")"
expect_eq "... while with a cap of 101 it is allowed" "1" "$(q "$d" "SELECT ammd_command_act($y, 'i9', NULL, 'disconnect', '{disconnect}', 101)")"
q "$dsn" "DELETE FROM command_action WHERE command_id = $y; DELETE FROM command WHERE id = $y" >/dev/null
expect_eq "the rate view counts the actions of the last minute" "100" \
	"$(q "$r" "SELECT acted_last_minute FROM command_rate WHERE kind = 'disconnect'")"
q "$dsn" "UPDATE command_action SET acted_at = acted_at - interval '61 seconds'" >/dev/null
expect_eq "a minute after their actions the next 100 may start" "100" "$(q "$d" "SELECT count(*) FROM ammd_command_claim('i4', $kinds, 500)")"
m=$(q "$dsn" "SELECT meter_id FROM command WHERE state = 'queued' ORDER BY id LIMIT 1")
q "$dsn" "INSERT INTO command (meter_id, kind) VALUES ($m, 'reconnect')" >/dev/null
# those 100 end without acting (already disconnected, say): their slots free up
q "$dsn" "UPDATE command SET state = 'succeeded', started_at = started_at - interval '61 seconds' WHERE state = 'running'" >/dev/null
got=$(q "$d" "SELECT kind FROM ammd_command_claim('i5', $kinds, 1000, '5 minutes', ARRAY[$m])" | sort | tr '\n' ' ')
expect_eq "a meter's commands run one at a time, oldest first" "disconnect " "$got"
q "$dsn" "UPDATE command SET lease_until = now() - interval '1 second' WHERE claimed_by = 'i5'" >/dev/null
expect_eq "a command whose instance died is claimed again" "1" \
	"$(q "$d" "SELECT attempts - 1 FROM ammd_command_claim('i6', $kinds, 1000, '5 minutes', ARRAY[$m])")"
expect_eq "caps of 0 run nothing" "0" \
	"$(q "$d" "SELECT count(*) FROM ammd_command_claim('i7', '{reconnect}', '{reconnect}', '{0}', 10)")"
expect_eq "the rate view counts the starts of the last minute (the retry)" "1" \
	"$(q "$r" "SELECT started_last_minute FROM command_rate WHERE kind = 'disconnect'")"
exit 0
