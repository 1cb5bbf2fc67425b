#!/bin/bash
# t_publish.sh: the MQTT publisher drains the outbox at least once.
#
# With the run's PostgreSQL (or a private one when run alone) and a broker
# of its own (restartable on the same port, with persistence so that the
# subscriber's session survives a restart), driven by build/bench_publish:
#   1. N outbox rows, the publisher until the outbox is empty: a subscriber
#      receives exactly those messages, byte for byte, and the outbox is
#      empty.
#   2. Rows keep arriving while the broker is stopped for ~10 s (they wait
#      in the outbox, none is deleted without a PUBACK), the broker comes
#      back, the publisher is killed with SIGKILL and started again in the
#      middle: every message arrives at least once, none is lost, the
#      outbox ends empty, SIGTERM drains and exits 0.
#   3. A CommandRequest published on <prefix>/command/request reaches the
#      registered handler; a malformed one is refused with a log line.
#   4. Over TLS (a throwaway CA) with a username and the password read from
#      password_file: every message arrives; a wrong password is reported.
#
# `t_publish.sh --bench DRIVER` provides the same services to `bench_publish
# --bench` (what `make bench` runs).
. "$(dirname "$0")/lib.sh"

root=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$root/build}
mode=test
DRV=$BUILD/bench_publish
if [ "${1:-}" = --bench ]; then
	mode=bench
	DRV=$2
fi
if [ ! -x "$DRV" ]; then
	(cd "$root" && make --no-print-directory build/bench_publish >/dev/null) ||
		fail "cannot build bench_publish"
	DRV=$root/build/bench_publish
fi
AMMCTL=${AMMCTL:-$BUILD/ammctl}
export AMMD_SQL_DIR=${AMMD_SQL_DIR:-$root/sql}

[ -n "${PG_SUPER_DSN:-}" ] || pg_start
dsn=$(pg_newdb ammd_publish)
"$AMMCTL" db migrate --dsn "$dsn" >/dev/null || fail "migrate"

# ---- a broker of our own ----------------------------------------------------

