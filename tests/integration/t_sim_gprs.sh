#!/bin/bash
# t_sim_gprs.sh: GPRS meters connect out to the head-end, push a
# DataNotification first (--push), are identified by their logical device
# name after association and serve the same values as `metersim expect`;
# when the head-end hangs up they come back (reconnect with jitter).
# Also simulated time: from a fixed start date, accelerated (--speed), a
# meter's clock crosses the spring daylight-saving change (+01:00 to +02:00).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sim_lib.sh"

SEED=7
START=2024-03-01T12:00:00Z
T=1709294400
port=$(sim_base_port 1)
fleet=(--seed $SEED --count 2)
"$CHECK" --check gprs "127.0.0.1:$port" --ops push,ldn,registers --at $T >"$SIM_WORK/g1" &
cpid=$!
sleep 0.3
sim_start gprs "${fleet[@]}" --gprs-connect "127.0.0.1:$port" --push --speed 0 --start $START
wait $cpid || fail "GPRS session: $(cat "$SIM_WORK/g1")"
got=$(cat "$SIM_WORK/g1")
expect_match "a GPRS meter connected to the head-end" '^gprs,connected' "$got"
expect_match "it pushed a DataNotification first" '^push,data-notification' "$got"
serial=$(awk -F, '$1 == "meter" { print $2 }' <<<"$got")
[ -n "$serial" ] || fail "no logical device name: $got"
ok "identified after association as $serial"
want=$("$METERSIM" expect "${fleet[@]}" --meter "$serial" --from $((T - 60)) --to $T --format csv \
	--what registers | grep -E '^register,.*,1-0:(1\.8\.[0-8]|[234]\.8\.0)\.255,')
expect_eq "GPRS: registers equal expect" "$want" "$(grep '^register,' <<<"$got")"

# the session above released and hung up: the meters come back
"$CHECK" --check gprs "127.0.0.1:$port" --ops ldn,ic >"$SIM_WORK/g2" || fail "no reconnect: $(cat "$SIM_WORK/g2")"
expect_match "after the hang-up a meter connects again" '^meter,[0-9]{8}' "$(cat "$SIM_WORK/g2")"
expect_match "connections counted" '^connections=([2-9]|[1-9][0-9])' "$(sim_ctl counters)"
sim_stop gprs

# a push on an alarm: the breaker opens while the meter is connected
port=$(sim_base_port 1)
out=$(METERSIM="$METERSIM" CTL="$SIM_WORK/alarm.sock" PORT=$port timeout 30 python3 -c '
import os, socket, subprocess, time
ms, ctl, port = os.environ["METERSIM"], os.environ["CTL"], int(os.environ["PORT"])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", port)); ls.listen(4)
p = subprocess.Popen([ms, "serve", "--seed", "7", "--count", "1", "--gprs-connect",
    "127.0.0.1:%d" % port, "--push", "--speed", "0", "--start", "2024-03-01T12:00:00Z",
    "--control", ctl], stdout=subprocess.DEVNULL)
try:
    c, _ = ls.accept(); c.settimeout(5)
    d = c.recv(512); print("connect-push", d[8] == 0x0f)
    time.sleep(0.3)
    serial = subprocess.run([ms, "ctl", ctl, "list"], capture_output=True, text=True).stdout.split()[0]
    subprocess.run([ms, "ctl", ctl, "set", serial, "breaker", "disconnect"], check=True)
    d = c.recv(512); print("alarm-push", len(d) > 8 and d[8] == 0x0f)
finally:
    p.terminate(); p.wait()
')
expect_match "push on connect" '^connect-push True' "$out"
expect_match "push when the breaker opens (alarm register changed)" '^alarm-push True' "$out"

# daylight saving: 2024-03-31 01:00Z is 02:00 CET -> 03:00 CEST; start a
# five minutes before at 120 simulated seconds per second
base=$(sim_base_port 1)
sim_start dst --seed $SEED --count 1 --base-port "$base" --start 2024-03-31T00:55:00Z --speed 120
clock() { "$AMMCTL" read --host 127.0.0.1 --port "$base" 0-0:1.0.0.255 |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["value"]["datetime"])'; }
c1=$(clock)
expect_match "before the change the meter keeps winter time" '^2024-03-31T01:5[0-9].*\+01:00$' "$c1"
sleep 4
c2=$(clock)
expect_match "after it, summer time" '^2024-03-31T03:[0-9]{2}.*\+02:00$' "$c2"
t=$(sim_ctl time)
[ "$t" -gt 1711846900 ] || fail "simulated clock did not run: $t"
ok "simulated clock runs at --speed ($t)"
