#!/bin/bash
# t_status.sh: the operator's view — `ammctl status` and `ammctl mqtt tail`.
#
# status: a small fleet is set up by hand (inventory, session log,
# intervals, commands) so that every figure is known, and the JSON and text
# output are checked exactly: fleet by reachability/enabled/transport, the
# round (collection window from a config file starting 30 minutes ago:
# read, failed, waiting, claimed, sessions, the progress bar), failures by
# cause with the latest error, completeness per day for the fleet and one
# meter, the least complete meters, the command queue; then --meter, the
# operator and reader roles, and refused arguments.
#
# mqtt tail: protobuf payloads built here field by field (MeterState,
# Registers with a negative scaler, CommandResult), a JSON payload, a
# payload that does not decode and a topic that is not ammd's go through a
# real broker; the decoded JSON must hold exactly the values encoded, enums
# by name; --no-retained skips the retained message, the text form shows
# timestamps in UTC, and --timeout ends with exit 1 when too few came.
. "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$root/build}
AMMCTL=${AMMCTL:-$BUILD/ammctl}
export AMMD_SQL_DIR=${AMMD_SQL_DIR:-$root/sql}
command -v python3 >/dev/null || fail "python3 needed"

[ -n "${PG_SUPER_DSN:-}" ] || pg_start
dsn=$(pg_newdb ammd_status)
"$AMMCTL" db migrate --dsn "$dsn" >/dev/null || fail "migrate"
work=$(mktemp -d)
lib_cleanup_add rm -rf "$work"

# jget JSONFILE EXPR: a Python expression over the document `d`.
jget() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# ---- a fleet with known figures ---------------------------------------------------

# A..F enabled tcpip meters, G a disabled GPRS meter.
for s in 10000001 10000002 10000003 10000004 10000005 10000006; do
	"$AMMCTL" meter add --dsn "$dsn" "$s" transport=tcpip host=127.0.0.1 profile_period=900 \
		>/dev/null || fail "meter add $s"
done
"$AMMCTL" meter add --dsn "$dsn" 10000007 transport=gprs >/dev/null || fail "meter add gprs"
"$AMMCTL" meter disable --dsn "$dsn" 10000007 >/dev/null || fail "meter disable"

# The collection window opened 30 minutes ago (in the meters' local time,
# CET/CEST, as ammd counts it) and lasts an hour.
now=$(date +%s)
wstart=$(((now - 1800) / 60 * 60))
hhmm=$(TZ='CET-1CEST,M3.5.0,M10.5.0/3' date -d "@$wstart" +%H:%M)
printf '[collection]\nwindow_start = %s\nwindow_length = 1h\n' "$hhmm" >"$work/ammd.conf"
W=$(date -u -d "@$wstart" +%Y-%m-%dT%H:%M:%SZ)
WE=$(date -u -d "@$((wstart + 3600))" +%Y-%m-%dT%H:%M:%SZ)

id() { q "$dsn" "SELECT id FROM meter WHERE serial = '$1'"; }
A=$(id 10000001) B=$(id 10000002) C=$(id 10000003) D=$(id 10000004) E=$(id 10000005)
F=$(id 10000006) G=$(id 10000007)
q "$dsn" "
INSERT INTO session_log (meter_id, started_at, finished_at, outcome, bytes_in, bytes_out, duration_ms, error) VALUES
 ($A, now() - interval '10 min', now() - interval '10 min', 'ok', 1000, 200, 150, NULL),
 ($B, now() - interval '20 min', now() - interval '20 min', 'timeout', 0, 50, 5000, 'connect timed out'),
 ($B, now() - interval '5 min', now() - interval '5 min', 'ok', 900, 210, 140, NULL),
 ($C, now() - interval '15 min', now() - interval '15 min', 'refused', 0, 0, 1, 'connect: old refusal'),
 ($C, now() - interval '8 min', now() - interval '8 min', 'refused', 0, 0, 1, 'connect: Connection refused'),
 ($D, to_timestamp($wstart) - interval '10 min', to_timestamp($wstart) - interval '10 min', 'ok', 1, 1, 1, NULL),
 ($E, now() - interval '12 min', now() - interval '12 min', 'auth', 10, 10, 30, 'association refused'),
 ($G, now() - interval '3 min', now() - interval '3 min', 'ok', 1, 1, 1, NULL);
