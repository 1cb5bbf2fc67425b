#!/bin/bash
# t_roles.sh: the least-privilege roles hold, tried as real login roles
# granted ammd, ammd_operator and ammd_reader (issue 8: an operator cannot
# change readings, a reader cannot queue commands, nobody but ammd reads
# keys).
. "$(dirname "$0")/lib.sh"

dsn=$(pg_newdb amm_roles)
"$AMMCTL" db migrate --dsn "$dsn" >/dev/null || fail "migrate"

pg_login_role t_daemon ammd
pg_login_role t_operator ammd_operator
pg_login_role t_reader ammd_reader
pg_login_role t_nobody
as() { echo "host=$PG_SOCK port=$PG_PORT dbname=amm_roles user=$1"; }
d=$(as t_daemon) o=$(as t_operator) r=$(as t_reader) n=$(as t_nobody)

refused() { # WHAT DSN SQL
	q_fails "$2" "$3" && ok "$1" || fail "$1: allowed: $3"
}
allowed() { # WHAT DSN SQL
	psql "$2" -X -q -At -v ON_ERROR_STOP=1 -c "$3" >/dev/null 2>/tmp/amm-roles.$$ ||
		fail "$1: $(cat /tmp/amm-roles.$$)"
	rm -f /tmp/amm-roles.$$
	ok "$1"
}

# Inventory is the operator's, through ammctl as an operator would use it.
out=$("$AMMCTL" meter add --dsn "$o" OP1 transport=tcpip host=10.1.1.1 security=hls-gmac \
	ek=000102030405060708090a0b0c0d0e0f ak=101112131415161718191a1b1c1d1e1f 2>&1) ||
	fail "operator: meter add: $out"
ok "operator adds a meter with keys (ammctl meter add)"
printf 'serial,transport,host,ek,ak,password,system_title\nOP2,tcpip,h2,00112233445566778899aabbccddeeff,00112233445566778899aabbccddeeff,,4b414d0000000002\n' |
	"$AMMCTL" meter import --dsn "$o" - >/dev/null 2>&1 || fail "operator: meter import"
ok "operator imports meters with keys (ammctl meter import)"
mid=$(q "$dsn" "SELECT id FROM meter WHERE serial = 'OP1'")
expect_eq "the keys arrived" "\\x000102030405060708090a0b0c0d0e0f" \
	"$(q "$dsn" "SELECT ek FROM meter_key WHERE meter_id = $mid")"
allowed "operator sees whether keys are set" "$o" "SELECT meter_id, key_set, system_title FROM meter_key"
refused "operator cannot SELECT * FROM meter_key" "$o" "SELECT * FROM meter_key"
refused "operator cannot read ek" "$o" "SELECT ek FROM meter_key"
refused "operator cannot read the LLS password" "$o" "SELECT password FROM meter_key"
refused "operator cannot touch counters" "$o" "UPDATE meter_key SET tx_counter = 0"
refused "operator cannot insert interval_reading" "$o" \
	"INSERT INTO interval_reading VALUES ($mid, now(), 1, 0, 0, 0, 0)"
refused "operator cannot insert register_reading" "$o" \
	"INSERT INTO register_reading (meter_id, obis, captured_at, value) VALUES ($mid, '1-0:1.8.0.255', now(), 1)"
refused "operator cannot update readings" "$o" "UPDATE interval_reading SET a_plus = 0"
refused "operator cannot delete events" "$o" "DELETE FROM event"
refused "operator cannot read readings" "$o" "SELECT count(*) FROM interval_reading"
allowed "operator queues a command" "$o" "INSERT INTO command (meter_id, kind) VALUES ($mid, 'disconnect')"
expect_eq "created_by is the login, not the group" "t_operator" \
	"$(q "$dsn" "SELECT created_by FROM command WHERE meter_id = $mid")"
refused "operator cannot forge created_by into a result" "$o" "UPDATE command SET state = 'succeeded'"
allowed "operator cancels a queued command" "$o" \
	"SELECT ammd_command_cancel((SELECT max(id) FROM command))"
expect_eq "the audit trail names the operator" "t_operator:queued,t_operator:cancelled" \
	"$(q "$dsn" "SELECT string_agg(actor || ':' || new_state, ',' ORDER BY id) FROM command_audit")"