B_DIR=$(mktemp -d "${TMPDIR:-/tmp}/amm-tpub.XXXXXX") || fail "mktemp"
chmod 755 "$B_DIR"
B_PORT=$(free_port)
B_PID=
lib_cleanup_add rm -rf "$B_DIR"
lib_cleanup_add 'broker_stop'
[ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1 && chown mosquitto: "$B_DIR"
cat >"$B_DIR/mosquitto.conf" <<EOF
listener $B_PORT 127.0.0.1
allow_anonymous true
persistence $([ $mode = bench ] && echo false || echo true)
persistence_location $B_DIR/
autosave_interval 1
max_queued_messages 100000
log_dest stderr
log_type error
log_type warning
EOF

broker_start # lib.sh: broker_start and broker_stop restart this one

if [ $mode = bench ]; then
	"$DRV" --bench "$dsn" 127.0.0.1 "$B_PORT"
	exit $?
fi

prefix=tpub/v1
out=$B_DIR/received.txt
: >"$out"
sub_pid=
sub_start() {
	mosquitto_sub -h 127.0.0.1 -p "$B_PORT" -q 1 -c -i ammd-tpub-sub -t "$prefix/#" \
		-F '%t %x' >>"$out" 2>>"$B_DIR/sub.log" &
	sub_pid=$!
}
sub_stop() {
	[ -n "$sub_pid" ] && kill "$sub_pid" 2>/dev/null && wait "$sub_pid" 2>/dev/null
	sub_pid=
}
lib_cleanup_add 'sub_stop'
# The persistent session exists before the first publish (-E: subscribe
# and leave), so the broker queues for the subscriber whenever it is away.
mosquitto_sub -h 127.0.0.1 -p "$B_PORT" -q 1 -c -i ammd-tpub-sub -t "$prefix/#" -E ||
	fail "subscribe"
sub_start

count() { q "$dsn" "SELECT count(*) FROM outbox"; }

# until_verified FROM COUNT SECS: wait for the subscriber to have them all.
until_verified() {
	local i
	for i in $(seq 1 $(($3 * 5))); do
		"$DRV" --check verify "$prefix" "$1" "$2" "$out" >"$B_DIR/verify.txt" 2>/dev/null &&
			return 0
		sleep 0.2
	done
	"$DRV" --check verify "$prefix" "$1" "$2" "$out" >"$B_DIR/verify.txt" 2>&1
	cat "$B_DIR/verify.txt" >&2
	return 1
}

# ---- 1: straight through --------------------------------------------------------

N=300
"$DRV" --check insert "$dsn" "$prefix" 0 $N || fail "insert"
expect_eq "the outbox holds $N rows" "$N" "$(count)"
timeout 60 "$DRV" --check run "$dsn" 127.0.0.1 "$B_PORT" "$prefix" --until-empty \
	2>"$B_DIR/pub1.log" || { cat "$B_DIR/pub1.log" >&2; fail "the publisher did not empty the outbox"; }
expect_eq "the outbox is empty" 0 "$(count)"
until_verified 0 $N 20 || fail "messages missing after the first drain"
expect_match "every row arrived, byte for byte, exactly once" "^distinct $N total $N bad 0 missing 0" \
	"$(cat "$B_DIR/verify.txt")"

# ---- 2: broker outage and publisher restart ---------------------------------------

FROM=$N
M=1000
"$DRV" --check run "$dsn" 127.0.0.1 "$B_PORT" "$prefix" 2>"$B_DIR/pub2.log" &
pub=$!
"$DRV" --check insert "$dsn" "$prefix" $FROM $M 50 &
ins=$!
sleep 3
broker_stop
ok "broker stopped while rows keep arriving"
sleep 5
d1=$(count)
[ "$d1" -gt 0 ] || fail "rows were deleted while the broker was away (outbox $d1)"
sleep 5
d2=$(count)
[ "$d2" -gt "$d1" ] || fail "the outbox did not grow during the outage ($d1, then $d2)"
ok "rows wait in the outbox during the outage ($d1, then $d2)"
broker_start
ok "broker restarted on the same port"
sleep 2
kill -9 $pub
wait $pub 2>/dev/null
"$DRV" --check run "$dsn" 127.0.0.1 "$B_PORT" "$prefix" 2>"$B_DIR/pub3.log" &
pub=$!
ok "publisher killed (SIGKILL) and started again"
wait $ins || fail "insert"
for _ in $(seq 1 300); do [ "$(count)" = 0 ] && break; sleep 0.2; done
expect_eq "the outbox is empty in the end" 0 "$(count)"
kill -TERM $pub
wait $pub
expect_eq "SIGTERM drains the publisher and it exits 0" 0 $?
until_verified 0 $((N + M)) 30 || { tail -5 "$B_DIR/pub2.log" "$B_DIR/pub3.log" >&2; fail "messages lost"; }
read -r _ distinct _ total _ bad _ missing <"$B_DIR/verify.txt"
expect_eq "every message arrived at least once" "$((N + M)) 0 0" "$distinct $bad $missing"
echo "  ($total received for $distinct distinct: $((total - distinct)) published again after the outage or restart)"
grep -q 'lost the broker' "$B_DIR/pub2.log" || fail "the publisher did not notice the outage"
ok "the publisher logged the outage and reconnected"
sub_stop

# ---- 3: inbound command requests ---------------------------------------------------

"$DRV" --check run "$dsn" 127.0.0.1 "$B_PORT" "$prefix" 2>"$B_DIR/pub4.log" &
pub=$!
for _ in $(seq 1 100); do grep -q 'connected to' "$B_DIR/pub4.log" && break; sleep 0.1; done
sleep 0.5 # the SUBSCRIBE follows the CONNACK
"$DRV" --check request "$B_DIR/req.bin" req-42 disconnect KAM1 KAM2 || fail "request"
mosquitto_pub -h 127.0.0.1 -p "$B_PORT" -q 1 -t "$prefix/command/request" -f "$B_DIR/req.bin"
mosquitto_pub -h 127.0.0.1 -p "$B_PORT" -q 1 -t "$prefix/command/request" -m "not protobuf"
for _ in $(seq 1 50); do grep -q 'no valid CommandRequest' "$B_DIR/pub4.log" && break; sleep 0.1; done
kill -TERM $pub
wait $pub
expect_match "a CommandRequest reaches the handler" \
	"command request req-42: disconnect for KAM1 KAM2" "$(cat "$B_DIR/pub4.log")"
expect_match "a malformed request is refused with a log line" \
	"ignoring a request that is no valid CommandRequest" "$(cat "$B_DIR/pub4.log")"

# ---- 4: TLS and a password from password_file ----------------------------------------

T=$B_DIR/tls
mkdir -p "$T" || fail "mkdir"
(cd "$T" &&
	openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
		-subj /CN=ammd-test-ca &&
	openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 &&
	printf 'subjectAltName=IP:127.0.0.1\n' >ext &&
	openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem \
		-days 2 -extfile ext) >/dev/null 2>&1 || fail "openssl"
mosquitto_passwd -c -b "$T/passwd" ammd 's3cret word' || fail "mosquitto_passwd"
printf 's3cret word\n' >"$T/ammd.pw"
chmod 600 "$T/ammd.pw"
[ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1 && chown mosquitto: "$T/srv.key" "$T/passwd"
T_PORT=$(free_port)
cat >"$T/mosquitto.conf" <<END
listener $T_PORT 127.0.0.1
cafile $T/ca.pem
certfile $T/srv.pem
keyfile $T/srv.key
allow_anonymous false
password_file $T/passwd
persistence false
END
"$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$T/mosquitto.conf" >"$T/log" 2>&1 &
lib_cleanup_add kill $!
wait_port "$T_PORT" 20 || { cat "$T/log" >&2; fail "TLS mosquitto did not start"; }
: >"$out"
mosquitto_sub -h 127.0.0.1 -p "$T_PORT" --cafile "$T/ca.pem" -u ammd -P 's3cret word' -q 1 \
	-t "$prefix/#" -F '%t %x' >>"$out" 2>>"$B_DIR/sub.log" &
sub_pid=$!
sleep 0.5
"$DRV" --check insert "$dsn" "$prefix" 5000 100 || fail "insert"
BENCH_PUBLISH_MQTT="tls_ca = $T/ca.pem
username = ammd
password_file = $T/ammd.pw" timeout 60 "$DRV" --check run "$dsn" 127.0.0.1 "$T_PORT" "$prefix" \
	--until-empty 2>"$B_DIR/pub5.log" || { cat "$B_DIR/pub5.log" >&2; fail "publish over TLS"; }
until_verified 5000 100 20 || fail "messages missing over TLS"
expect_match "over TLS with a user and password_file every message arrives" \
	"^distinct 100 total 100 bad 0 missing 0" "$(cat "$B_DIR/verify.txt")"
printf 'wrong\n' >"$T/bad.pw"
BENCH_PUBLISH_MQTT="tls_ca = $T/ca.pem
username = ammd
password_file = $T/bad.pw" timeout 3 "$DRV" --check run "$dsn" 127.0.0.1 "$T_PORT" "$prefix" \
	2>"$B_DIR/pub6.log"
expect_match "a wrong password is reported" "refused the connection: .*not authori[sz]ed" \
	"$(cat "$B_DIR/pub6.log")"
sub_stop
exit 0
