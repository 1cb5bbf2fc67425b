#!/bin/bash
# t_gprs_outbound.sh: GPRS meters with an APN address are dialled by the
# scheduler over the gprs transport (drivers/gprs) with [gprs] timing:
# 20 simulated modules on loopback ports stand for APN addresses; every
# meter stored equals `metersim expect`, the sessions are logged under
# transport gprs with their bytes, and a module that does not answer the
# connect is given up after [gprs] connect_timeout_ms, not the kernel's.
. "$(dirname "$0")/lib.sh"

N=20
SEED=31
DAYS=1
CONC=10
. "$(dirname "$0")/collect.sh"
collect_clock
collect_work
fleet=(--count "$N" --seed "$SEED" --origin "$ORIGIN")

collect_fleet amm_gprs_out 's/,tcpip,127\.0\.0\.1,/,gprs,127.0.0.1,/'
expect_eq "meters imported as GPRS with an APN address" "$N" \
	"$(q "$dsn" "SELECT count(*) FROM meter WHERE transport = 'gprs' AND host IS NOT NULL")"
# one more, a module whose SYNs go unanswered: a listener that never
# accepts, its queue filled, drops them (as a radio link that is gone)
SPORT=$(free_port)
python3 - "$SPORT" >"$work/silent.out" 2>&1 <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port)); ls.listen(0)
fill = []
for _ in range(3):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(("127.0.0.1", port))
    except BlockingIOError: pass
    fill.append(c)
print("ready", flush=True)
time.sleep(300)
PY
spid=$!
lib_cleanup_add kill "$spid"
until grep -q ready "$work/silent.out"; do sleep 0.1; done
q "$dsn" "INSERT INTO meter (serial, type, transport, host, port, client_addr, server_addr, security)
	VALUES ('99999999', '382M', 'gprs', '127.0.0.1', $SPORT, 16, 1, 'none')" >/dev/null ||
	fail "adding the silent module"
sim_start "$START"
conf "$dsn"
cat >>"$work/ammd.conf" <<EOC
[gprs]
connect_timeout_ms = 2000
response_timeout_ms = 10000
EOC
ammd_start
i=0
until [ "$(q "$dsn" "SELECT count(DISTINCT meter_id) FROM session_log WHERE outcome = 'ok'")" = "$N" ] &&
	[ "$(q "$dsn" "SELECT count(*) FROM session_log l JOIN meter m ON m.id = l.meter_id WHERE m.serial = '99999999'")" -gt 0 ]; do
	sleep 0.2
	i=$((i + 1))
	[ $i -gt 300 ] && { tail -20 "$work/ammd.log" >&2; fail "round not finished"; }
done
expect_eq "every session over the gprs transport" "gprs" "$(q "$dsn" "SELECT string_agg(DISTINCT transport, ',') FROM session_log")"
expect_eq "bytes counted both ways" "0" "$(q "$dsn" "SELECT count(*) FROM session_log WHERE outcome = 'ok' AND (bytes_in = 0 OR bytes_out = 0)")"
lo=$(iso $((START_S - DAYS * 86400 + 3600)))
hi=$(iso $((START_S - 3600)))
q "$dsn" "UPDATE meter SET enabled = false WHERE serial = '99999999'" >/dev/null
expect_load "$dsn" "$(iso $((START_S - DAYS * 86400 - 86400)))" "$(iso $((START_S + 3600)))" "$START"
compare "$dsn" "$lo" "$hi"
silent=$(q "$dsn" "SELECT outcome || ' ' || duration_ms FROM session_log l JOIN meter m ON m.id = l.meter_id WHERE m.serial = '99999999' ORDER BY l.id LIMIT 1")
expect_match "the silent module: a connect timeout after [gprs] connect_timeout_ms" '^timeout (19[0-9][0-9]|2[0-9][0-9][0-9])$' "$silent"
ammd_term || fail "ammd exit status $?"
ok "ammd stops cleanly"
