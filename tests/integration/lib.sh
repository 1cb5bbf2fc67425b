# tests/integration/lib.sh: shared helpers for the integration tests.
#
# Starts private PostgreSQL 15 clusters and mosquitto brokers that listen on
# 127.0.0.1 (and a unix socket in a temporary directory) only, so a test run
# never touches a system cluster on 5432 or a system broker on 1883, and
# cleans every one of them up from one EXIT trap whatever happens.  It also
# holds the small assertion helpers the t_*.sh scripts use.
#
# Source it from bash:  . "$(dirname "$0")/lib.sh"
#
# PostgreSQL's initdb and postgres refuse to run as root, so as root the
# server runs as the `postgres` system user (runuser); as any other user it
# runs as that user.

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
LIB_TMP_ROOT=${TMPDIR:-/tmp}

# Everything to undo at exit, newest first.
_lib_cleanups=()

lib_cleanup_add() { _lib_cleanups=("$*" "${_lib_cleanups[@]}"); }

_lib_cleanup_run() {
	local c
	for c in "${_lib_cleanups[@]}"; do
		eval "$c" >/dev/null 2>&1 || true
	done
	_lib_cleanups=()
}

# One trap for the whole process; callers add their own undo steps with
# lib_cleanup_add rather than replacing the trap.
trap _lib_cleanup_run EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() { echo "lib: $*" >&2; exit 1; }