UPDATE meter SET reachability = 'reachable', last_contact_at = now() WHERE id IN ($A, $B);
UPDATE meter SET reachability = 'unreachable', failures = 7, last_error = 'connect: Connection refused' WHERE id = $C;
UPDATE meter SET leased_by = 'ammd-x', lease_until = now() + interval '5 min' WHERE id IN ($A, $F);
-- yesterday (UTC): A complete (96 of 96), B half (48)
INSERT INTO interval_reading (meter_id, ts, a_plus)
 SELECT $A, (current_date AT TIME ZONE 'UTC') - interval '1 day' + i * interval '15 min', i FROM generate_series(1, 96) i;
INSERT INTO interval_reading (meter_id, ts, a_plus)
 SELECT $B, (current_date AT TIME ZONE 'UTC') - interval '1 day' + i * interval '30 min', i FROM generate_series(1, 48) i;
INSERT INTO command (meter_id, kind, state) VALUES ($A, 'read_now', 'queued'), ($B, 'read_now', 'queued'),
 ($C, 'clock_sync', 'running'), ($D, 'clock_sync', 'succeeded');
UPDATE command SET created_at = now() - interval '90 s' WHERE meter_id = $A;
" >/dev/null || fail "fixture"
# intervals of today that have ended, per meter (as ammd_completeness counts them)
today_exp=$(q "$dsn" "SELECT extract(epoch FROM now() - date_trunc('day', now()))::int / 900")
yday=$(q "$dsn" "SELECT (current_date - 1)::text")
today=$(q "$dsn" "SELECT current_date::text")

"$AMMCTL" status --dsn "$dsn" -f "$work/ammd.conf" --days 2 --json >"$work/s.json" ||
	fail "ammctl status --json"
j() { jget "$work/s.json" "$1"; }

expect_eq "fleet: meters, enabled, disabled" "7 6 1" \
	"$(j 'd["fleet"]["meters"], d["fleet"]["enabled"], d["fleet"]["disabled"]' | tr -d '(),')"
expect_eq "fleet: reachability of enabled meters" "2 1 3" \
	"$(j '" ".join(str(d["fleet"]["reachability"][k]) for k in ("reachable", "unreachable", "unknown"))')"
expect_eq "fleet: by transport" "gprs 1 0, tcpip 6 6" \
	"$(j '", ".join("%s %s %s" % (k, v["meters"], v["enabled"]) for k, v in d["fleet"]["transport"].items())')"
expect_eq "round: window from the config" "$W $WE True $work/ammd.conf" \
	"$(j '" ".join(str(d["round"][k]) for k in ("window_start", "window_end", "in_window", "window_source"))')"
expect_eq "round: due read failed waiting in_progress sessions" "6 2 2 2 1 6" \
	"$(j '" ".join(str(d["round"][k]) for k in ("due", "read", "failed", "waiting", "in_progress", "sessions"))')"
expect_eq "round: percent" "33.33" "$(j 'd["round"]["percent"]')"
expect_match "round: pace and ETA" '^[0-9.]+ [0-9]+$' \
	"$(j '"%s %s" % (d["round"]["meters_per_s"], d["round"]["eta_s"])')"
expect_eq "failures by cause, latest error first" \
	"refused 2 1 connect: Connection refused|auth 1 1 association refused|timeout 1 1 connect timed out" \
	"$(j '"|".join("%s %s %s %s" % (x["outcome"], x["sessions"], x["meters"], x["last_error"]) for x in d["failures"])')"
expect_eq "completeness per day (fleet, stored capped at expected)" \
	"$yday 6 576 144 25.0|$today 6 $((6 * today_exp)) 0 0.0" \
	"$(j '"|".join("%s %s %s %s %s" % (x["day"], x["meters"], x["expected"], x["stored"], float(x["percent"])) for x in d["completeness"]["per_day"])')"
