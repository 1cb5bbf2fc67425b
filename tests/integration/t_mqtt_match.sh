#!/bin/bash
# t_mqtt_match.sh: what a subscriber receives decodes and equals the database.
#
# 200 simulated meters (metersim serve, time frozen), ammd with [mqtt]
# enabled (protobuf) against a broker of this test's own, and a subscriber
# (`ammctl mqtt tail --json`, protobuf decoded through ammd.proto's
# descriptors) listening from before ammd starts.  After one round, once
# the outbox is empty:
#   * the database equals `metersim expect` (collect.sh's compare);
#   * every message decodes (no `error`), of the type its topic names;
#   * registers: the messages' (serial, OBIS, captured_at) are exactly the
#     stored rows, value equal as a double and raw * 10^scaler equal to the
#     stored numeric exactly, scaler equal;
#   * profile: the intervals of the ProfileBlocks are exactly the stored
#     intervals (serial, UTC instant to the millisecond, A+ A- R+ R-,
#     status), capture period 900 s;
#   * events: exactly the stored events (serial, log, instant, code);
#   * state: one MeterState per meter, reachable, no error, last_read at
#     the meter's stored last contact (to the millisecond); a subscriber
#     arriving afterwards gets every meter's state retained;
#   * a message may come twice (at least once) but never contradicts
#     another: each key has one value.
. "$(dirname "$0")/lib.sh"

N=${MATCH_METERS:-200}
SEED=23
START=2024-03-01T00:00:00Z
START_S=$(date -u -d "$START" +%s)
DAYS=1
CONC=50
METERSIM=$BUILD/metersim
AMMD=$BUILD/ammd
[ -x "$METERSIM" ] && [ -x "$AMMD" ] || fail "build ammd and metersim first"
. "$(dirname "$0")/collect.sh"

work=$(mktemp -d)
[ -n "${KEEP_WORK:-}" ] && echo "work: $work" || lib_cleanup_add rm -rf "$work"
cp "$METERSIM" "$work/metersim" && cp "$AMMD" "$work/ammd" && cp "$AMMCTL" "$work/ammctl" ||
	fail "copying the programs"
METERSIM=$work/metersim
AMMD=$work/ammd
AMMCTL=$work/ammctl
fleet=(--count "$N" --seed "$SEED" --origin "$START")

[ -n "${PG_SUPER_DSN:-}" ] || pg_start
mqtt_start # a broker of our own: nobody else's messages on it

BASE=$(port_block "$N")
"$METERSIM" export "${fleet[@]}" --base-port "$BASE" >"$work/m.csv" || fail "metersim export"
dsn=$(pg_newdb amm_mqtt_match)
"$AMMCTL" db migrate --dsn "$dsn" >/dev/null || fail "migrate"
"$AMMCTL" meter import --dsn "$dsn" "$work/m.csv" >/dev/null || fail "import"
sim_start "$START"
conf "$dsn"
cat >>"$work/ammd.conf" <<EOF
[mqtt]
enabled = yes
host = 127.0.0.1
port = $MQTT_PORT
prefix = t/match
format = protobuf
qos = 1
EOF

"$AMMCTL" mqtt tail --json --host 127.0.0.1 --port "$MQTT_PORT" --prefix t/match \
	--timeout 240 >"$work/tail.json" 2>"$work/tail.err" &
tail_pid=$!
lib_cleanup_add kill "$tail_pid"
sleep 1 # subscribed before the first message

ammd_start
round_wait "$dsn" 240
i=0
until [ "$(q "$dsn" "SELECT count(*) FROM outbox")" = 0 ]; do
	sleep 0.2
	i=$((i + 1))
	[ $i -gt 300 ] && fail "outbox not empty after 60 s"
done
sleep 2 # the broker forwards what it acknowledged
kill -TERM "$tail_pid"
wait "$tail_pid" 2>/dev/null
ammd_term || fail "ammd exit status $?"
ok "round done, outbox empty, $(wc -l <"$work/tail.json") messages received"
# a subscriber arriving later gets every meter's state from the broker
"$AMMCTL" mqtt tail --json --host 127.0.0.1 --port "$MQTT_PORT" --prefix t/match --topic 't/match/meter/+/state' \
	--count "$N" --timeout 20 >"$work/retained.json" || fail "retained state: $(wc -l <"$work/retained.json") of $N"
