#!/bin/bash
# t_gprs_collect.sh: GPRS meters that connect in (issue 6, drivers/gprs).
#
# GPRS_METERS (default 1,000) simulated GPRS modules connect to ammd's
# [gprs] listener with jitter (metersim serve --transport gprs, pushing a
# DataNotification first); ammd identifies each by its logical device name
# (public client), leases it by serial and reads it on its own connection
# with its own keys.  Then:
#   * everything stored equals `metersim expect` (collect.sh's compare), a
#     session per meter, bytes on the wire in session_log, and
#     `ammctl report traffic` sums them per meter;
#   * a meter whose keys in the inventory are not the ones the connecting
#     module holds (a module claiming that meter's identity without its
#     keys) is refused: outcome auth/rejected, nothing stored, logged;
#   * an unknown meter (a module of another fleet) is refused and logged
#     with its peer address;
#   * 500 idle half-open connections on the listener do not slow the
#     collection of the others: a round with them against one without.
. "$(dirname "$0")/lib.sh"
# figures also to $GPRS_FIGURES when set (run.sh shows a test's output only
# when it fails)
fig() { echo "  figures: $*"; [ -n "${GPRS_FIGURES:-}" ] && echo "$*" >>"$GPRS_FIGURES"; return 0; }

N=${GPRS_METERS:-1000}
SEED=23
DAYS=1
CONC=${GPRS_CONCURRENCY:-100}
. "$(dirname "$0")/gprs_lib.sh"
collect_clock
ulimit -n "$(ulimit -Hn)" 2>/dev/null

cp "$METERSIM" "$work/metersim" && cp "$AMMD" "$work/ammd" || fail "copying the programs"
METERSIM=$work/metersim
AMMD=$work/ammd
fleet=(--count "$N" --seed "$SEED" --origin "$ORIGIN")

"$METERSIM" export "${fleet[@]}" --transport gprs >"$work/m.csv" || fail "metersim export"
gprs_inventory amm_gprs
ok "$N GPRS meters imported (no APN address: they connect in)"

gprs_conf "max_unidentified = 2000" "handshake_timeout_s = 60" "idle_timeout_s = ${GPRS_IDLE_S:-3}" \
	"response_timeout_ms = 10000"
ammd_start
wait_port "$LPORT" 20 || { cat "$work/ammd.log" >&2; fail "no GPRS listener"; }

gsim_pid=
gsim_start() { # ARGS: metersim serve as GPRS modules of the fleet
	"$METERSIM" serve "$@" --transport gprs --gprs-connect "127.0.0.1:$LPORT" --push --control "$work/gsim.sock" \
		--start "$START" --speed 0 >"$work/gsim.log" 2>&1 &
	gsim_pid=$!
	lib_cleanup_add kill "$gsim_pid"
}
gsim_stop() { [ -n "$gsim_pid" ] && { kill "$gsim_pid" 2>/dev/null; wait "$gsim_pid" 2>/dev/null; gsim_pid=; }; return 0; }

# ---- round 1: the whole fleet connects in ----------------------------------

t0=$(date +%s.%N)
gsim_start "${fleet[@]}"
round_wait "$dsn" 600
t1=$(date +%s.%N)
expect_eq "every meter has an ok session over gprs" "$N gprs" \
	"$(q "$dsn" "SELECT count(DISTINCT meter_id) || ' ' || string_agg(DISTINCT transport, ',') FROM session_log WHERE outcome = 'ok'")"
expect_eq "no session failed" "0" "$(q "$dsn" "SELECT count(*) FROM session_log WHERE outcome NOT IN ('ok', 'identify')")"
lo=$(iso $((START_S - DAYS * 86400 + 3600)))
hi=$(iso $((START_S - 3600)))
expect_load "$dsn" "$(iso $((START_S - DAYS * 86400 - 86400)))" "$(iso $((START_S + 3600)))" "$START"
# the pushes (sent before identification, stored once the meter's own
# association was up): the alarm register of every meter, a bit set of the
# simulator's five alarms; checked here, then part of the truth for compare
expect_eq "every meter's pushed alarm register stored" "$N" \
	"$(q "$dsn" "SELECT count(DISTINCT meter_id) FROM register_reading WHERE obis = '0-0:97.98.0.255' AND value BETWEEN 0 AND 31 AND scaler = 0")"
q "$dsn" "INSERT INTO er SELECT DISTINCT ON (m.id) m.serial, r.obis, r.value FROM register_reading r
	JOIN meter m ON m.id = r.meter_id WHERE r.obis = '0-0:97.98.0.255' ORDER BY m.id, r.captured_at DESC" >/dev/null
compare "$dsn" "$lo" "$hi"
expect_eq "identification bytes logged for every meter" "$N" \
	"$(q "$dsn" "SELECT count(DISTINCT meter_id) FROM session_log WHERE outcome = 'identify' AND bytes_in > 0 AND bytes_out > 0")"
figures=$(q "$dsn" "SELECT round($N / ($t1 - $t0), 1) || ' meters/s; session median ' ||
	percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) || ' ms; bytes per meter in ' ||
	round(avg(bytes_in)) || ', out ' || round(avg(bytes_out)) FROM session_log WHERE outcome = 'ok'")