if [ "$today_exp" = 0 ]; then
	want_c="1 5" want_w="10000003 10000004 10000005 10000006 10000002"
else
	want_c="0 6" want_w="10000003 10000004 10000005 10000006 10000002 10000001"
fi
expect_eq "completeness: complete / incomplete meters" "$want_c" \
	"$(j '"%s %s" % (d["completeness"]["complete_meters"], d["completeness"]["incomplete_meters"])')"
expect_eq "completeness: least complete first" "$want_w" \
	"$(j '" ".join(x["serial"] for x in d["completeness"]["least_complete"])')"
expect_eq "commands: queued running oldest by_kind" "2 1 True read_now 2 0, clock_sync 0 1" \
	"$(j '"%s %s %s " % (d["commands"]["queued"], d["commands"]["running"], 85 <= d["commands"]["oldest_queued_s"] <= 300) + ", ".join("%s %s %s" % (k, v["queued"], v["running"]) for k, v in sorted(d["commands"]["by_kind"].items(), reverse=True))')"

# ---- the text form --------------------------------------------------------------------

"$AMMCTL" status --dsn "$dsn" -f "$work/ammd.conf" --days 2 >"$work/s.txt" || fail "ammctl status"
txt=$(cat "$work/s.txt")
# 2 of 6 read and 2 of 6 failed on a 50-wide bar: 16 '#', 16 'x', 18 '.'
bar="[$(printf '#%.0s' $(seq 16))$(printf 'x%.0s' $(seq 16))$(printf '.%.0s' $(seq 18))]"
grep -qF -- "$bar  33.3%  2 of 6 read" "$work/s.txt" || fail "text: no '$bar  33.3%  2 of 6 read' in: $txt"
ok "text: progress bar"
expect_match "text: fleet line" "fleet +7 meters, 6 enabled, 1 disabled" "$txt"
expect_match "text: round counts" "2 failed \(retried later\), 2 waiting \(1 claimed by ammd\), 6 sessions" "$txt"
expect_match "text: failure line" "refused +2 sessions +1 meters  last: connect: Connection refused" "$txt"
expect_match "text: completeness line" "$yday +25\.00%  144 / 576" "$txt"
expect_match "text: commands" "commands +2 queued, 1 running; oldest queued" "$txt"

# ---- one meter ---------------------------------------------------------------------------

"$AMMCTL" status --dsn "$dsn" -f "$work/ammd.conf" --days 2 --meter 10000002 --json >"$work/m.json" ||
	fail "status --meter"
expect_eq "--meter: completeness of that meter only" "$yday 1 96 48|$today 1 $today_exp 0" \
	"$(jget "$work/m.json" '"|".join("%s %s %s %s" % (x["day"], x["meters"], x["expected"], x["stored"]) for x in d["completeness"]["per_day"])')"
expect_eq "--meter: state and last sessions, newest first" "reachable ok,timeout 900,0 None" \
	"$(jget "$work/m.json" 'd["meter"]["reachability"] + " " + ",".join(s["outcome"] for s in d["meter"]["sessions"]) + " " + ",".join(str(s["bytes_in"]) for s in d["meter"]["sessions"]) + " " + str(d["meter"]["claimed_by"])')"
