#!/bin/bash
# t_cmd_read_now.sh: what a read_now command reads is stored and published
# like polled data (issue 7): registers into register_reading (with the
# scaler_unit the command reads along), the load-profile range into
# interval_reading, the event logs into event, each equal to metersim's
# ground truth (metersim expect, the meters' time frozen), and published on
# the meter's registers, profile and events topics (JSON).  The meters are
# not due, so nothing else reads them; the read pointers stay untouched.
. "$(dirname "$0")/lib.sh"

N=2
SEED=57
work=$(mktemp -d)
lib_cleanup_add rm -rf "$work"
# the meters' clocks stand still at T, a whole hour three hours ago
T=$((($(date +%s) / 3600 - 3) * 3600))
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
SIM_EXTRA="--start $T --speed 0"
. "$(dirname "$0")/cmd_lib.sh"
[ -n "${MQTT_PORT:-}" ] || mqtt_start
PREFIX=t-cmd-read-now-$$
CMD_CONF="[mqtt]
enabled = yes
host = 127.0.0.1
port = $MQTT_PORT
prefix = $PREFIX
format = json
client_id = t-cmd-read-now-$$"
cmd_setup amm_cmd_read_now
M=${S[0]}
mid=$(q "$dsn" "SELECT id FROM meter WHERE serial = '$M'")
q "$dsn" "UPDATE meter SET next_due_at = now() + interval '1 day'" >/dev/null
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -v -t "$PREFIX/meter/$M/#" >"$work/sub.txt" 2>/dev/null &
lib_cleanup_add kill $!
cmd_ammd_start

# ---- ground truth ------------------------------------------------------------------
F=$((T - 6 * 3600))
"$METERSIM" expect "${fleet[@]}" --meter "$M" --from "$T" --to "$T" --what registers --format csv \
	>"$work/er.csv" || fail "metersim expect registers"
"$METERSIM" expect "${fleet[@]}" --meter "$M" --from $((F - 3600)) --to "$T" --what intervals --format csv \
	>"$work/ei.csv" || fail "metersim expect intervals"
"$METERSIM" expect "${fleet[@]}" --meter "$M" --from $((T - 3000 * 86400)) --to "$T" --what events --format csv \
	>"$work/ee.csv" || fail "metersim expect events"
psql "$dsn" -X -q -v ON_ERROR_STOP=1 <<EOF || fail "loading the ground truth"
CREATE TABLE er (kind text, at timestamptz, obis text, value numeric, unit text);
CREATE TABLE ei (kind text, ts timestamptz, local text, a_plus numeric, a_minus numeric, r_plus numeric, r_minus numeric, status int);
CREATE TABLE ee_raw (kind text, ts timestamptz, local text, logname text, log_obis text, code int, name text);
\copy er FROM PROGRAM 'grep -v "^#" $work/er.csv' CSV
\copy ei FROM PROGRAM 'grep -v "^#" $work/ei.csv' CSV
\copy ee_raw FROM PROGRAM 'grep -v "^#" $work/ee.csv' CSV
EOF
[ "$(q "$dsn" "SELECT count(*) FROM ei")" -gt 10 ] || fail "metersim expect gave no intervals"

