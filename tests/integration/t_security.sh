#!/bin/bash
# t_security.sh: ammd's security promises, tried against metersim and a
# real PostgreSQL.
#   * invocation counters: both of a ciphered meter's counters are stored
#     and the guard trigger refuses to lower them, also for ammd's own
#     role; across an ammd restart they only go up;
#   * a meter whose invocation counter resets (metersim fault ic_reset) is
#     detected: session refused as a replay ("auth"), a warning naming the
#     serial, last_error on the meter, the ammd_sessions_total metric;
#     nothing of the session stored, the stored counter not lowered, and
#     after a restart of ammd it is still refused (the counter that
#     refuses it is the one in the database, not in memory);
#   * no downgrade: a meter the inventory says is hls-gmac but which offers
#     only mechanism none (metersim fault plain) is not associated with at
#     all (the simulator counts a rejected association and no accepted
#     one), and ammd does not try again in the clear;
#   * keys: no role but ammd's (and the schema owner; PostgreSQL's predefined
#     pg_read_all_data is a superuser's grant) may read a key column;
#     the rest of the role matrix is t_roles.sh;
#   * secret files: ammd refuses to start on a world-readable [mqtt]
#     password_file or tls_key (also one found in $CREDENTIALS_DIRECTORY),
#     accepts them at mode 0600.
. "$(dirname "$0")/lib.sh"

N=16
SEED=21
START=2024-03-01T00:00:00Z
START_S=$(date -u -d "$START" +%s)
DAYS=1
CONC=4
METERSIM=$BUILD/metersim
AMMD=$BUILD/ammd
[ -x "$METERSIM" ] && [ -x "$AMMD" ] || fail "build ammd and metersim first"
. "$(dirname "$0")/collect.sh"

work=$(mktemp -d)
chmod 755 "$work"
lib_cleanup_add rm -rf "$work"
cp "$METERSIM" "$work/metersim" && cp "$AMMD" "$work/ammd" || fail "copying the programs"
METERSIM=$work/metersim
AMMD=$work/ammd
fleet=(--count "$N" --seed "$SEED" --origin "$START")

BASE=$(port_block "$N")
"$METERSIM" export "${fleet[@]}" --base-port "$BASE" >"$work/m.csv" || fail "metersim export"
H=$(awk -F, 'NR > 1 && $9 == "hls-gmac" { print $1; exit }' "$work/m.csv")
H2=$(awk -F, 'NR > 1 && $9 == "hls-gmac" { n++; if (n == 2) { print $1; exit } }' "$work/m.csv")
NONE=$(awk -F, 'NR > 1 && $9 == "none" { print $1; exit }' "$work/m.csv")
[ -n "$H" ] && [ -n "$H2" ] && [ -n "$NONE" ] || fail "the fleet lacks hls-gmac or plain meters"
dsn=$(pg_newdb amm_security)
"$AMMCTL" db migrate --dsn "$dsn" >/dev/null || fail "migrate"
"$AMMCTL" meter import --dsn "$dsn" "$work/m.csv" >/dev/null || fail "import"
pg_login_role t_sec_daemon ammd
ammd_dsn="host=$PG_SOCK port=$PG_PORT dbname=amm_security user=t_sec_daemon"

CTL=$work/sim.sock
"$METERSIM" serve "${fleet[@]}" --base-port "$BASE" --start "$START" --speed 0 --control "$CTL" \
	>"$work/sim.log" 2>&1 &
sim_pid=$!
lib_cleanup_add kill "$sim_pid"
wait_port $((BASE + N - 1)) 20 || fail "metersim did not start"
simctl() { "$METERSIM" ctl "$CTL" "$@"; }
simcount() { simctl counters | awk -F= -v k="$1" '$1 == k { print $2 }'; }