# --meter computes its days apart from ammd_completeness(): both must agree.
for s in 10000001 10000002 10000003 10000006; do
	"$AMMCTL" status --dsn "$dsn" --days 3 --meter $s --json >"$work/m3.json" || fail "status --meter $s"
	got=$(jget "$work/m3.json" '"|".join("%s %s %s" % (x["day"], x["expected"], x["stored"]) for x in d["completeness"]["per_day"])')
	want=$(q "$dsn" "SELECT string_agg(day || ' ' || expected || ' ' || LEAST(stored, expected), '|' ORDER BY day)
		FROM ammd_completeness(3) WHERE serial = '$s'")
	[ "$got" = "$want" ] || fail "--meter $s: '$got', ammd_completeness: '$want'"
done
ok "--meter agrees with ammd_completeness() for 4 meters over 3 days"
"$AMMCTL" status --dsn "$dsn" --meter 10000003 >"$work/m.txt" || fail "status --meter text"
expect_match "--meter text: the meter's error and sessions" \
	"unreachable, last contact never, consecutive failures 7" "$(cat "$work/m.txt")"
if [ ! -r /etc/ammd/ammd.conf ]; then
	expect_match "without a config the window is ammd's default (00:15 for 20 h)" \
		"^round +window from [0-9-]+ 00:15 CES?T \(.*\) for 20\.0 h, " "$(cat "$work/m.txt")"
	expect_match "and the text says so" "^ +\(ammd's default window: no readable /etc/ammd/ammd.conf" \
		"$(cat "$work/m.txt")"
fi
expect_status "--meter of an unknown serial exits 1" 1 "$AMMCTL" status --dsn "$dsn" --meter 99999999
expect_status "--days 0 is a usage error" 2 "$AMMCTL" status --dsn "$dsn" --days 0
expect_status "an unknown option is a usage error" 2 "$AMMCTL" status --dsn "$dsn" --bogus
printf '[collection]\nwindow_start = 25:00\n' >"$work/bad.conf"
expect_status "a broken config named with -f exits 1" 1 "$AMMCTL" status --dsn "$dsn" -f "$work/bad.conf"
expect_status "no database: exit 1" 1 "$AMMCTL" status --dsn "host=$PG_SOCK port=$PG_PORT dbname=nosuchdb user=postgres"

# ---- least privilege -----------------------------------------------------------------------

pg_login_role st_operator ammd_operator
pg_login_role st_reader ammd_reader
for r in st_operator st_reader; do
	rdsn="host=$PG_SOCK port=$PG_PORT user=$r dbname=ammd_status"
	out=$("$AMMCTL" status --dsn "$rdsn" -f "$work/ammd.conf" --days 2 --json 2>&1) ||
		fail "status as $r: $out"
	expect_eq "status as $r shows the same round" "2 2" \
		"$(printf '%s' "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["round"]["read"], d["round"]["failed"])')"
done

# ---- ammctl mqtt tail ---------------------------------------------------------------------------

[ -n "${MQTT_PORT:-}" ] || mqtt_start
# Protobuf payloads encoded here field by field (tag = field << 3 | wire type).
python3 - "$work" <<'EOF'
import struct, sys
w = sys.argv[1]
def varint(v):
    v &= (1 << 64) - 1
    out = b""
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])
def f_varint(n, v): return varint(n << 3) + varint(v)
def f_bytes(n, b): return varint(n << 3 | 2) + varint(len(b)) + b
def f_double(n, x): return varint(n << 3 | 1) + struct.pack("<d", x)
state = (f_bytes(1, b"12345678") + f_varint(2, 1) + f_varint(3, 2) + f_varint(4, 1)
         + f_double(5, 12.5) + f_varint(6, 1700000000123))
reg = (f_bytes(1, b"1-0:1.8.0.255") + f_varint(2, 1700000000000) + f_double(3, 1234.5)
       + f_varint(4, 1) + f_varint(5, 12345) + f_varint(6, -1) + f_bytes(7, b"Wh"))
regs = f_bytes(1, b"12345678") + f_varint(2, 1700000001000) + f_bytes(3, reg) + f_bytes(3, reg)
result = f_varint(1, 42) + f_bytes(2, b"12345678") + f_bytes(3, b"disconnect") + f_varint(4, 3)
for name, data in (("state", state), ("regs", regs), ("result", result), ("bad", b"\xff\xff\xff")):
    open(f"{w}/{name}.bin", "wb").write(data)
