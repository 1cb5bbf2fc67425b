#!/bin/bash
# t_mbus_collect.sh: ammd collects gateway meters in its normal rounds.
# 20 M-Bus gateways of 50 meters each (one metersim bus per gateway, 9600
# Bd, one of them at 1200 Bd) and 5 Modbus-TCP gateways of 50 meters are
# imported with `ammctl meter import`, plus three meters on a gateway that
# is down; one round later every meter has one session_log row (outcome
# ok; refused, one failure and a later due time behind the dead gateway),
# the energy registers stored equal `metersim expect` (M-Bus: A+, A+ T1/T2,
# A-; Modbus: A+, A-, R+, R-, A+ T1/T2 through the register map), and the
# M-Bus voltages and currents equal `metersim info`.  Fairness: the slow bus takes several times longer
# than the others, and the fast buses are done long before it is.
# Concurrency and metrics: one M-Bus gateway row says concurrency 4, yet
# every bus saw one connection and refused none (metersim refuses a second
# master); each Modbus gateway of concurrency 1 (metersim takes one master)
# one connection; the Modbus gateway of concurrency 3 (metersim takes 3
# masters) was read over 2 or 3 connections open at once, never more
# (metersim's modbus_open_max), and its energies equal expect too; per gateway,
# /metrics counts exactly the requests and bytes metersim counted, 50
# readouts ok, no timeout or garbled answer, and 3 refused readouts at the
# dead gateway; `ammctl status` lists the gateways with what they read.
. "$(dirname "$0")/lib.sh"
# private copies: the shared build tree may be relinked while we run
lib_snap METERSIM "${BUILD:-build}/metersim"
. "$(dirname "$0")/sim_lib.sh"
AMMCTL=${AMMCTL:-$BUILD/ammctl}
AMMD=${AMMD:-$BUILD/ammd}
[ -x "$AMMD" ] || fail "no $AMMD"
lib_snap AMMD "$AMMD"

SEED=21
NB=20  # M-Bus gateways
NM=5   # Modbus gateways
PER=50 # meters per gateway
N=$(((NB + NM) * PER))
START=2024-03-01T12:00:00Z
T=1709294400
SLOW=7 # the gateway at 1200 Bd
CONC=$((NB + 1)) # the Modbus gateway of concurrency 3
fleet=(--seed $SEED --count $N)
base=$(sim_base_port $((NB + NM)))

# one simulator per gateway: metersim puts 250 meters on a bus, --first
# and --count cut the fleet into gateways of 50
for ((g = 0; g < NB + NM; g++)); do
	first=$((g * PER))
	if [ $g -lt $NB ]; then
		baud=9600
		[ $g = $SLOW ] && baud=1200
		sim_start "g$g" --seed $SEED --count $((first + PER)) --first $first --transport mbus \
			--base-port $((base + g)) --speed 0 --start $START --baud $baud
	else
		masters=1 # as many masters as the gateway row's concurrency
		[ $g = $CONC ] && masters=3
		sim_start "g$g" --seed $SEED --count $((first + PER)) --first $first --transport modbus \
			--base-port $((base + g)) --speed 0 --start $START \
			--modbus-map "$ROOT/meterlib/maps/kamstrup382.map" --modbus-masters $masters
	fi
done
ok "$NB M-Bus and $NM Modbus gateways of $PER meters started"

# the inventory: export's rows with the gateway and address of our layout
"$METERSIM" export "${fleet[@]}" --transport mbus >"$SIM_WORK/mb.csv"
"$METERSIM" export "${fleet[@]}" --transport modbus >"$SIM_WORK/mo.csv"
{
	head -1 "$SIM_WORK/mb.csv"
	awk -F, -v OFS=, -v b=$base -v p=$PER -v nb=$NB 'NR > 1 && NR - 2 < nb * p {
		i = NR - 2; $15 = "127.0.0.1:" (b + int(i / p)); $16 = 1 + i % p; print }' "$SIM_WORK/mb.csv"
	awk -F, -v OFS=, -v b=$base -v p=$PER -v nb=$NB 'NR > 1 && NR - 2 >= nb * p {
		i = NR - 2; $15 = "127.0.0.1:" (b + int(i / p)); $16 = 1 + i % p; print }' "$SIM_WORK/mo.csv"
} >"$SIM_WORK/inv.csv"