expect_eq "a late subscriber gets one retained state per meter" "$N $N" \
	"$(grep -c '"retained":true' "$work/retained.json") $(grep -o '"meter":"[^"]*"' "$work/retained.json" | sort -u | wc -l)"

expect_load "$dsn" "$(iso $((START_S - DAYS * 86400 - 86400)))" "$(iso $((START_S + 3600)))" "$START"
compare "$dsn" "$(iso $((START_S - DAYS * 86400 + 3600)))" "$(iso $((START_S - 3600)))"

# ---- decode the subscriber's lines into CSV ---------------------------------

python3 - "$work" <<'PY' || fail "decoding the subscriber's output"
import csv, json, sys
w = sys.argv[1]
out = {k: csv.writer(open(f"{w}/m_{k}.csv", "w", newline=""))
       for k in ("reg", "int", "ev", "state", "bad")}
for line in open(f"{w}/tail.json"):
    m = json.loads(line)
    topic = m["topic"].split("/")
    p = m.get("payload")
    if p is None or "error" in m:
        out["bad"].writerow([m["topic"], m.get("error", "no payload")])
        continue
    kind = topic[-1]
    want = {"registers": "ammd.Registers", "profile": "ammd.ProfileBlock",
            "events": "ammd.Events", "state": "ammd.MeterState"}.get(kind)
    if topic[:3] != ["t", "match", "meter"] or m["type"] != want or p.get("meter") != topic[3]:
        out["bad"].writerow([m["topic"], "type " + str(m["type"])])
        continue
    s = p["meter"]
    if kind == "registers":
        for r in p.get("registers", []):
            out["reg"].writerow([s, r["obis"], r["captured_at"], repr(float(r.get("value", 0))),
                                 r.get("raw", 0) if r.get("has_raw") else "", r.get("scaler", 0)])
    elif kind == "profile":
        for iv in p.get("intervals", []):
            out["int"].writerow([s, p.get("period", 0), iv["ts"]] +
                                [repr(float(iv.get(k, 0))) for k in ("a_plus", "a_minus", "r_plus", "r_minus")] +
                                [iv.get("status", 0)])
    elif kind == "events":
        for e in p.get("events", []):
            out["ev"].writerow([s, e["log"], e["ts"], e.get("code", 0)])
    elif kind == "state":
        out["state"].writerow([s, str(p.get("reachable", False)).lower(), p.get("last_read", 0),
                               p.get("last_error", ""), str(m["retained"]).lower()])
PY
expect_eq "every message decodes, typed by its topic" "0" "$(wc -l <"$work/m_bad.csv")"
[ -s "$work/m_reg.csv" ] && [ -s "$work/m_int.csv" ] && [ -s "$work/m_ev.csv" ] && [ -s "$work/m_state.csv" ] ||
	fail "a message kind is missing: $(wc -l "$work"/m_*.csv | tr '\n' ' ')"

psql "$dsn" -X -q -v ON_ERROR_STOP=1 <<EOF || fail "loading the messages"
CREATE TABLE mreg (serial text, obis text, captured_ms bigint, value float8, raw numeric, scaler int);
CREATE TABLE mint (serial text, period int, ts_ms bigint, a_plus float8, a_minus float8, r_plus float8, r_minus float8, status int);
CREATE TABLE mev (serial text, log text, ts_ms bigint, code int);
CREATE TABLE mstate (serial text, reachable bool, last_read_ms bigint, last_error text, retained bool);
\copy mreg FROM '$work/m_reg.csv' CSV
\copy mint FROM '$work/m_int.csv' CSV
\copy mev FROM '$work/m_ev.csv' CSV
\copy mstate FROM '$work/m_state.csv' CSV
EOF

# ---- registers ------------------------------------------------------------------

dreg="SELECT m.serial, r.obis, (extract(epoch FROM r.captured_at) * 1000)::bigint AS captured_ms, r.value, r.scaler
	FROM register_reading r JOIN meter m ON m.id = r.meter_id"
expect_eq "registers: each message key has one value" "0" "$(q "$dsn" "
	SELECT count(*) FROM (SELECT 1 FROM mreg GROUP BY serial, obis, captured_ms
	HAVING count(DISTINCT (value, raw, scaler)) > 1) x")"
expect_eq "registers: the messages carry exactly the stored rows" \
	"$(q "$dsn" "SELECT count(*) FROM register_reading")" \
	"$(q "$dsn" "SELECT count(*) FROM (SELECT DISTINCT serial, obis, captured_ms FROM mreg) x")"
expect_eq "registers: every stored row is in a message, value and scaler equal" "0" "$(q "$dsn" "
	SELECT count(*) FROM ($dreg) d WHERE NOT EXISTS (SELECT 1 FROM mreg
	  WHERE mreg.serial = d.serial AND mreg.obis = d.obis AND mreg.captured_ms = d.captured_ms
	    AND mreg.value = d.value::float8 AND mreg.scaler IS NOT DISTINCT FROM coalesce(d.scaler, 0))")"
expect_eq "registers: raw * 10^scaler is the stored numeric exactly" "0" "$(q "$dsn" "
	SELECT count(*) FROM ($dreg) d JOIN mreg USING (serial, obis, captured_ms)
	WHERE mreg.raw IS NULL OR mreg.raw * power(10::numeric, mreg.scaler) <> d.value")"
nreg=$(sed -n '/^registers = /,/^[a-z_]* = /p' "$work/ammd.conf" | grep -o '[0-9]-[0-9]:[0-9.]*' | wc -l)
expect_eq "registers: every configured register ($nreg) of every meter" "$((nreg * N))" \
	"$(q "$dsn" "SELECT count(*) FROM (SELECT DISTINCT serial, obis FROM mreg) x")"

# ---- profile ----------------------------------------------------------------------

expect_eq "profile: capture period 900 s in every block" "900" "$(q "$dsn" "SELECT string_agg(DISTINCT period::text, ',') FROM mint")"
expect_eq "profile: each interval has one value" "0" "$(q "$dsn" "
	SELECT count(*) FROM (SELECT 1 FROM mint GROUP BY serial, ts_ms
	HAVING count(DISTINCT (a_plus, a_minus, r_plus, r_minus, status)) > 1) x")"
expect_eq "profile: the messages carry exactly the stored intervals" \
	"$(q "$dsn" "SELECT count(*) FROM interval_reading")" \
	"$(q "$dsn" "SELECT count(*) FROM (SELECT DISTINCT serial, ts_ms FROM mint) x")"
expect_eq "profile: every stored interval is in a message with equal values" "0" "$(q "$dsn" "
	SELECT count(*) FROM interval_reading i JOIN meter m ON m.id = i.meter_id
	WHERE NOT EXISTS (SELECT 1 FROM mint WHERE mint.serial = m.serial
	  AND mint.ts_ms = (extract(epoch FROM i.ts) * 1000)::bigint
	  AND (mint.a_plus, mint.a_minus, mint.r_plus, mint.r_minus, mint.status) =
	      (i.a_plus::float8, i.a_minus::float8, i.r_plus::float8, i.r_minus::float8, i.status))")"

# ---- events ---------------------------------------------------------------------------

expect_eq "events: the messages carry exactly the stored events" \
	"$(q "$dsn" "SELECT count(*) FROM event")" \
	"$(q "$dsn" "SELECT count(*) FROM (SELECT DISTINCT serial, log, ts_ms, code FROM mev) x")"
expect_eq "events: every stored event is in a message" "0" "$(q "$dsn" "
	SELECT count(*) FROM event e JOIN meter m ON m.id = e.meter_id
	WHERE NOT EXISTS (SELECT 1 FROM mev WHERE mev.serial = m.serial
	  AND mev.log = '0-0:99.98.' || e.log || '.255' AND mev.code = e.code
	  AND mev.ts_ms = (extract(epoch FROM e.ts) * 1000)::bigint)")"

# ---- state ------------------------------------------------------------------------------

expect_eq "state: one message per meter, reachable, no error" "$N $N" "$(q "$dsn" "
	SELECT count(DISTINCT serial) || ' ' || count(DISTINCT serial) FILTER (WHERE reachable AND coalesce(last_error, '') = '')
	FROM mstate")"
expect_eq "state: last_read is the stored last contact" "0" "$(q "$dsn" "
	SELECT count(*) FROM meter m WHERE NOT EXISTS (SELECT 1 FROM mstate s WHERE s.serial = m.serial
	  AND s.last_read_ms = (extract(epoch FROM m.last_contact_at) * 1000)::bigint)")"
dups=$(q "$dsn" "SELECT (SELECT count(*) FROM mint) - (SELECT count(*) FROM (SELECT DISTINCT serial, ts_ms FROM mint) x)")
echo "  ($(wc -l <"$work/tail.json") messages; $dups intervals received more than once)"
sim_stop