# ---- read_now ----------------------------------------------------------------------
REGS='["1-0:1.8.0.255","1-0:2.8.0.255","1-0:3.8.0.255","1-0:1.8.1.255"]'
id=$(cmd read_now "$M" registers="$REGS" profile="{\"from\":\"$(iso "$F")\",\"to\":\"$(iso "$T")\"}" events='[0,4]')
cmd_ok "$id" "read_now of 4 registers, 6 hours of load profile, logs 0 and 4"
expect_eq "... its result has the values as before" "$(q "$dsn" "SELECT value FROM er WHERE obis = '1-0:1.8.1.255'")" \
	"$(q "$dsn" "SELECT (result #>> '{values,1-0:1.8.1.255,value}')::numeric * 1 FROM command WHERE id = $id")"
for _ in $(seq 1 100); do
	[ "$(q "$dsn" "SELECT count(*) FROM register_reading WHERE meter_id = $mid")" = 4 ] && break
	sleep 0.1
done

expect_eq "the 4 registers are stored" "4" "$(q "$dsn" "SELECT count(*) FROM register_reading WHERE meter_id = $mid")"
expect_eq "... each equal to metersim expect" "0" "$(q "$dsn" "
	SELECT count(*) FROM register_reading r LEFT JOIN er ON er.obis = r.obis
	WHERE r.meter_id = $mid AND er.value IS DISTINCT FROM r.value")"
expect_eq "... with the truth's units (DLMS 30 Wh, 32 varh)" "0" "$(q "$dsn" "
	SELECT count(*) FROM register_reading r JOIN er ON er.obis = r.obis
	WHERE r.meter_id = $mid AND CASE er.unit WHEN 'Wh' THEN 30 WHEN 'varh' THEN 32 END IS DISTINCT FROM r.unit")"
n=$(q "$dsn" "SELECT count(*) FROM ei WHERE ts > '$(iso "$F")'")
expect_eq "the profile range is stored: every interval of ($(iso "$F"), $(iso "$T")]" "0" "$(q "$dsn" "
	SELECT count(*) FROM ei WHERE ts > '$(iso "$F")' AND NOT EXISTS (
	  SELECT FROM interval_reading i WHERE i.meter_id = $mid AND i.ts = ei.ts)")"
diff="SELECT i.ts, i.a_plus, ei.a_plus FROM interval_reading i LEFT JOIN ei ON ei.ts = i.ts
	WHERE i.meter_id = $mid AND (ei.a_plus, ei.a_minus, ei.r_plus, ei.r_minus, ei.status)
	      IS DISTINCT FROM (i.a_plus, i.a_minus, i.r_plus, i.r_minus, i.status)"
[ "$(q "$dsn" "SELECT count(*) FROM ($diff) x")" = 0 ] || q "$dsn" "$diff LIMIT 5" >&2
expect_eq "... each equal to metersim expect ($n intervals)" "0" "$(q "$dsn" "
	SELECT count(*) FROM interval_reading i LEFT JOIN ei ON ei.ts = i.ts
	WHERE i.meter_id = $mid AND (ei.a_plus, ei.a_minus, ei.r_plus, ei.r_minus, ei.status)
	      IS DISTINCT FROM (i.a_plus, i.a_minus, i.r_plus, i.r_minus, i.status)")"
ne=$(q "$dsn" "SELECT count(*) FROM event WHERE meter_id = $mid")
[ "$(q "$dsn" "SELECT count(DISTINCT log) FROM event WHERE meter_id = $mid")" = 2 ] || fail "not both logs stored ($ne events)"
evdiff="SELECT e.log, e.ts, e.code FROM event e WHERE e.meter_id = $mid AND NOT EXISTS (
	  SELECT FROM ee_raw x WHERE x.ts = e.ts AND x.code = e.code
	    AND split_part(x.log_obis, '.', 3)::int = e.log)"
[ "$(q "$dsn" "SELECT count(*) FROM ($evdiff) x")" = 0 ] || { q "$dsn" "$evdiff ORDER BY 2 LIMIT 5" >&2; q "$dsn" "SELECT * FROM ee_raw ORDER BY ts LIMIT 5" >&2; }
expect_eq "the events of logs 0 and 4 are stored: every one in the truth" "0" "$(q "$dsn" "
	SELECT count(*) FROM event e WHERE e.meter_id = $mid AND NOT EXISTS (
	  SELECT FROM ee_raw x WHERE x.ts = e.ts AND x.code = e.code
	    AND split_part(x.log_obis, '.', 3)::int = e.log)")"
expect_eq "... and every one of the truth's in those logs since the oldest the meter keeps ($ne events)" "0" "$(q "$dsn" "
	SELECT count(*) FROM ee_raw x WHERE split_part(x.log_obis, '.', 3)::int IN (0, 4)
	  AND x.ts >= (SELECT min(ts) FROM event e WHERE e.meter_id = $mid AND e.log = split_part(x.log_obis, '.', 3)::int)
	  AND NOT EXISTS (SELECT FROM event e WHERE e.meter_id = $mid AND e.ts = x.ts AND e.code = x.code
	    AND e.log = split_part(x.log_obis, '.', 3)::int)")"
expect_eq "no read pointer moved" "0" "$(q "$dsn" "SELECT count(*) FROM read_pointer WHERE meter_id = $mid")"
expect_eq "nothing stored for the other meter" "0 0 0" "$(q "$dsn" "
	SELECT (SELECT count(*) FROM register_reading WHERE meter_id <> $mid) || ' ' ||
	       (SELECT count(*) FROM interval_reading WHERE meter_id <> $mid) || ' ' ||
	       (SELECT count(*) FROM event WHERE meter_id <> $mid)")"

# ---- published ---------------------------------------------------------------------
for t in registers profile events; do
	for _ in $(seq 1 50); do grep -aq "^$PREFIX/meter/$M/$t " "$work/sub.txt" && break; sleep 0.1; done
	grep -aq "^$PREFIX/meter/$M/$t " "$work/sub.txt" || { cat "$work/sub.txt" >&2; fail "nothing on $PREFIX/meter/$M/$t"; }
done
ok "published on the meter's registers, profile and events topics"
v=$(q "$dsn" "SELECT value FROM er WHERE obis = '1-0:1.8.0.255'")
grep -a "^$PREFIX/meter/$M/registers " "$work/sub.txt" | grep -aq "\"1-0:1.8.0.255\".*\"raw\": *$v\b\|\"raw\": *$v\b" ||
	{ grep -a "^$PREFIX/meter/$M/registers " "$work/sub.txt" >&2; fail "the registers message lacks A+ = $v"; }
ok "... the registers message carries A+ = $v Wh"

cmd_ammd_term || fail "ammd exit status"
exit 0