dsn=$(pg_newdb amm_mbus_collect)
"$AMMCTL" db migrate --dsn "$dsn" >/dev/null || fail "migrate"
out=$("$AMMCTL" meter import --dsn "$dsn" "$SIM_WORK/inv.csv" 2>&1) || fail "import: $out"
q "$dsn" "UPDATE gateway SET baud_rate = CASE WHEN port = $((base + SLOW)) THEN 1200 ELSE 9600 END
	WHERE kind = 'mbus';
	UPDATE gateway SET name = 'slow-1200' WHERE port = $((base + SLOW));
	UPDATE gateway SET concurrency = 4 WHERE port = $((base + 3));
	UPDATE gateway SET concurrency = 3 WHERE port = $((base + CONC))" >/dev/null
expect_eq "inventory: $N meters on $((NB + NM)) gateways" "$N $((NB + NM))" \
	"$(q "$dsn" "SELECT (SELECT count(*) FROM meter) || ' ' || (SELECT count(*) FROM gateway)")"
# and a gateway that is down, with three meters
dead=$(free_port)
q "$dsn" "INSERT INTO gateway (name, kind, host, port, baud_rate) VALUES ('127.0.0.1:$dead', 'mbus', '127.0.0.1', $dead, 9600);
	INSERT INTO meter (serial, type, transport, gateway_id, primary_addr)
	SELECT 'dead' || i, '382M', 'mbus', (SELECT id FROM gateway WHERE port = $dead), i FROM generate_series(1, 3) i" >/dev/null

HTTP_PORT=$(free_port)
cat >"$SIM_WORK/ammd.conf" <<CONF
[daemon]
log_level = info
instance_id = t-mbus
http_listen = 127.0.0.1:$HTTP_PORT
[database]
dsn = $dsn
[collection]
concurrency = 16
lease_batch = 500
lease_seconds = 600
[mbus]
connect_timeout_ms = 3000
response_timeout_ms = 20
retries = 2
[modbus]
connect_timeout_ms = 3000
response_timeout_ms = 1000
retries = 1
CONF
t0=$(date +%s.%N)
"$AMMD" -d -f "$SIM_WORK/ammd.conf" >"$SIM_WORK/ammd.log" 2>&1 &
ammd_pid=$!
lib_cleanup_add "kill -9 $ammd_pid"
i=0
while [ "$(q "$dsn" "SELECT count(*) FROM meter WHERE next_due_at IS NULL OR next_due_at <= now() OR leased_by IS NOT NULL")" != 0 ]; do
	sleep 0.5
	i=$((i + 1))
	kill -0 $ammd_pid 2>/dev/null || { tail -30 "$SIM_WORK/ammd.log" >&2; fail "ammd exited"; }
	[ $i -gt 240 ] && { tail -30 "$SIM_WORK/ammd.log" >&2; fail "round not finished after 120 s"; }
done
t1=$(date +%s.%N)
# the gateways' metrics against what each simulator counted
python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$HTTP_PORT/metrics', timeout=3).read().decode())" \
	>"$SIM_WORK/metrics.txt" || fail "GET /metrics"
for ((g = 0; g < NB + NM; g++)); do
	label=127.0.0.1:$((base + g))
	[ $g = $SLOW ] && label=slow-1200
	kind=mbus
	[ $g -ge $NB ] && kind=modbus
	echo "$label $kind $("$METERSIM" ctl "$SIM_WORK/g$g.sock" counters | tr '\n' ' ')"
