#!/bin/bash
# tests/demo.sh: `make demo`, the main job on embedded defaults.
#
# On a fresh machine, as root (or as any user who may run initdb), this
# starts everything ammd needs on loopback only and lets it collect a
# simulated fleet while the operator's view is refreshed:
#
#   1. a private PostgreSQL 15 cluster (as the `postgres` user when run as
#      root; initdb refuses root), socket and port of its own, and the
#      schema migrated into database `ammd`;
#   2. mosquitto on a free 127.0.0.1 port;
#   3. metersim serving 1,000 DLMS meters on 127.1.x.y (one free port), imported into
#      the inventory with `metersim export | ammctl meter import -`;
#   4. ammd with a generated configuration (loopback only, a short
#      collection window that starts now);
#   5. `ammctl status` every few seconds, and once data flows a few MQTT
#      messages decoded by `ammctl mqtt tail --count 5`.
#
# Ctrl-C (or SIGTERM) stops everything in reverse order: ammd (SIGTERM, it
# drains), metersim, mosquitto, PostgreSQL, and removes the data.  Without
# a terminal on stdin the demo stops by itself after DEMO_SECONDS (default
# 120; 0 = until interrupted, the default with a terminal).
#
# Environment: BUILD (build directory, default ./build), DEMO_DIR (where
# the data goes; default ./demo-run, or a directory under /var/tmp when
# the postgres user cannot reach ./demo-run), DEMO_METERS (1000),
# DEMO_SECONDS, DEMO_KEEP=1 to keep DEMO_DIR with the logs afterwards.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
B=${BUILD:-$root/build}
case $B in /*) ;; *) B=$root/$B ;; esac
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
METERS=${DEMO_METERS:-1000}
if [ -t 0 ]; then SECONDS_MAX=${DEMO_SECONDS:-0}; else SECONDS_MAX=${DEMO_SECONDS:-120}; fi
TTY=0
[ -t 1 ] && TTY=1

say() { printf '\n== %s\n' "$*"; }
die() {
	echo "demo: $*" >&2
	exit 1
}

for p in ammctl metersim; do
	[ -x "$B/$p" ] || die "no $B/$p: run 'make demo' (or 'make all') first"
done
# Without the daemon the demo still shows the simulator, the schema and the
# status view.
[ -x "$B/ammd" ] || echo "demo: no $B/ammd: the fleet is shown, but nothing collects it" >&2
[ -x "$PGBIN/initdb" ] || die "no PostgreSQL 15 in $PGBIN (apt-get install postgresql-15)"
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$MOSQUITTO" ] || die "no mosquitto (apt-get install mosquitto)"
command -v psql >/dev/null || die "no psql (apt-get install postgresql-client-15)"

# ---- stopping ---------------------------------------------------------------
# Every process is started in a session of its own (setsid) so that Ctrl-C
# in the terminal reaches only this script, which then stops them in order.

AMMD_PID= SIM_PID= MQTT_PID= PG_STARTED= WORK= TAIL_PID= DSN=
stopping=0

stop_pid() { # PID NAME SECS: SIGTERM, wait up to SECS, then SIGKILL
	local pid=$1 name=$2 secs=$3 i=0
	[ -n "$pid" ] || return 0
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
	kill -TERM "$pid" 2>/dev/null
	while kill -0 "$pid" 2>/dev/null && [ $i -lt $((secs * 10)) ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "   $name did not stop within $secs s: killed"
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	return 0
}

as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# What the run stored, shown before stopping.
summary() {
	say "what was collected"
	psql "$DSN" -X -q -At -F ' ' <<'EOF' 2>/dev/null | sed 's/^/   /'
SELECT 'meters read:', count(DISTINCT meter_id) FROM session_log WHERE outcome = 'ok';
SELECT 'sessions:', string_agg(outcome || ' ' || n, ', ' ORDER BY n DESC)
  FROM (SELECT outcome, count(*) AS n FROM session_log GROUP BY outcome) s;
SELECT 'register readings:', count(*) FROM register_reading;
SELECT 'load-profile intervals:', count(*) FROM interval_reading;
SELECT 'events:', count(*) FROM event;
SELECT 'MQTT messages not yet acknowledged by the broker:', count(*) FROM outbox;
EOF
}

cleanup() {
	[ $stopping = 1 ] && return
	stopping=1
	trap '' INT TERM HUP PIPE
	stop_pid "$TAIL_PID" "ammctl mqtt tail" 2
	[ -n "$PG_STARTED" ] && [ -n "${DSN:-}" ] && summary
	say "stopping"
	if [ -n "$AMMD_PID" ]; then
		stop_pid "$AMMD_PID" ammd 40
		echo "   ammd stopped"
	fi
	if [ -n "$SIM_PID" ]; then
		stop_pid "$SIM_PID" metersim 10
		echo "   metersim stopped"
	fi
	if [ -n "$MQTT_PID" ]; then
		stop_pid "$MQTT_PID" mosquitto 10
		echo "   mosquitto stopped"
	fi
	if [ -n "$PG_STARTED" ]; then
		as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast -w -t 30 stop >/dev/null 2>&1 ||
			{ [ -f "$WORK/pg/postmaster.pid" ] && kill -9 "$(head -1 "$WORK/pg/postmaster.pid")"; }
		echo "   PostgreSQL stopped"
	fi
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if [ "${DEMO_KEEP:-0}" = 1 ]; then
			echo "   logs and data kept in $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
	echo "demo: everything stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# a closed terminal, or a reader of our output gone (make demo | head)
trap 'exit 129' HUP
trap 'exit 141' PIPE

free_port() {
	python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' 2>/dev/null && return
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

wait_port() { # PORT SECS
	local i=0
	while [ $i -lt $(($2 * 10)) ]; do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# ---- where the data goes --------------------------------------------------------
# The postgres user must be able to reach the data directory: a checkout
# under /root, or a home directory of mode 700, is not reachable, so then
# the data goes under /var/tmp instead.

base=${DEMO_DIR:-$root/demo-run}
mkdir -p "$base" 2>/dev/null || base=
if [ -n "$base" ] && [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$base" 2>/dev/null; then
	echo "demo: the postgres user cannot reach $base; using /var/tmp instead"
	base=
fi
[ -n "$base" ] || base=/var/tmp
WORK=$(mktemp -d "$base/ammd-demo.XXXXXX") || die "cannot create a directory under $base"
chmod 755 "$WORK"
say "ammd demo: $METERS simulated meters, everything on loopback, data in $WORK"
if [ "$SECONDS_MAX" -gt 0 ] 2>/dev/null; then
	echo "   stops by itself after $SECONDS_MAX s (DEMO_SECONDS); Ctrl-C stops it earlier"
else
	echo "   runs until Ctrl-C"
fi

# ---- PostgreSQL ------------------------------------------------------------------

say "PostgreSQL 15: a private cluster"
mkdir -p "$WORK/sock"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK" "$WORK/sock"
PG_PORT=$(free_port)
as_pg "$PGBIN/initdb" -D "$WORK/pg" -U postgres -A trust -E UTF8 --locale=C --no-sync \
	>"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log"; die "initdb failed"; }
cat >>"$WORK/pg/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK/sock'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 50
log_min_messages = warning
EOF
PG_STARTED=1
as_pg setsid "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/postgres.log" -w -t 60 start >/dev/null 2>&1 ||
	{ cat "$WORK/postgres.log"; die "PostgreSQL did not start"; }
SUPER="host=$WORK/sock port=$PG_PORT user=postgres dbname=postgres"
psql "$SUPER" -X -q -v ON_ERROR_STOP=1 <<EOF >/dev/null || die "cannot create the database"
CREATE ROLE amm LOGIN CREATEROLE;
CREATE DATABASE ammd OWNER amm;
EOF
DSN="host=$WORK/sock port=$PG_PORT user=amm dbname=ammd"
echo "   listening on 127.0.0.1:$PG_PORT and $WORK/sock"
"$B/ammctl" db migrate --dsn "$DSN" --sql-dir "$root/sql" || die "migration failed"
# ammd runs as a login role of the least-privileged group `ammd`.
psql "$SUPER" -X -q -v ON_ERROR_STOP=1 -c "CREATE ROLE ammd_daemon LOGIN IN ROLE ammd" >/dev/null ||
	die "cannot create role ammd_daemon"
AMMD_DSN="host=$WORK/sock port=$PG_PORT user=ammd_daemon dbname=ammd"

# ---- mosquitto ---------------------------------------------------------------------

say "mosquitto on loopback"
MQTT_PORT=$(free_port)
cat >"$WORK/mosquitto.conf" <<EOF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
EOF
setsid "$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 </dev/null &
MQTT_PID=$!
wait_port "$MQTT_PORT" 20 || { cat "$WORK/mosquitto.log"; die "mosquitto did not start"; }
echo "   listening on 127.0.0.1:$MQTT_PORT"

# ---- the simulated fleet -------------------------------------------------------------

say "metersim: $METERS meters (Kamstrup 162/282/382M models, DLMS over the TCP wrapper)"
FLEET=(--seed 1 --count "$METERS")
# Each meter has an address of its own on 127.0.0.0/8 (127.1.0.1, ...), all
# served by one listener on a free port.
SIM_PORT=$(free_port)
setsid "$B/metersim" serve "${FLEET[@]}" --loopback-port "$SIM_PORT" --control "$WORK/sim.sock" \
	>"$WORK/metersim.log" 2>&1 </dev/null &
SIM_PID=$!
i=0
until grep -q '^metersim: serving' "$WORK/metersim.log"; do
	kill -0 $SIM_PID 2>/dev/null || { cat "$WORK/metersim.log"; die "metersim exited"; }
	[ $i -gt 300 ] && die "metersim did not start within 30 s"
	sleep 0.1
	i=$((i + 1))
done
grep '^metersim: serving' "$WORK/metersim.log" | sed 's/^/   /'
"$B/metersim" export "${FLEET[@]}" --loopback-port "$SIM_PORT" >"$WORK/fleet.csv" || die "metersim export failed"
echo "   inventory (first 3 of $METERS):"
head -4 "$WORK/fleet.csv" | cut -d, -f1-9 | sed 's/^/     /'
"$B/ammctl" meter import --dsn "$DSN" "$WORK/fleet.csv" | sed 's/^/   /' ||
	die "ammctl meter import failed"

# ---- ammd ------------------------------------------------------------------------------

if [ -x "$B/ammd" ]; then say "ammd: collecting"; fi
HTTP_PORT=$(free_port)
# The collection window starts now (in the meters' local time, CET/CEST, as
# the scheduler counts it) and is short; a fresh meter is due at once.
WSTART=$(TZ='CET-1CEST,M3.5.0,M10.5.0/3' date +%H:%M)
cat >"$WORK/ammd.conf" <<EOF
# generated by tests/demo.sh
[daemon]
log_level = info
http_listen = 127.0.0.1:$HTTP_PORT
shutdown_timeout = 20
instance_id = demo

[database]
dsn = $AMMD_DSN

[mqtt]
enabled = yes
host = 127.0.0.1
port = $MQTT_PORT
prefix = ammd/v1

[collection]
window_start = $WSTART
window_length = 10m
concurrency = 100
profile_backfill_days = 1
EOF
if [ -x "$B/ammd" ]; then
	"$B/ammd" -n -f "$WORK/ammd.conf" >/dev/null 2>&1 || {
		"$B/ammd" -n -f "$WORK/ammd.conf"
		die "the generated configuration was refused"
	}
	setsid "$B/ammd" -d -f "$WORK/ammd.conf" >"$WORK/ammd.log" 2>&1 </dev/null &
	AMMD_PID=$!
	echo "   ammd pid $AMMD_PID, config $WORK/ammd.conf, log $WORK/ammd.log"
	echo "   metrics: http://127.0.0.1:$HTTP_PORT/metrics"
	sleep 1
	kill -0 $AMMD_PID 2>/dev/null || {
		tail -20 "$WORK/ammd.log"
		wait $AMMD_PID 2>/dev/null
		AMMD_PID=
		echo "demo: ammd exited; the inventory and status view are shown without collection" >&2
	}
fi

# ---- watching ---------------------------------------------------------------------------

t0=$(date +%s)
shown_mqtt=0
status_once() {
	"$B/ammctl" status --dsn "$DSN" --config "$WORK/ammd.conf" --days 2 2>&1
}
# Five messages as they are published (the retained state of every meter,
# which the broker replays first, is skipped), decoded from protobuf; long
# payloads (a day of load profile) are cut short on screen.
mqtt_show() {
	say "five MQTT messages as ammd publishes them, decoded (ammctl mqtt tail --count 5)"
	"$B/ammctl" mqtt tail --host 127.0.0.1 --port "$MQTT_PORT" --count 5 --no-retained \
		--timeout 30 >"$WORK/mqtt.out" 2>&1 &
	TAIL_PID=$!
	wait $TAIL_PID
	TAIL_PID=
	mqtt_cached 24
	# on a terminal, a moment to read them before the screen is redrawn
	[ $TTY = 1 ] && sleep 8
}
mqtt_cached() { # LINES: at most this many lines per message
	awk -v max="$1" '/^ammd\/v1\// { if (cut) printf "  ... (%d more lines)\n", cut; n = 0; cut = 0 }
		{ if (++n <= max) print; else cut++ }
		END { if (cut) printf "  ... (%d more lines)\n", cut }' "$WORK/mqtt.out"
}
stored() {
	psql "$DSN" -X -q -At -c "SELECT count(*) FROM session_log WHERE outcome = 'ok'" 2>/dev/null || echo 0
}

while :; do
	elapsed=$(($(date +%s) - t0))
	if [ $TTY = 1 ]; then
		printf '\033[H\033[2J'
		# the screen was cleared: the decoded messages again, short, above
		# the status so that the status stays in view
		if [ $shown_mqtt = 1 ]; then
			say "MQTT messages as ammd published them, decoded (ammctl mqtt tail --count 5)"
			mqtt_cached 6
		fi
	fi
	say "ammctl status ($elapsed s${AMMD_PID:+ after ammd started})"
	status_once
	if [ $shown_mqtt = 0 ] && [ -n "$AMMD_PID" ] && [ "$(stored)" -gt 0 ] 2>/dev/null; then
		mqtt_show
		shown_mqtt=1
	fi
	if [ -n "$AMMD_PID" ] && ! kill -0 "$AMMD_PID" 2>/dev/null; then
		echo "demo: ammd exited:" >&2
		tail -20 "$WORK/ammd.log" >&2
		wait "$AMMD_PID" 2>/dev/null
		AMMD_PID=
	fi
	if [ "$SECONDS_MAX" -gt 0 ] 2>/dev/null && [ "$elapsed" -ge "$SECONDS_MAX" ]; then
		break
	fi
	[ $TTY = 1 ] && echo && echo "(refreshed every 3 s; Ctrl-C stops the demo)"
	sleep 3
done
[ $shown_mqtt = 1 ] || [ -z "$AMMD_PID" ] || mqtt_show
exit 0