fig "round 1, $N GPRS meters, $DAYS day backfilled, concurrency $CONC: $figures"
ident=$(q "$dsn" "SELECT round(avg(bytes_in)) || ' in, ' || round(avg(bytes_out)) || ' out' FROM session_log WHERE outcome = 'identify'")
fig "identification (push, public association, logical device name, release): $ident per connection"

# traffic report: the month of the sessions (real time), per meter
month=$(date -u +%Y-%m)
rep=$("$AMMCTL" report traffic --dsn "$dsn" --month "$month" --json) || fail "ammctl report traffic: $rep"
want=$(q "$dsn" "SELECT sum(bytes_in + bytes_out) FROM session_log")
got=$(python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(sum(m["bytes_in"]+m["bytes_out"] for m in d["meters"]), len(d["meters"]))' <<<"$rep")
expect_eq "traffic report: every meter, bytes equal session_log" "$want $N" "$got"

# ---- wrong keys: a module claims a meter whose keys it does not hold ----------

victim=$(awk -F, 'NR > 1 && $9 == "hls-gmac" { print $1; exit }' "$work/m.csv")
[ -n "$victim" ] || fail "no hls-gmac meter in the fleet"
regs0=$(q "$dsn" "SELECT count(*) FROM register_reading r JOIN meter m ON m.id = r.meter_id WHERE m.serial = '$victim'")
# the inventory now holds other keys than the module: whatever connects as
# this meter cannot prove it is
q "$dsn" "UPDATE meter_key SET ek = decode(repeat('11', 16), 'hex'), ak = decode(repeat('22', 16), 'hex')
	WHERE meter_id = (SELECT id FROM meter WHERE serial = '$victim');
	UPDATE meter SET next_due_at = now() WHERE serial = '$victim'" >/dev/null
i=0
until [ "$(q "$dsn" "SELECT count(*) FROM session_log l JOIN meter m ON m.id = l.meter_id WHERE m.serial = '$victim' AND l.outcome IN ('auth', 'rejected')")" -gt 0 ]; do
	sleep 0.2
	i=$((i + 1))
	[ $i -gt 150 ] && { tail -20 "$work/ammd.log" >&2; fail "no refused session for $victim"; }
done
ok "a module claiming $victim without its keys: association refused ($(q "$dsn" "SELECT outcome || ': ' || error FROM session_log l JOIN meter m ON m.id = l.meter_id WHERE m.serial = '$victim' AND l.outcome IN ('auth', 'rejected') LIMIT 1"))"
sleep 1
expect_eq "nothing stored for it" "$regs0" \
	"$(q "$dsn" "SELECT count(*) FROM register_reading r JOIN meter m ON m.id = r.meter_id WHERE m.serial = '$victim'")"
expect_match "logged with the peer address" "gprs: connection from 127\.0\.0\.1:[0-9]+ claims $victim" "$(cat "$work/ammd.log")"
expect_match "the refusal logged" "$victim.*(auth|rejected|refused)" "$(cat "$work/ammd.log")"
q "$dsn" "UPDATE meter SET enabled = false WHERE serial = '$victim'" >/dev/null

# ---- an unknown meter ----------------------------------------------------------

"$METERSIM" serve --count 1 --seed 999 --transport gprs --gprs-connect "127.0.0.1:$LPORT" \
	--start "$START" --speed 0 >"$work/stranger.log" 2>&1 &
spid=$!
lib_cleanup_add kill "$spid"
wait_grep 'refused: unknown meter' "$work/ammd.log" 50 0.2 || fail "unknown meter not refused"
kill "$spid"
expect_match "unknown meter refused with its peer address" \
	"gprs: connection from 127\.0\.0\.1:[0-9]+ refused: unknown meter [0-9]+" "$(cat "$work/ammd.log")"

# ---- 500 idle half-open connections ---------------------------------------------

round() { # -> seconds for every enabled meter to be read again
	local a b
	q "$dsn" "UPDATE meter SET next_due_at = now() WHERE enabled" >/dev/null
	a=$(date +%s.%N)
	round_wait "$dsn" 600
	b=$(date +%s.%N)
	python3 -c "print(round($b - $a, 2))"
}
r_without=$(round)
python3 - "$LPORT" 500 >"$work/idle.out" 2>&1 <<'PY' &
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    socks.append(s)  # never answers: half-open as far as the head-end knows
print("open", len(socks), flush=True)
time.sleep(600)
PY
ipid=$!
lib_cleanup_add kill "$ipid"
wait_grep '^open 500' "$work/idle.out" 100 0.1 ||
	fail "idle connections not opened: $(cat "$work/idle.out")"
r_with=$(round)
kill "$ipid"
fig "a round of $((N - 1)) meters takes $r_without s without, $r_with s with 500 idle half-open connections"
python3 -c "import sys; sys.exit(0 if $r_with <= 1.5 * $r_without + 2 else 1)" ||
	fail "500 idle connections slowed the round: $r_with s against $r_without s"
ok "500 idle half-open connections do not slow the collection ($r_with s against $r_without s)"
expect_eq "still no failed session but the refused one" "0" \
	"$(q "$dsn" "SELECT count(*) FROM session_log l JOIN meter m ON m.id = l.meter_id WHERE l.outcome NOT IN ('ok', 'identify') AND m.serial <> '$victim'")"

gsim_stop
ammd_term || fail "ammd exit status $?"
ok "ammd stops cleanly"