HTTP_PORT=$(free_port)
HTTP_LISTEN=127.0.0.1:$HTTP_PORT conf "$ammd_dsn"
chmod 600 "$work/ammd.conf"
metrics() { python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$HTTP_PORT/metrics', timeout=3).read().decode())"; }

# only_due SERIAL: make that one meter due, every other one not
only_due() {
	q "$dsn" "UPDATE meter SET next_due_at = CASE WHEN serial = '$1' THEN NULL ELSE now() + interval '1 day' END" >/dev/null
}
# sessions_of SERIAL
sessions_of() { q "$dsn" "SELECT count(*) FROM session_log s JOIN meter m ON m.id = s.meter_id WHERE m.serial = '$1'"; }
# wait_session SERIAL COUNT: until the meter has COUNT sessions logged
wait_session() {
	local i=0
	until [ "$(sessions_of "$1")" -ge "$2" ]; do
		sleep 0.1
		i=$((i + 1))
		[ $i -gt 300 ] && { tail -20 "$work/ammd.log" >&2; fail "no session of $1"; }
	done
}
last_session() { q "$dsn" "SELECT s.outcome || '|' || coalesce(s.error, '') FROM session_log s JOIN meter m ON m.id = s.meter_id
	WHERE m.serial = '$1' ORDER BY s.id DESC LIMIT 1"; }
counters_of() { q "$dsn" "SELECT k.tx_counter || ' ' || k.rx_counter FROM meter_key k JOIN meter m ON m.id = k.meter_id WHERE m.serial = '$1'"; }

# ---- round 1, as the ammd role -----------------------------------------------------

ammd_start
round_wait "$dsn" 120
expect_eq "round 1: every meter read" "$N ok" \
	"$(q "$dsn" "SELECT count(DISTINCT meter_id) || ' ' || string_agg(DISTINCT outcome, ',') FROM session_log")"
ammd_term || fail "ammd exit status $?"
read -r tx1 rx1 <<<"$(counters_of "$H")"
[ "$tx1" -gt 0 ] && [ "$rx1" -gt 0 ] || fail "counters of $H not stored ($tx1 $rx1)"
ok "counters of $H stored: send $tx1 (reserved window), received $rx1"

# ---- the guard: never lower, not even for ammd ---------------------------------------

mid=$(q "$dsn" "SELECT id FROM meter WHERE serial = '$H'")
q_fails "$ammd_dsn" "UPDATE meter_key SET rx_counter = 0 WHERE meter_id = $mid" &&
	ok "ammd's role cannot lower the received counter" || fail "rx_counter lowered"
q_fails "$ammd_dsn" "UPDATE meter_key SET tx_counter = 1 WHERE meter_id = $mid" &&
	ok "ammd's role cannot lower the send counter" || fail "tx_counter lowered"
q_fails "$dsn" "UPDATE meter_key SET rx_counter = rx_counter - 1 WHERE meter_id = $mid" &&
	ok "... nor can the schema owner" || fail "rx_counter lowered by the owner"
q "$dsn" "SELECT ammd_set_meter_keys(ARRAY[$mid], ARRAY[ek], ARRAY[ak], ARRAY[password], ARRAY[system_title]) FROM meter_key WHERE meter_id = $mid" >/dev/null
expect_eq "setting the same keys again keeps the received counter" "$tx1 $rx1" "$(counters_of "$H")"

# across a restart the counters only go up
only_due "$H"
ammd_start
wait_session "$H" 2
expect_match "after a restart $H is read again" "^ok\|" "$(last_session "$H")"
read -r tx2 rx2 <<<"$(counters_of "$H")"
[ "$tx2" -gt "$tx1" ] && [ "$rx2" -gt "$rx1" ] || fail "counters did not go up across a restart: $tx1 $rx1 -> $tx2 $rx2"
ok "across a restart both counters went up: send $tx1 -> $tx2, received $rx1 -> $rx2"

# ---- a meter whose counter resets ----------------------------------------------------------

rows_before=$(q "$dsn" "SELECT count(*) FROM register_reading r JOIN meter m ON m.id = r.meter_id WHERE m.serial = '$H'")
simctl fault "ic_reset@$H" >/dev/null || fail "ctl fault ic_reset"
only_due "$H"
wait_session "$H" 3
out=$(last_session "$H")
expect_match "counter reset: session refused as a replay" "^auth\|.*replay" "$out"
expect_match "... logged with the serial" "$H.*replay" "$(grep -a replay "$work/ammd.log")"
expect_match "... on the meter: last_error, a failure counted" "replay.*\|1" \
	"$(q "$dsn" "SELECT last_error || '|' || failures FROM meter WHERE serial = '$H'")"
expect_match "... metric ammd_sessions_total{outcome=\"auth\"}" \
	"ammd_sessions_total\{transport=\"tcpip\",outcome=\"auth\"\} [1-9]" "$(metrics)"
rx3=$(counters_of "$H" | cut -d' ' -f2)
[ "$rx3" -ge "$rx2" ] || fail "the stored received counter went back: $rx2 -> $rx3"
ok "... the stored received counter is not lowered ($rx2 -> $rx3: the association's frames before the reset)"
ammd_term || fail "ammd exit status $?"
only_due "$H"
ammd_start
wait_session "$H" 4
expect_match "after an ammd restart the reset meter is still refused" "^auth\|.*replay" "$(last_session "$H")"
expect_eq "... nothing of its sessions stored" "$rows_before" \
	"$(q "$dsn" "SELECT count(*) FROM register_reading r JOIN meter m ON m.id = r.meter_id WHERE m.serial = '$H'")"
expect_eq "... and never read in the clear: every session of $H ciphered or refused" "0" \
	"$(q "$dsn" "SELECT count(*) FROM session_log s JOIN meter m ON m.id = s.meter_id
	             WHERE m.serial = '$H' AND s.outcome NOT IN ('ok', 'auth')")"
simctl clear "$H" >/dev/null

# ---- no downgrade ---------------------------------------------------------------------------

simctl fault "plain@$H2,plain@$NONE" >/dev/null || fail "ctl fault plain"
assoc0=$(simcount associations)
rej0=$(simcount rejected)
only_due "$H2"
n0=$(sessions_of "$H2")
wait_session "$H2" $((n0 + 1))
expect_match "hls-gmac meter offering only mechanism none: association refused" "^rejected\|" "$(last_session "$H2")"
sleep 1
expect_eq "... the simulator accepted no association" "$assoc0" "$(simcount associations)"
[ "$(simcount rejected)" -gt "$rej0" ] || fail "the simulator saw no rejected association"
ok "... and refused the ciphered proposal ($(($(simcount rejected) - rej0)) rejected)"
expect_eq "... and ammd did not try again in the clear (one session)" "$((n0 + 1))" "$(sessions_of "$H2")"
only_due "$NONE"
n0=$(sessions_of "$NONE")
wait_session "$NONE" $((n0 + 1))
expect_match "the same fault on a meter the inventory says is 'none': read" "^ok\|" "$(last_session "$NONE")"
simctl clear >/dev/null
ammd_term || fail "ammd exit status $?"

# ---- keys readable by ammd only ----------------------------------------------------------------

owner=$(q "$dsn" "SELECT tableowner FROM pg_tables WHERE tablename = 'meter_key'")
expect_eq "no role but ammd's members and the owner may read ek, ak or password" "" \
	"$(q "$dsn" "SELECT string_agg(DISTINCT r.rolname, ',') FROM pg_roles r, unnest(ARRAY['ek', 'ak', 'password']) c
	             WHERE NOT r.rolsuper AND r.rolname !~ '^pg_' AND r.rolname <> '$owner' AND NOT pg_has_role(r.oid, 'ammd', 'MEMBER')
	             AND has_column_privilege(r.oid, 'meter_key', c, 'SELECT')")"

# ---- world-readable secret files -------------------------------------------------------------

sec=$work/sec
mkdir -p "$sec/cred"
printf 'hunter2\n' >"$sec/mqtt.pw"
printf 'not really a key\n' >"$sec/client.key"
printf 'hunter2\n' >"$sec/cred/mqtt.pw"
mkconf() { # PASSWORD_FILE [TLS_KEY]
	printf '[database]\ndsn = dbname=x\n[mqtt]\nhost = 127.0.0.1\nusername = ammd\npassword_file = %s\n' "$1" >"$sec/a.conf"
	[ -n "${2:-}" ] && printf 'tls_cert = %s\ntls_key = %s\n' "$sec/client.key" "$2" >>"$sec/a.conf"
	chmod 600 "$sec/a.conf"
}
chmod 644 "$sec/mqtt.pw" "$sec/client.key" "$sec/cred/mqtt.pw"
mkconf "$sec/mqtt.pw"
out=$("$AMMD" -n -f "$sec/a.conf" 2>&1) && fail "world-readable password_file accepted"
expect_match "a world-readable [mqtt] password_file is refused" "password_file $sec/mqtt.pw is readable by everyone" "$out"
chmod 600 "$sec/mqtt.pw"
"$AMMD" -n -f "$sec/a.conf" >/dev/null 2>&1 || fail "mode 0600 password_file refused: $("$AMMD" -n -f "$sec/a.conf" 2>&1)"
ok "... accepted at mode 0600"
mkconf "$sec/mqtt.pw" "$sec/client.key"
out=$("$AMMD" -n -f "$sec/a.conf" 2>&1) && fail "world-readable tls_key accepted"
expect_match "a world-readable [mqtt] tls_key is refused" "tls_key $sec/client.key is readable by everyone" "$out"
chmod 640 "$sec/client.key"
"$AMMD" -n -f "$sec/a.conf" >/dev/null 2>&1 || fail "mode 0640 tls_key refused"
ok "... accepted at mode 0640"
mkconf mqtt.pw
out=$(CREDENTIALS_DIRECTORY=$sec/cred "$AMMD" -n -f "$sec/a.conf" 2>&1) && fail "world-readable credential accepted"
expect_match "a world-readable file in \$CREDENTIALS_DIRECTORY is refused" "$sec/cred/mqtt.pw is readable by everyone" "$out"
chmod 400 "$sec/cred/mqtt.pw"
CREDENTIALS_DIRECTORY=$sec/cred "$AMMD" -n -f "$sec/a.conf" >/dev/null 2>&1 || fail "mode 0400 credential refused"
ok "... accepted at mode 0400"
exit 0
