# sim_lib.sh: helpers the t_sim_*.sh tests share (sourced after lib.sh).
#
# sim_start NAME ARGS...: start `metersim serve ARGS` in the background with
# a control socket, wait for its start-up line, and stop it at exit.
# Sets SIM_CTL (control socket) and SIM_PID_<NAME>.  sim_stop NAME stops
# one early.  METERSIM and CHECK are the simulator and the checking client
# (tests/bench/bench_sim_serve.c, built by make as build/bench_sim_serve).
METERSIM=${METERSIM:-$BUILD/metersim}
CHECK=${CHECK:-$BUILD/bench_sim_serve}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[ -x "$METERSIM" ] || fail "no $METERSIM"
[ -x "$CHECK" ] || make -C "$ROOT" --no-print-directory "$CHECK" >/dev/null 2>&1 ||
	fail "no $CHECK (make $CHECK)"
SIM_WORK=$(mktemp -d)
lib_cleanup_add rm -rf "$SIM_WORK"

sim_start() {
	local name=$1
	shift
	local ctl=$SIM_WORK/$name.sock log=$SIM_WORK/$name.log
	: >"$log"
	"$METERSIM" serve --control "$ctl" "$@" >"$log" 2>&1 &
	local pid=$!
	eval "SIM_PID_$name=$pid"
	lib_cleanup_add "kill $pid; wait $pid"
	local i=0
	while ! grep -q '^metersim: serving' "$log"; do
		kill -0 $pid 2>/dev/null || fail "metersim serve $* exited: $(cat "$log")"
		[ $i -gt 100 ] && fail "metersim serve $* did not start"
		sleep 0.1
		i=$((i + 1))
	done
	SIM_CTL=$ctl
}

sim_stop() {
	local pid
	eval "pid=\$SIM_PID_$1"
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

# sim_ctl COMMAND...: a control command on the last started simulator.
sim_ctl() { "$METERSIM" ctl "$SIM_CTL" "$@"; }

# A free base port with N free ports after it (best effort).
sim_base_port() {
	local n=$1 p i
	for _ in 1 2 3 4 5 6 7 8; do
		p=$((12000 + RANDOM % 18000)) # below the ephemeral range
		for ((i = 0; i < n; i++)); do
			(exec 3<>"/dev/tcp/127.0.0.1/$((p + i))") 2>/dev/null && continue 2
		done
		echo $p
		return
	done
	echo $p
}