done >"$SIM_WORK/simcount.txt"
check=$(python3 - "$SIM_WORK/simcount.txt" "$PER" "127.0.0.1:$dead" "$SIM_WORK/metrics.txt" \
	"127.0.0.1:$((base + CONC))" <<'PY'

import re, sys
m = {}
for line in open(sys.argv[4]):
    r = re.match(r'(ammd_gateway_\w+)\{(.*)\} (\S+)$', line.strip())
    if r:
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', r.group(2))))
        m[(r.group(1), labels)] = float(r.group(3))
def v(name, **kw):
    return m.get((name, tuple(sorted(kw.items()))), -1)
bad, per, conc = [], int(sys.argv[2]), sys.argv[5]
conc_seen = None
for line in open(sys.argv[1]):
    f = line.split()
    gw, kind = f[0], f[1]
    sim = dict(x.split("=", 1) for x in f[2:] if "=" in x)
    k = dict(gateway=gw, kind=kind)
    want = {
        "requests": int(sim["mbus_requests" if kind == "mbus" else "modbus_requests"]),
        "bytes out": int(sim["bytes_in"]), "bytes in": int(sim["bytes_out"]),
        "connects": int(sim["connections"]), "sim connections": 1, "sim refused": 0,
        "readouts ok": per, "timeouts": 0, "garbled": 0, "concurrency": 1, "queue": 0}
    got = {
        "requests": v("ammd_gateway_requests_total", **k),
        "bytes out": v("ammd_gateway_bytes_total", direction="out", **k),
        "bytes in": v("ammd_gateway_bytes_total", direction="in", **k),
        "connects": v("ammd_gateway_connects_total", **k),
        "sim connections": int(sim["connections"]), "sim refused": int(sim["refused"]),
        "readouts ok": v("ammd_gateway_readouts_total", outcome="ok", **k),
        "timeouts": v("ammd_gateway_timeouts_total", **k),
        "garbled": v("ammd_gateway_garbled_total", **k),
        "concurrency": v("ammd_gateway_concurrency", **k),
        "queue": v("ammd_gateway_queue", **k)}
    if kind == "modbus":
        want["sim open at most"] = 1
        got["sim open at most"] = int(sim["modbus_open_max"])
    if gw == conc:
        # 3 workers: a connection each, all open together; the counts
        # must agree, and more than one and at most 3 were open at once
        conc_seen = (got["sim connections"], got["sim open at most"])
        want["concurrency"] = 3
        want["sim connections"] = got["connects"]
        want["sim open at most"] = got["sim open at most"]
        if not 2 <= got["sim open at most"] <= 3:
            bad.append("%s: %d connections open at once, expected 2 or 3" % (gw, got["sim open at most"]))
        if got["sim connections"] > 3:
            bad.append("%s: %d connections for 3 workers" % (gw, got["sim connections"]))
    for key in want:
        if got[key] != want[key]:
            bad.append("%s %s: %s %g, expected %g" % (gw, kind, key, got[key], want[key]))
dead = dict(gateway=sys.argv[3], kind="mbus")
if v("ammd_gateway_readouts_total", outcome="refused", **dead) != 3:
    bad.append("dead gateway: %g refused readouts" % v("ammd_gateway_readouts_total", outcome="refused", **dead))
if v("ammd_gateway_connects_total", **dead) != 0:
    bad.append("dead gateway: connects")
slow = v("ammd_gateway_busy_seconds_total", gateway="slow-1200", kind="mbus")
fast = max(x for (n, l), x in m.items() if n == "ammd_gateway_busy_seconds_total"
           and dict(l)["kind"] == "mbus" and dict(l)["gateway"] not in ("slow-1200", sys.argv[3]))
if not slow > 3 * fast:
    bad.append("busy: slow bus %g s, fastest-finishing others at most %g s" % (slow, fast))
if conc_seen is None:
    bad.append("no counters of the concurrency-3 gateway")
print("; ".join(bad) if bad else "ok %d requests, busy slow %.1f s, others <= %.1f s; "
      "concurrency 3: %d connections, %d open at once" %
      (sum(x for (n, l), x in m.items() if n == "ammd_gateway_requests_total"), slow, fast,
       conc_seen[0], conc_seen[1]))
PY
)
case $check in
ok*) ok "metrics per gateway equal metersim's counters, one connection per gateway of concurrency 1, none refused: ${check#ok }" ;;
*) fail "gateway metrics: $check" ;;
esac
grep -q "gateway 127.0.0.1:$((base + 3)): concurrency 4 not used" "$SIM_WORK/ammd.log" ||
	fail "no notice that the M-Bus row's concurrency 4 is not used"
