# tests/integration/cmd_lib.sh: helpers of the t_cmd_*.sh tests that run
# operator commands through a running ammd against metersim; sourced after
# lib.sh.  The caller sets N (meters), SEED and `work`, and may set
# SIM_EXTRA (more metersim serve options), CMD_CONF (extra ammd.conf
# lines, e.g. a [commands] section) and CMD_DAEMON_ROLE (ammd logs in as
# this new login, a member of the ammd role, instead of the superuser:
# $ddsn).
#
#   cmd_setup NAME        fleet on consecutive ports with a control socket,
#                         a migrated database $dsn, meters imported, S[i]
#                         the serials, ammd.conf written
#   cmd_ammd_start        the daemon ($ammd_pid), waits until it is healthy
#   cmd_ammd_kill9        SIGKILL
#   ctl ARGS...           metersim ctl on the fleet's socket
#   field SERIAL KEY      one field of `metersim ctl show`
#   cmd KIND SERIAL ARGS  queue through ammctl, print the id
#   cmd_wait ID SECS      until the command is final; prints its state
#   res ID PATH           a value of the result JSON (psql #>> path)

. "$(dirname "${BASH_SOURCE[0]}")/collect.sh" # port_block, collect_fleet
collect_progs

ctl() { "$METERSIM" ctl "$work/sim.ctl" "$@"; }
field() { ctl show "$1" | sed -n "s/^$2=//p"; }

sim_pid=
cmd_sim_start() {
	# shellcheck disable=SC2086
	"$METERSIM" serve "${fleet[@]}" --base-port "$BASE" --control "$work/sim.ctl" ${SIM_EXTRA:-} \
		>>"$work/sim.log" 2>&1 &
	sim_pid=$!
	lib_cleanup_add kill "$sim_pid"
	wait_port "$BASE" 20 && wait_port $((BASE + N - 1)) 20 || { cat "$work/sim.log" >&2; fail "metersim serve did not come up"; }
	for _ in $(seq 1 50); do [ -S "$work/sim.ctl" ] && break; sleep 0.1; done
}

cmd_setup() { # NAME
	fleet=(--count "$N" --seed "$SEED")
	collect_fleet "$1"
	mapfile -t S < <(tail -n +2 "$work/m.csv" | cut -d, -f1)
	ddsn=$dsn
	if [ -n "${CMD_DAEMON_ROLE:-}" ]; then
		pg_login_role "$CMD_DAEMON_ROLE" ammd
		ddsn="host=$PG_SOCK port=$PG_PORT dbname=$1 user=$CMD_DAEMON_ROLE"
	fi
	cmd_sim_start
	HTTP_PORT=$(free_port)
	cat >"$work/ammd.conf" <<EOF
[daemon]
log_level = ${CMD_LOG_LEVEL:-info}
http_listen = 127.0.0.1:$HTTP_PORT
shutdown_timeout = 10
instance_id = t-cmd
[database]
dsn = $ddsn
[collection]
registers = 1-0:1.8.0.255 1-0:2.8.0.255
profile_backfill_days = 1
concurrency = ${CMD_CONC:-20}
lease_batch = 500
[tcpip]
connect_timeout_ms = 2000
response_timeout_ms = 6000
${CMD_CONF:-}
EOF
	chmod 600 "$work/ammd.conf"
}

ammd_pid=
cmd_ammd_start() {
	"$AMMD" -d -f "$work/ammd.conf" >>"$work/ammd.log" 2>&1 &
	ammd_pid=$!
	lib_cleanup_add kill -9 "$ammd_pid"
	for _ in $(seq 1 100); do
		python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$HTTP_PORT/healthz', timeout=1)" \
			2>/dev/null && return 0
		kill -0 "$ammd_pid" 2>/dev/null || break
		sleep 0.1
	done
	tail -30 "$work/ammd.log" >&2
	fail "ammd did not become healthy"
}
cmd_ammd_kill9() { kill -9 "$ammd_pid" 2>/dev/null; wait "$ammd_pid" 2>/dev/null; ammd_pid=; return 0; }
cmd_ammd_term() {
	kill -TERM "$ammd_pid"
	wait "$ammd_pid"
}

cmd() { # KIND SERIAL [ARGS...]
	local kind=$1 serial=$2
	shift 2
	"$AMMCTL" cmd "$kind" "$serial" "$@" --dsn "$dsn" >/dev/null || fail "ammctl cmd $kind $serial $*"
	q "$dsn" "SELECT max(c.id) FROM command c JOIN meter m ON m.id = c.meter_id WHERE m.serial = '$serial' AND c.kind = '$kind'"
}

cmd_wait() { # ID SECS
	local i=0 st
	while :; do
		st=$(q "$dsn" "SELECT state FROM command WHERE id = $1")
		case $st in succeeded|failed|expired|cancelled) echo "$st"; return 0 ;; esac
		i=$((i + 1))
		[ $i -gt $(($2 * 20)) ] && { echo "$st"; return 0; }
		sleep 0.05
	done
}

# The command succeeded, or print why not and fail.
cmd_ok() { # ID WHAT
	local st
	st=$(cmd_wait "$1" 30)
	[ "$st" = succeeded ] || {
		q "$dsn" "SELECT state, error, result FROM command WHERE id = $1" >&2
		tail -20 "$work/ammd.log" >&2
		fail "$2: command $1 is $st"
	}
	ok "$2"
}

res() { q "$dsn" "SELECT result #>> '{$2}' FROM command WHERE id = $1"; }
