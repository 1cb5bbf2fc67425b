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
. "$(dirname "$0")/lib.sh"
# private copies: the shared build tree may be relinked while we run
snap=$(mktemp -d)
lib_cleanup_add rm -rf "$snap"
cp "${BUILD:-build}/metersim" "$snap/metersim" && METERSIM=$snap/metersim
. "$(dirname "$0")/sim_lib.sh"
AMMCTL=${AMMCTL:-$BUILD/ammctl}
AMMD=${AMMD:-$BUILD/ammd}
[ -x "$AMMD" ] || fail "no $AMMD"
cp "$AMMD" "$snap/ammd" && AMMD=$snap/ammd

SEED=21
NB=20  # M-Bus gateways
NM=5   # Modbus gateways
PER=50 # meters per gateway
N=$(((NB + NM) * PER))
START=2024-03-01T12:00:00Z
T=1709294400
SLOW=7 # the gateway at 1200 Bd
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
		sim_start "g$g" --seed $SEED --count $((first + PER)) --first $first --transport modbus \
			--base-port $((base + g)) --speed 0 --start $START \
			--modbus-map "$ROOT/meterlib/maps/kamstrup382.map"
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
	WHERE kind = 'mbus'" >/dev/null
expect_eq "inventory: $N meters on $((NB + NM)) gateways" "$N $((NB + NM))" \
	"$(q "$dsn" "SELECT (SELECT count(*) FROM meter) || ' ' || (SELECT count(*) FROM gateway)")"
# and a gateway that is down, with three meters
dead=$(free_port)
q "$dsn" "INSERT INTO gateway (name, kind, host, port, baud_rate) VALUES ('127.0.0.1:$dead', 'mbus', '127.0.0.1', $dead, 9600);
	INSERT INTO meter (serial, type, transport, gateway_id, primary_addr)
	SELECT 'dead' || i, '382M', 'mbus', (SELECT id FROM gateway WHERE port = $dead), i FROM generate_series(1, 3) i" >/dev/null

cat >"$SIM_WORK/ammd.conf" <<CONF
[daemon]
log_level = info
instance_id = t-mbus
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