# A TCP port on 127.0.0.1 that nobody listens on right now.
free_port() {
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
		return
	fi
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

# Wait until something accepts TCP connections on 127.0.0.1:PORT (max SECS).
wait_port() {
	local port=$1 secs=${2:-20} i=0
	while [ $i -lt $((secs * 10)) ]; do
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

# wait_grep PATTERN FILE TRIES STEP: wait until a line of FILE matches
# PATTERN (grep), looking again every STEP seconds; status 1 once TRIES
# waits have passed in vain (the caller says what failed).
wait_grep() {
	local i=0
	until grep -q -- "$1" "$2"; do
		sleep "$4"
		i=$((i + 1))
		[ $i -gt "$3" ] && return 1
	done
	return 0
}

# lib_snap VAR FILE: copy FILE into a private directory (made on first use,
# removed at exit) and set VAR to the copy, so that a relink in the shared
# build tree cannot swap a binary under a running test.  VAR stays as it
# was when the copy fails.
lib_snap() {
	if [ -z "${LIB_SNAP:-}" ]; then
		LIB_SNAP=$(mktemp -d) || die "mktemp"
		lib_cleanup_add rm -rf "$LIB_SNAP"
	fi
	cp "$2" "$LIB_SNAP/${2##*/}" && printf -v "$1" '%s' "$LIB_SNAP/${2##*/}"
}

_as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_start: initialise and start a private cluster.  Sets PG_DIR, PG_PORT,
# PG_SOCK (unix socket directory), PG_SUPER_DSN (superuser, for setup only).
pg_start() {
	[ -x "$PGBIN/initdb" ] || die "no PostgreSQL 15 at $PGBIN (apt-get install postgresql-15)"
	# /tmp rather than $TMPDIR: the postgres user must be able to reach it.
	PG_DIR=$(mktemp -d "${AMM_PG_TMP:-/tmp}/amm-pg.XXXXXX") || die "mktemp"
	chmod 755 "$PG_DIR"
	mkdir -p "$PG_DIR/sock"
	if [ "$(id -u)" = 0 ]; then chown -R postgres: "$PG_DIR"; fi
	PG_PORT=$(free_port)
	PG_SOCK=$PG_DIR/sock
	lib_cleanup_add pg_stop "$PG_DIR"
	_as_pg "$PGBIN/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 \
		--locale=C --no-sync >"$PG_DIR/initdb.log" 2>&1 ||
		{ cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
	# Loopback only; fsync off because a test cluster never needs to survive
	# a power cut, and it makes the suite several times faster.
	cat >>"$PG_DIR/data/postgresql.conf" <<-EOF
	listen_addresses = '127.0.0.1'
	port = $PG_PORT
	unix_socket_directories = '$PG_SOCK'
	fsync = off
	synchronous_commit = off
	full_page_writes = off
	max_connections = 100
	shared_buffers = 128MB
	log_min_messages = warning
	EOF
	_as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start \
		>/dev/null 2>&1 || { cat "$PG_DIR/server.log" >&2; die "postgres did not start"; }
	PG_SUPER_DSN="host=$PG_SOCK port=$PG_PORT user=postgres dbname=postgres"
	export PG_DIR PG_PORT PG_SOCK PG_SUPER_DSN
}

# pg_stop DIR: stop the cluster in DIR (immediately: it is throwaway) and
# remove the directory.
pg_stop() {
	local dir=${1:-$PG_DIR}
	[ -n "$dir" ] && [ -d "$dir" ] || return 0
	if [ -f "$dir/data/postmaster.pid" ]; then
		_as_pg "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w -t 20 stop >/dev/null 2>&1 ||
			kill -9 "$(head -1 "$dir/data/postmaster.pid")" 2>/dev/null
	fi
	rm -rf "$dir"
}

# psql as the cluster superuser; extra arguments are passed to psql.
pg_super() { psql "$PG_SUPER_DSN" -X -q -v ON_ERROR_STOP=1 "$@"; }

# pg_newdb NAME: a fresh database owned by the login role `amm`, which is
# no superuser but may create roles (the migrations create the group roles
# ammd, ammd_operator and ammd_reader).  Prints the DSN to connect as amm.
pg_newdb() {
	local name=$1
	pg_super -c "DO \$\$ BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'amm') THEN
			CREATE ROLE amm LOGIN CREATEROLE NOSUPERUSER;
		END IF; END \$\$;" >/dev/null || die "cannot create role amm"
	pg_super -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name OWNER amm" \
		>/dev/null || die "cannot create database $name"
	echo "host=$PG_SOCK port=$PG_PORT user=amm dbname=$name"
}

# pg_login_role NAME GROUP...: a login role that is a member of the groups.
pg_login_role() {
	local name=$1 g
	shift
	pg_super -c "SET client_min_messages = warning" -c "DROP ROLE IF EXISTS $name" -c "CREATE ROLE $name LOGIN" >/dev/null ||
		die "cannot create role $name"
	for g in "$@"; do pg_super -c "GRANT $g TO $name" >/dev/null || die "grant $g"; done
}

# mqtt_start: a private broker on 127.0.0.1 with anonymous access.  Sets
# MQTT_PORT and MQTT_DIR.
mqtt_start() {
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] ||
		die "no mosquitto (apt-get install mosquitto)"
	local bin
	bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
	MQTT_DIR=$(mktemp -d "$LIB_TMP_ROOT/amm-mqtt.XXXXXX") || die "mktemp"
	chmod 755 "$MQTT_DIR"
	MQTT_PORT=$(free_port)
	cat >"$MQTT_DIR/mosquitto.conf" <<-EOF
	listener $MQTT_PORT 127.0.0.1
	allow_anonymous true
	persistence false
	log_dest stderr
	log_type error
	log_type warning
	EOF
	# stderr is opened by this shell, so it stays writable after mosquitto
	# drops root privileges to its own user.
	"$bin" -c "$MQTT_DIR/mosquitto.conf" >"$MQTT_DIR/mosquitto.log" 2>&1 &
	MQTT_PID=$!
	lib_cleanup_add mqtt_stop "$MQTT_PID" "$MQTT_DIR"
	wait_port "$MQTT_PORT" 20 || { cat "$MQTT_DIR/mosquitto.log" >&2; die "mosquitto did not start"; }
	export MQTT_PORT MQTT_DIR MQTT_PID
}

# mqtt_stop PID DIR
mqtt_stop() {
	local pid=${1:-$MQTT_PID} dir=${2:-$MQTT_DIR}
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null
		for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	[ -n "$dir" ] && rm -rf "$dir"
	return 0
}

# broker_start, broker_stop: a test's own broker that it stops and starts
# again (persistent sessions, outages).  The test writes
# $B_DIR/mosquitto.conf listening on $B_PORT and may name the log in B_LOG
# (default $B_DIR/mosquitto.log, appended to); B_PID is the running
# broker's process.
broker_start() {
	local log=${B_LOG:-$B_DIR/mosquitto.log}
	"$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$B_DIR/mosquitto.conf" \
		>>"$log" 2>&1 &
	B_PID=$!
	wait_port "$B_PORT" 20 || { cat "$log" >&2; fail "mosquitto did not start"; }
}

# A clean stop: mosquitto writes its persistence file on SIGTERM.
broker_stop() {
	[ -n "$B_PID" ] || return 0
	kill "$B_PID" 2>/dev/null
	for _ in $(seq 1 50); do kill -0 "$B_PID" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$B_PID" 2>/dev/null
	wait "$B_PID" 2>/dev/null
	B_PID=
}

# ---- assertions -------------------------------------------------------------
# Each prints what it checked; the first failure ends the test with status 1.

T_CHECKS=0

ok() { T_CHECKS=$((T_CHECKS + 1)); echo "  ok $T_CHECKS - $*"; }
fail() { echo "  FAILED: $*" >&2; exit 1; }

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
	[ "$2" = "$3" ] || fail "$1: expected '$2', got '$3'"
	ok "$1"
}

# expect_match WHAT REGEX TEXT
expect_match() {
	printf '%s' "$3" | grep -Eq -- "$2" || fail "$1: '$2' not found in: $3"
	ok "$1"
}

# expect_status WHAT CODE COMMAND...: the command exits with CODE.
expect_status() {
	local what=$1 want=$2 rc
	shift 2
	"$@" >/dev/null 2>&1
	rc=$?
	[ "$rc" = "$want" ] || fail "$what: exit status $rc, expected $want ($*)"
	ok "$what"
}

# q DSN SQL: one value (tuples only, unaligned) from psql, errors fatal.
q() { psql "$1" -X -q -At -v ON_ERROR_STOP=1 -c "$2"; }

# q_fails DSN SQL: succeeds when the statement is refused.
q_fails() { ! psql "$1" -X -q -At -v ON_ERROR_STOP=1 -c "$2" >/dev/null 2>&1; }