ok "the M-Bus row's concurrency 4 is logged as not used"
status=$("$AMMCTL" status --dsn "$dsn" -f "$SIM_WORK/ammd.conf" --json) || fail "ammctl status"
expect_eq "ammctl status: gateways, meters read this round, errors" \
	"$((NB + NM + 1)) $N 3 1 slow-1200:$PER:0:true" \
	"$(python3 -c 'import json,sys
g = json.load(sys.stdin)["gateways"]
s = [x for x in g if x["name"] == "slow-1200"][0]
print(len(g), sum(x["read"] for x in g), sum(x["errors"] for x in g),
      sum(1 for x in g if x["reachable"] is False), "%s:%d:%d:%s" % (s["name"], s["read"], s["errors"], str(s["reachable"]).lower()))' <<<"$status")"
txt=$("$AMMCTL" status --dsn "$dsn" -f "$SIM_WORK/ammd.conf") || fail "ammctl status (text)"
expect_match "ammctl status text: gateways line" \
	"gateways +$((NB + NM + 1)) \(M-Bus $((NB + 1)), Modbus $NM\): reachable $((NB + NM)), unreachable 1" "$txt"
expect_match "ammctl status text: the dead gateway's line" \
	"127\.0\.0\.1:$dead +mbus +0 / 3 +read +3 errors  unreachable  last: .*127\.0\.0\.1:$dead" "$txt"
expect_eq "ammctl status text: of $((NB + NM + 1)) gateways only the dead one is listed" "1 1" \
	"$(grep -cE '^ +[^ ]+ +(mbus|modbus) +[0-9]+ / [0-9]+ +read' <<<"$txt") $(grep -c '(1 with errors or unreachable shown' <<<"$txt")"
kill -TERM $ammd_pid
wait $ammd_pid
live="JOIN meter m ON m.id = l.meter_id WHERE m.serial NOT LIKE 'dead%'"
expect_eq "every meter has one session, all ok" "$N $N ok" \
	"$(q "$dsn" "SELECT count(*) || ' ' || count(DISTINCT meter_id) || ' ' || string_agg(DISTINCT outcome, ',') FROM session_log l $live")"
expect_eq "session_log rows carry the transport" "mbus $((NB * PER)),modbus $((NM * PER))" \
	"$(q "$dsn" "SELECT string_agg(transport || ' ' || n, ',' ORDER BY transport) FROM
		(SELECT l.transport, count(*) n FROM session_log l $live GROUP BY 1) s")"
expect_eq "every meter reachable, no error" "$N" \
	"$(q "$dsn" "SELECT count(*) FROM meter WHERE reachability = 'reachable' AND last_error IS NULL AND failures = 0")"
expect_eq "the meters of the dead gateway: refused, one failure, due again later" "3 refused 3" \
	"$(q "$dsn" "SELECT count(*) || ' ' || string_agg(DISTINCT l.outcome, ',') || ' ' ||
		count(*) FILTER (WHERE m.failures = 1 AND m.next_due_at > now() AND m.last_error LIKE '%127.0.0.1:$dead%')
		FROM session_log l JOIN meter m ON m.id = l.meter_id WHERE m.serial LIKE 'dead%'")"