refused "operator cannot write the audit trail" "$o" \
	"INSERT INTO command_audit (command_id, meter_id, actor, new_state) VALUES (1, $mid, 'x', 'queued')"
allowed "operator sees completeness" "$o" "SELECT * FROM completeness_fleet"
refused "operator cannot create partitions" "$o" "SELECT ammd_ensure_partitions(now(), 1)"
refused "operator cannot read the outbox" "$o" "SELECT * FROM outbox"

# The daemon.
allowed "ammd reads keys" "$d" "SELECT ek, ak, password, tx_counter FROM meter_key"
allowed "ammd writes intervals" "$d" "INSERT INTO interval_reading VALUES ($mid, now(), 1, 0, 0, 0, 0)"
allowed "ammd writes registers, events, pointers, sessions, outbox" "$d" "
	INSERT INTO register_reading (meter_id, obis, captured_at, value) VALUES ($mid, '1-0:1.8.0.255', now(), 1);
	INSERT INTO event (meter_id, log, ts, code) VALUES ($mid, 0, now(), 7);
	INSERT INTO read_pointer (meter_id, what, last_ts) VALUES ($mid, 'profile', now());
	INSERT INTO session_log (meter_id, started_at, outcome) VALUES ($mid, now(), 'ok');
	INSERT INTO outbox (topic, payload) VALUES ('t', '\\x00')"
allowed "ammd advances counters" "$d" "UPDATE meter_key SET tx_counter = tx_counter + 1"
allowed "ammd creates partitions" "$d" "SELECT ammd_ensure_partitions(now(), 6)"
allowed "ammd claims and executes commands" "$d" \
	"UPDATE command SET state = 'running', started_at = now() WHERE id = (SELECT id FROM command WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
expect_eq "ammd leases meters" "2" "$(q "$d" "SELECT count(*) FROM ammd_claim_meters('i1', 10)")"
expect_eq "a second instance finds them leased" "0" "$(q "$d" "SELECT count(*) FROM ammd_claim_meters('i2', 10)")"

# The reader.
allowed "reader reads readings" "$r" "SELECT count(*) FROM interval_reading"
allowed "reader reads inventory and command state" "$r" "SELECT serial FROM meter; SELECT state FROM command"
refused "reader cannot queue a command" "$r" "INSERT INTO command (meter_id, kind) VALUES ($mid, 'disconnect')"
refused "reader cannot cancel a command" "$r" "SELECT ammd_command_cancel(1)"
refused "reader cannot read keys" "$r" "SELECT ek FROM meter_key"
refused "reader cannot set keys" "$r" \
	"SELECT ammd_set_meter_keys(ARRAY[$mid], ARRAY[NULL::bytea], ARRAY[NULL::bytea], ARRAY[NULL], ARRAY[NULL::bytea])"
refused "reader cannot change inventory" "$r" "UPDATE meter SET enabled = false"
refused "reader cannot write readings" "$r" "INSERT INTO interval_reading VALUES ($mid, now() + interval '1 hour', 1, 0, 0, 0, 0)"
out=$("$AMMCTL" meter add --dsn "$r" R1 transport=tcpip host=h 2>&1)
expect_eq "ammctl meter add as reader: exit 1" "1" "$?"
expect_match "... with the server's message" "permission denied" "$out"
"$AMMCTL" meter list --dsn "$r" >/dev/null || fail "reader: meter list"
ok "reader lists meters (ammctl meter list)"
"$AMMCTL" meter show --dsn "$o" OP1 >/dev/null || fail "operator: meter show"
ok "operator shows a meter without key rights (ammctl meter show)"

out=$("$AMMCTL" db status --dsn "$r") || fail "reader: db status: $out"
expect_eq "every role sees the schema version (ammctl db status)" "up to date" "$(echo "$out" | tail -1)"
refused "an operator cannot migrate" "$o" "DELETE FROM schema_migrations"

# Anyone else: nothing.
refused "a login without a role reads no meters" "$n" "SELECT * FROM meter"
refused "a login without a role queues nothing" "$n" "INSERT INTO command (meter_id, kind) VALUES ($mid, 'disconnect')"
exit 0
