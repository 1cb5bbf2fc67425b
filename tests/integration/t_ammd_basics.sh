#!/bin/bash
# t_ammd_basics.sh: the ammd process itself: `ammd -n` on the example and
# on broken files (no database needed), then a running `ammd -d` on a
# private, migrated database (it is ready and healthy only with one):
# /healthz and /metrics answer, systemd notification (READY, WATCHDOG,
# STOPPING) reaches a fake NOTIFY_SOCKET, SIGHUP with a broken file keeps the
# daemon running and logs why, SIGHUP with a good file applies it, SIGTERM
# exits 0 within shutdown_timeout, and every log line carries a <N> prefix.
#
# Standalone: needs bash and python3; BUILD names the build directory
# (default build).  Prints "  ok ..." per check and exits non-zero on the
# first failure.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$root/$BUILD ;; esac
AMMD=$BUILD/ammd

tmp=$(mktemp -d "${TMPDIR:-/tmp}/t_ammd_basics.XXXXXX")
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
	echo "FAIL: $*" >&2
	if [ -f "$tmp/ammd.log" ]; then echo "--- ammd log:" >&2; cat "$tmp/ammd.log" >&2; fi
	exit 1
}
ok() { echo "  ok $*"; }

free_port() {
	python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# http_get URL: prints the status code on the first line, then the body;
# 000 when nothing answers.
http_get() {
	python3 - "$1" <<'PY'
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=3)
    print(r.status); sys.stdout.write(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); sys.stdout.write(e.read().decode())
except Exception:
    print("000")
PY
}