# ground truth: the energies each transport carries
cut -d, -f1 "$SIM_WORK/inv.csv" | tail -n +2 | while read -r s; do
	"$METERSIM" expect "${fleet[@]}" --meter "$s" --from $((T - 60)) --to $T --what registers \
		--format csv | awk -F, -v s="$s" '$1 == "register" { print s "," $3 "," $4 }'
done >"$SIM_WORK/truth.csv"
q "$dsn" "CREATE TABLE er (serial text, obis text, value numeric)" >/dev/null
psql "$dsn" -X -q -c "\\copy er FROM '$SIM_WORK/truth.csv' CSV" || fail "loading the truth"
diff=$(q "$dsn" "WITH s AS (SELECT m.serial, m.transport, r.obis, r.value FROM register_reading r
		JOIN meter m ON m.id = r.meter_id),
	w AS (SELECT er.*, m.transport FROM er JOIN meter m USING (serial)
		WHERE (m.transport = 'mbus' AND er.obis IN ('1-0:1.8.0.255', '1-0:1.8.1.255', '1-0:1.8.2.255', '1-0:2.8.0.255'))
		   OR (m.transport = 'modbus' AND er.obis IN ('1-0:1.8.0.255', '1-0:2.8.0.255', '1-0:3.8.0.255',
			'1-0:4.8.0.255', '1-0:1.8.1.255', '1-0:1.8.2.255')))
	SELECT count(*) FROM w FULL JOIN s USING (serial, obis)
	WHERE w.value IS NULL AND s.obis ~ '^1-0:[1-4]\\.8\\.[0-2]\\.255$' OR s.value IS NULL OR w.value <> s.value")
compared=$(q "$dsn" "SELECT count(*) FROM register_reading WHERE obis ~ '^1-0:[1-4]\\.8\\.[0-2]\\.255$'")
expect_eq "stored energies equal metersim expect ($compared registers compared)" 0 "$diff"
expect_eq "M-Bus: 4 energies per meter, Modbus: 6" "$((NB * PER * 4 + NM * PER * 6))" "$compared"

