#!/bin/bash
# t_sim_modbus.sh: metersim's Modbus-TCP gateways.  Registers read with
# libmodbus and decoded through meterlib/maps/kamstrup382.map give the
# model's values: energies equal `metersim expect`, power, voltages and
# currents equal `metersim info`; unit ids beyond the gateway's meters get
# an exception; the second gateway serves meters 247 on.  Several masters
# at once: with --modbus-masters 2 an idle master does not hold up a second
# one, a third is closed at once (refused), and the counters show the
# masters open now and the most at once.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim_lib.sh"

SEED=9
N=300
START=2024-03-01T12:00:00Z
T=1709294400
MAP=$ROOT/meterlib/maps/kamstrup382.map
fleet=(--seed $SEED --count $N)
base=$(sim_base_port 2)
sim_start mb "${fleet[@]}" --transport modbus --base-port "$base" --speed 0 --start $START \
	--modbus-map "$MAP"
"$METERSIM" export "${fleet[@]}" --transport modbus --base-port "$base" >"$SIM_WORK/inv.csv"

for row in 2 251; do # meter index 0 (gateway 0, unit 1) and 249 (gateway 1, unit 3)
	IFS=, read -r serial _ _ _ _ _ _ _ _ _ _ _ _ _ gw unit _ <<<"$(sed -n ${row}p "$SIM_WORK/inv.csv")"
	for i in 1 2 3 4 5 6 7 8 9 10; do # the gateway thread may still be starting
		got=$("$CHECK" --check modbus "$gw" --unit "$unit" --map "$MAP" --at $T) && break
		sleep 0.2
	done
	[ -n "$got" ] || fail "no answer from $gw unit $unit"
	want=$("$METERSIM" expect "${fleet[@]}" --meter "$serial" --from $((T - 60)) --to $T \
		--format csv --what registers | grep -E '^register,.*,1-0:([1-4]\.8\.0|1\.8\.[12])\.255,' | sort)
	expect_eq "$gw unit $unit: energies equal expect" "$want" "$(grep '^register,' <<<"$got" | sort)"
	want=$("$METERSIM" info "${fleet[@]}" --meter "$serial" --at $START |
		python3 -c 'import json,sys; d=json.load(sys.stdin)["instant"]
print("reading,1-0:1.7.0.255,%.3f,W" % d["p_import_w"])
for i, c in enumerate((32, 52, 72)): print("reading,1-0:%d.7.0.255,%.3f,V" % (c, d["voltage_dv"][i] / 10))
for i, c in enumerate((31, 51, 71)): print("reading,1-0:%d.7.0.255,%.3f,A" % (c, d["current_ma"][i] / 1000))
for i, c in enumerate((21, 41, 61)): print("reading,1-0:%d.7.0.255,%.3f,W" % (c, d["power_w"][i]))')
	expect_eq "$gw unit $unit: power, voltages, currents equal info" "$want" \
		"$(grep -E '^reading,1-0:(1|21|41|61|31|51|71|32|52|72)\.7\.0' <<<"$got")"
done

out=$("$CHECK" --check modbus "127.0.0.1:$((base + 1))" --unit 200 --map "$MAP")
expect_match "unit id without a meter: gateway exception" '^error,read,Gateway path' "$out"
expect_match "requests counted" '^modbus_requests=[3-9]' "$(sim_ctl counters)"

# several masters at once, at most 2
mbase=$(sim_base_port 1)
sim_start mm --seed $SEED --count 10 --transport modbus --base-port "$mbase" --speed 0 --start $START \
	--modbus-map "$MAP" --modbus-masters 2
got=$(python3 - "$mbase" "$METERSIM" "$SIM_CTL" <<'PY'
import socket, struct, subprocess, sys, time
port, sim, ctl = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def conn():
    for _ in range(50):
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=3)
        except OSError:
            time.sleep(0.1)
    raise SystemExit("no gateway")
def read(s, tid):
    # MBAP (transaction, protocol 0, length 6, unit 1), read holding registers 0, 2
    s.sendall(struct.pack(">HHHBBHH", tid, 0, 6, 1, 3, 0, 2))
    r = s.recv(64)
    return "ok" if len(r) == 13 and r[7] == 3 and struct.unpack(">H", r[:2])[0] == tid else "bad %r" % r
def counters():
    out = subprocess.run([sim, "ctl", ctl, "counters"], capture_output=True, text=True).stdout
    d = dict(l.split("=", 1) for l in out.split())
    return "%s/%s/%s/%s" % (d["connections"], d["refused"], d["modbus_open"], d["modbus_open_max"])
a = conn()
b = conn()
res = [read(b, 1), read(a, 2)]  # b first: a, idle and first, must not hold it up
c = conn()
c.settimeout(3)
try:
    res.append("closed" if c.recv(16) == b"" else "answered")
except (ConnectionResetError, BrokenPipeError):
    res.append("closed")
except socket.timeout:
    res.append("still open")
time.sleep(0.2)
res.append(counters())
a.close(); b.close(); c.close()
for _ in range(50):
    n = counters()
    if n.split("/")[2] == "0":
        break
    time.sleep(0.1)
res.append(n)
print(" ".join(res))
PY
)
expect_eq "2 masters at once, a third closed; counters connections/refused/open/open_max, then after closing" \
	"ok ok closed 2/1/2/2 2/1/0/2" "$got"

# masters that connect and never send are closed after 10 s: they must not
# hold the gateway's 2 places (and their threads) for good
got=$(python3 - "$mbase" <<'PY'
import socket, struct, sys, time
port = int(sys.argv[1])
silent = [socket.create_connection(("127.0.0.1", port), timeout=3) for _ in range(2)]
time.sleep(11)
res = []
for s in silent:
    s.settimeout(3)
    try:
        res.append("closed" if s.recv(16) == b"" else "answered")
    except (ConnectionResetError, BrokenPipeError):
        res.append("closed")
    except socket.timeout:
        res.append("still open")
d = socket.create_connection(("127.0.0.1", port), timeout=3)
d.sendall(struct.pack(">HHHBBHH", 7, 0, 6, 1, 3, 0, 2))
try:
    r = d.recv(64)
    res.append("ok" if len(r) == 13 and r[7] == 3 else "bad %r" % r)
except (ConnectionResetError, socket.timeout) as e:
    res.append("no answer")
print(" ".join(res))
PY
)
expect_eq "silent masters closed after 10 s, a new master answered" "closed closed ok" "$got"