open(f"{w}/ha.json", "w").write('{"energy_kwh": 1.5}')
EOF
pub() { mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" "$@" || fail "mosquitto_pub $*"; }
pfx=ammd/v1/t_status
pub -r -t "$pfx/meter/12345678/state" -f "$work/state.bin"

"$AMMCTL" mqtt tail --host 127.0.0.1 --port "$MQTT_PORT" --prefix "$pfx" --count 5 --no-retained \
	--timeout 20 --json >"$work/tail.json" 2>"$work/tail.err" &
tail_pid=$!
lib_cleanup_add kill $tail_pid
sleep 1
pub -t "$pfx/meter/12345678/registers" -q 1 -f "$work/regs.bin"
pub -t "$pfx/command/42/result" -f "$work/result.bin"
pub -t "$pfx/meter/12345678/ha" -f "$work/ha.json"
pub -t "$pfx/meter/12345678/profile" -f "$work/bad.bin"
pub -t "$pfx/other" -m hello
wait $tail_pid
expect_eq "mqtt tail --count 5 exits 0" 0 $?
expect_eq "five lines, the retained state skipped" "5" "$(wc -l <"$work/tail.json" | tr -d ' ')"
python3 - "$work/tail.json" "$pfx" >"$work/tail.check" <<'EOF' || fail "tail output: $(cat "$work/tail.check")"
import json, sys
pfx = sys.argv[2]
m = [json.loads(l) for l in open(sys.argv[1])]
want_reg = {"obis": "1-0:1.8.0.255", "captured_at": 1700000000000, "value": 1234.5, "has_raw": True,
            "raw": 12345, "scaler": -1, "unit": "Wh"}
assert m[0]["topic"] == pfx + "/meter/12345678/registers" and m[0]["type"] == "ammd.Registers", m[0]
assert m[0]["qos"] == 1 and m[0]["retained"] is False, m[0]
assert m[0]["payload"] == {"meter": "12345678", "read_at": 1700000001000,
                           "registers": [want_reg, want_reg]}, m[0]["payload"]
assert m[1]["type"] == "ammd.CommandResult", m[1]
p = m[1]["payload"]
assert (p["id"], p["meter"], p["kind"], p["status"], p["error"]) == (42, "12345678", "disconnect", "succeeded", ""), p
assert m[2]["type"] == "json" and json.loads(m[2]["payload_text"]) == {"energy_kwh": 1.5}, m[2]
assert m[3]["type"] == "ammd.ProfileBlock" and m[3]["payload_hex"] == "ffffff" and "error" in m[3], m[3]
assert m[4]["type"] == "unknown" and m[4]["payload_hex"] == "68656c6c6f", m[4]
print("ok")
EOF
ok "decoded payloads equal what was encoded (registers, command result, JSON, bad, foreign)"

out=$("$AMMCTL" mqtt tail --host 127.0.0.1 --port "$MQTT_PORT" --prefix "$pfx" --count 1 --timeout 10)
expect_match "text: header with type, size, retained" \
	"^$pfx/meter/12345678/state  ammd.MeterState, [0-9]+ bytes, qos 0, retained" "$out"
state=$(printf '%s\n' "$out" | sed 1d | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["meter"], d["reachable"], d["breaker"], d["has_credit"], d["credit"], d["last_read"], d["last_read_utc"], d["updated_at"], "updated_at_utc" in d)')
expect_eq "text: MeterState decoded, enum by name, timestamps in UTC" \
	"12345678 True disconnected True 12.5 1700000000123 2023-11-14T22:13:20.123Z 0 False" "$state"

"$AMMCTL" mqtt tail --host 127.0.0.1 --port "$MQTT_PORT" --prefix "$pfx/none" --count 1 --timeout 1 \
	>/dev/null 2>"$work/to.err"
expect_eq "--timeout with too few messages exits 1" 1 $?
expect_match "and says how many came" "0 of 1 messages before the timeout" "$(cat "$work/to.err")"
expect_status "no broker: exit 1" 1 "$AMMCTL" mqtt tail --host 127.0.0.1 --port "$(free_port)" --count 1
expect_status "unknown subcommand: exit 2" 2 "$AMMCTL" mqtt head