# wait_for SECS CMD...: retry CMD every 0.1 s until it succeeds.
wait_for() {
	local secs=$1 i=0
	shift
	while [ $i -lt $((secs * 10)) ]; do
		"$@" && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

log_has() { grep -qF -- "$1" "$tmp/ammd.log"; }
notified() { grep -qx -- "$1" "$tmp/notify.out"; }
# http_code URL: only the status code (the body is read in full first, so
# python never writes into a closed pipe).
http_code() {
	local r
	r=$(http_get "$1")
	echo "${r%%$'\n'*}"
}
healthz_is() { [ "$(http_code "http://127.0.0.1:$1/healthz")" = "$2" ]; }

[ -x "$AMMD" ] || fail "no $AMMD: build first"

# ---- ammd -V and -n -------------------------------------------------------

"$AMMD" -V | grep -q '^ammd [0-9]' || fail "ammd -V prints no version"
ok "ammd -V"

out=$("$AMMD" -n -f "$root/systemd/ammd.conf.example" 2>&1) || fail "example config refused: $out"
echo "$out" | grep -q 'configuration OK' || fail "ammd -n said: $out"
ok "ammd -n accepts systemd/ammd.conf.example"

printf '[daemon]\nlog_level = info\n\nshutdown_timout = 5\n[mqtt]\nqos = 7\n' >"$tmp/broken.conf"
out=$("$AMMD" -n -f "$tmp/broken.conf" 2>&1)
rc=$?
[ $rc = 1 ] || fail "ammd -n on a broken file exited $rc, want 1"
echo "$out" | grep -qF "$tmp/broken.conf:4: [daemon] shutdown_timout: unknown key" ||
	fail "ammd -n does not name line 4: $out"
echo "$out" | grep -qF "$tmp/broken.conf:6: [mqtt] qos" || fail "ammd -n does not name line 6: $out"
ok "ammd -n rejects a broken file, naming each line"

printf '[database]\ndsn = dbname=ammd password=hunter2\n' >"$tmp/secret.conf"
chmod 644 "$tmp/secret.conf"
out=$("$AMMD" -n -f "$tmp/secret.conf" 2>&1) && fail "world-readable secret accepted"
echo "$out" | grep -qF "secret.conf:2: [database] dsn holds a password" || fail "secret: $out"
chmod 640 "$tmp/secret.conf"
"$AMMD" -n -f "$tmp/secret.conf" >/dev/null 2>&1 || fail "mode 0640 secret file refused"
ok "a world-readable file holding a password is refused, a 0640 one accepted"

"$AMMD" -n -f "$tmp/nonexistent.conf" >/dev/null 2>&1 && fail "missing file accepted"
"$AMMD" -x >/dev/null 2>&1
[ $? = 2 ] || fail "bad flag does not exit 2"
ok "missing file and bad flag refused"

# ---- a running daemon ------------------------------------------------------

# The harness's private PostgreSQL (started here when run standalone).
. "$here/lib.sh"
# lib.sh owns the EXIT trap now; hand it this script's cleanup, and keep this
# script's fail() (it shows the daemon's log).
lib_cleanup_add cleanup
fail() {
	echo "FAIL: $*" >&2
	if [ -f "$tmp/ammd.log" ]; then echo "--- ammd log:" >&2; cat "$tmp/ammd.log" >&2; fi
	exit 1
}
[ -n "${PG_SUPER_DSN:-}" ] || pg_start
AMMCTL=${AMMCTL:-$BUILD/ammctl}
admin_dsn=$(pg_newdb amm_basics)
"$AMMCTL" db migrate --dsn "$admin_dsn" >/dev/null || fail "migrate"
pg_login_role t_basics ammd
dsn="host=$PG_SOCK port=$PG_PORT dbname=amm_basics user=t_basics"

port=$(free_port)
conf=$tmp/ammd.conf
write_conf() {
	printf '[daemon]\nhttp_listen = 127.0.0.1:%s\nshutdown_timeout = 5\ninstance_id = t-basics\n[database]\ndsn = %s\n' \
		"$1" "$dsn" >"$conf"
	chmod 600 "$conf"
}
write_conf "$port"

# A fake systemd: a datagram socket that writes down what it is told.
python3 - "$tmp/notify.sock" "$tmp/notify.out" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as f:
    while True:
        for line in s.recv(4096).decode().split("\n"):
            f.write(line + "\n")
        f.flush()
PY
pids+=($!)
: >"$tmp/notify.out"
wait_for 5 test -S "$tmp/notify.sock" || fail "fake notify socket did not appear"

NOTIFY_SOCKET=$tmp/notify.sock WATCHDOG_USEC=1000000 "$AMMD" -d -f "$conf" 2>"$tmp/ammd.log" &
apid=$!
pids+=($apid)

wait_for 10 healthz_is "$port" 200 || fail "/healthz never answered 200"
body=$(http_get "http://127.0.0.1:$port/healthz" | tail -n +2)
echo "$body" | grep -q '"status":"ok"' || fail "healthz body: $body"
echo "$body" | grep -q '"instance_id":"t-basics"' || fail "healthz body: $body"
ok "/healthz answers 200 with a JSON body"

m=$(http_get "http://127.0.0.1:$port/metrics")
[ "${m%%$'\n'*}" = 200 ] || fail "/metrics: ${m%%$'\n'*}"
for want in '# TYPE process_cpu_seconds_total counter' 'process_resident_memory_bytes ' \
	'process_open_fds ' 'process_start_time_seconds ' 'ammd_build_info{version="' \
	'ammd_config_reloads_total{result="failed"} 0' 'ammd_event_loop_lag_seconds '; do
	echo "$m" | grep -qF -- "$want" || fail "/metrics lacks $want"
done
ok "/metrics shows the process and daemon metrics"

[ "$(http_code "http://127.0.0.1:$port/nothing")" = 404 ] || fail "unknown path not 404"
ok "unknown path answers 404"

wait_for 5 notified READY=1 || fail "no READY=1 on NOTIFY_SOCKET"
wait_for 5 notified WATCHDOG=1 || fail "no WATCHDOG=1"
n1=$(grep -c '^WATCHDOG=1$' "$tmp/notify.out")
sleep 1.2
n2=$(grep -c '^WATCHDOG=1$' "$tmp/notify.out")
[ "$n2" -ge $((n1 + 2)) ] || fail "watchdog pinged $((n2 - n1)) times in 1.2 s, want >= 2 (every 0.5 s)"
ok "READY=1 sent, watchdog pinged at half of WATCHDOG_USEC"

# SIGHUP with a broken file: logged, the daemon keeps its config and runs on.
printf '[daemon]\nhttp_listen = 127.0.0.1:%s\n\nbogus_key = 1\n[database]\ndsn = %s\n' "$(free_port)" "$dsn" >"$conf"
kill -HUP $apid
wait_for 5 log_has "$conf:4: [daemon] bogus_key: unknown key" || fail "broken reload not logged"
log_has "reload failed: keeping the running configuration" || fail "no 'reload failed' line"
kill -0 $apid 2>/dev/null || fail "ammd died on a broken reload"
healthz_is "$port" 200 || fail "healthz not 200 after the broken reload"
m=$(http_get "http://127.0.0.1:$port/metrics")
echo "$m" | grep -qF 'ammd_config_reloads_total{result="failed"} 1' ||
	fail "failed reload not counted"
ok "SIGHUP with a broken file: error logged with its line, old config kept, still serving"

# SIGHUP with a good file moving the endpoint: applied.
port2=$(free_port)
write_conf "$port2"
kill -HUP $apid
wait_for 5 healthz_is "$port2" 200 || fail "endpoint did not move to the new port"
healthz_is "$port" 000 || fail "old port still answers"
log_has "configuration reloaded" || fail "no 'configuration reloaded' line"
ok "SIGHUP with a good file: new http_listen applied"

# SIGTERM: drain and exit 0 well within shutdown_timeout (5 s).
t0=$(date +%s%N)
kill -TERM $apid
rc=
for _ in $(seq 1 70); do
	if ! kill -0 $apid 2>/dev/null; then wait $apid; rc=$?; break; fi
	sleep 0.1
done
[ -n "$rc" ] || fail "ammd still running 7 s after SIGTERM"
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$rc" = 0 ] || fail "ammd exited $rc after SIGTERM"
log_has "SIGTERM: draining" || fail "no draining line"
log_has "exiting" || fail "no exiting line"
wait_for 2 notified STOPPING=1 || fail "no STOPPING=1"
ok "SIGTERM: STOPPING=1, drained and exited 0 in $ms ms"

bad=$(grep -cv '^<[0-7]>' "$tmp/ammd.log")
[ "$bad" = 0 ] || fail "$bad log lines without a <N> prefix"
grep -q '^<3>' "$tmp/ammd.log" && grep -q '^<4>' "$tmp/ammd.log" && grep -q '^<6>' "$tmp/ammd.log" &&
	grep -q '^<7>' "$tmp/ammd.log" || fail "expected <3>, <4>, <6> and <7> lines"
ok "every log line carries a syslog priority prefix ($(wc -l <"$tmp/ammd.log") lines)"

echo "t_ammd_basics: all checks passed"
