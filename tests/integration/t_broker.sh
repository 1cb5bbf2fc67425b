#!/bin/bash
# t_broker.sh: the run's private mosquitto carries a QoS 1 message and a
# retained one on loopback (what ammd's publisher and the MQTT tests rely on).
. "$(dirname "$0")/lib.sh"

[ -n "${MQTT_PORT:-}" ] || fail "no MQTT_PORT from run.sh"
out=$(mktemp)
lib_cleanup_add rm -f "$out"
mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t 'ammd/test/#' -C 1 -W 10 >"$out" &
sub=$!
# The subscription must be in place before the publish; retry until seen.
for _ in $(seq 1 50); do
	mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t ammd/test/hello -m "hello $$"
	kill -0 $sub 2>/dev/null || break
	sleep 0.2
done
wait $sub
expect_eq "a QoS 1 message goes through" "hello $$" "$(head -1 "$out")"
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -r -t ammd/test/state -m "retained $$"
expect_eq "a retained message is kept" "retained $$" \
	"$(mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t ammd/test/state -C 1 -W 10)"
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -r -t ammd/test/state -n
exit 0