# instant values of one M-Bus meter against metersim info
IFS=, read -r serial _ <<<"$(sed -n 3p "$SIM_WORK/inv.csv")"
want=$("$METERSIM" info "${fleet[@]}" --meter "$serial" --at $START | python3 -c 'import json,sys
d = json.load(sys.stdin)["instant"]
print(",".join("%g" % (v / 10) for v in d["voltage_dv"]) + ";" + ",".join("%g" % (v / 1000) for v in d["current_ma"]))')
got=$(q "$dsn" "SELECT string_agg(value::float8::text, ',' ORDER BY obis) FILTER (WHERE obis ~ ':(32|52|72)\\.7') || ';' ||
	string_agg(value::float8::text, ',' ORDER BY obis) FILTER (WHERE obis ~ ':(31|51|71)\\.7')
	FROM register_reading r JOIN meter m ON m.id = r.meter_id WHERE m.serial = '$serial'")
expect_eq "M-Bus voltages and currents of $serial equal metersim info" "$want" "$got"

# fairness: per gateway, when its last meter was done
spans=$(q "$dsn" "SELECT g.port, extract(epoch FROM max(l.finished_at) - min(l.started_at))::int FROM session_log l
	JOIN meter m ON m.id = l.meter_id JOIN gateway g ON g.id = m.gateway_id WHERE g.port <> $dead GROUP BY g.port ORDER BY g.port")
slow=$(awk -F'|' -v p=$((base + SLOW)) '$1 == p { print $2 }' <<<"$spans")
fast=$(awk -F'|' -v p=$((base + SLOW)) -v b=$base -v nb=$NB '$1 != p && $1 < b + nb && $2 > m { m = $2 } END { print m + 0 }' <<<"$spans")
[ "$slow" -ge $((3 * fast)) ] || fail "the 1200 Bd bus took $slow s, the slowest 9600 Bd bus $fast s"
ok "fairness: the 9600 Bd buses were done within $fast s, the 1200 Bd bus took $slow s"
last_fast=$(q "$dsn" "SELECT extract(epoch FROM max(l.finished_at))::int FROM session_log l JOIN meter m ON m.id = l.meter_id
	JOIN gateway g ON g.id = m.gateway_id WHERE g.port NOT IN ($((base + SLOW)), $dead)")
last_slow=$(q "$dsn" "SELECT extract(epoch FROM max(l.finished_at))::int FROM session_log l JOIN meter m ON m.id = l.meter_id
	JOIN gateway g ON g.id = m.gateway_id WHERE g.port = $((base + SLOW))")
[ "$last_fast" -lt "$last_slow" ] || fail "a fast gateway finished after the slow one"
ok "every other gateway finished $((last_slow - last_fast)) s before the slow bus"
figures=$(q "$dsn" "SELECT l.transport || ': median ' || percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) ||
	' ms, bytes in ' || round(avg(bytes_in)) FROM session_log l $live GROUP BY l.transport ORDER BY 1" | tr '\n' ';')
ok "figures: $N meters in $(python3 -c "print(round($t1 - $t0, 1))") s; $figures"

# Shutdown while the slow bus has a queue: the readout on the wire
# finishes, the queued ones are dropped and stay due (not waited for: 50
# meters at 1200 Bd take ~58 s), no lease is left behind.
slow_id=$(q "$dsn" "SELECT id FROM gateway WHERE name = 'slow-1200'")
q "$dsn" "UPDATE meter SET next_due_at = now() - interval '1 second' WHERE gateway_id = $slow_id" >/dev/null
sed -i 's/^\[daemon\]$/[daemon]\nshutdown_timeout = 120/' "$SIM_WORK/ammd.conf"
before=$(q "$dsn" "SELECT count(*) FROM session_log l JOIN meter m ON m.id = l.meter_id WHERE m.gateway_id = $slow_id")
"$AMMD" -d -f "$SIM_WORK/ammd.conf" >"$SIM_WORK/ammd2.log" 2>&1 &
ammd_pid=$!
lib_cleanup_add "kill -9 $ammd_pid"
i=0
while [ "$(q "$dsn" "SELECT count(*) FROM session_log l JOIN meter m ON m.id = l.meter_id WHERE m.gateway_id = $slow_id")" -lt $((before + 3)) ]; do
	sleep 0.2
	i=$((i + 1))
	[ $i -gt 150 ] && { tail -20 "$SIM_WORK/ammd2.log" >&2; fail "the slow bus read nothing in 30 s"; }
done
ts=$(date +%s.%N)
kill -TERM $ammd_pid
wait $ammd_pid || fail "ammd exited $? after SIGTERM"
secs=$(python3 -c "print(round($(date +%s.%N) - $ts, 1))")
read -r k left leased <<<"$(q "$dsn" "SELECT (SELECT count(*) FROM session_log l JOIN meter m ON m.id = l.meter_id
	WHERE m.gateway_id = $slow_id) - $before, (SELECT count(*) FROM meter WHERE gateway_id = $slow_id AND next_due_at <= now()),
	(SELECT count(*) FROM meter WHERE leased_by IS NOT NULL)" | tr '|' ' ')"
dropped=$(sed -n 's/.*gateways: draining: 1 readouts to finish, \([0-9]*\) queued left.*/\1/p' "$SIM_WORK/ammd2.log")
expect_eq "drain: read + dropped = the 50 meters, the dropped ones still due, no lease left" \
	"$PER $left 0" "$((k + ${dropped:-1000})) $((PER - k)) $leased"
python3 -c "import sys; sys.exit(0 if $secs < 20 else 1)" || fail "SIGTERM took $secs s with a queue on the slow bus"
! grep -q "shutdown_timeout .* reached" "$SIM_WORK/ammd2.log" || fail "the drain ran into shutdown_timeout"
ok "SIGTERM during the slow bus's queue: exit in $secs s after $k readouts, $dropped queued readouts left for the next start"
