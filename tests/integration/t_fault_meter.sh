#!/bin/bash
# t_fault_meter.sh: meters that misbehave on the wire (metersim faults) make
# ammd retry, never store a wrong or a duplicate row, and once the faults
# are gone everything equals `metersim expect`.
#
# A. A wrapper (IEC 62056-47) fleet, rounds under these faults at once:
#    drop 3 % and truncate 1 % of the answers (sessions cut mid-way: the
#    rows read until then are stored, the next session asks again from the
#    pointer), abort 1 % of the requests (association lost), a meter that
#    stalls every answer past ammd's response timeout, half the ciphered
#    (hls-gmac) meters with 1 % of their bytes corrupted, the other half
#    with 5 % of their answers under a replayed invocation counter.  After each round every
#    stored row equals the ground truth.  Then the faults are cleared and
#    one more round completes the database exactly.
# B. An HDLC fleet with 1 % of all bytes corrupted and 2 % of the answers
#    dropped: frames that fail their FCS are never used; same checks.
#
# Scope of the corruption: metersim corrupts bytes above TCP.  On a real
# TCP/IP link TCP's checksum protects them, and an unciphered wrapper APDU
# carries no checksum of its own, so a flipped bit inside a value of an
# unciphered wrapper meter is undetectable by any head-end; such meters get
# no corruption here.  What a head-end can detect is tested: GCM tags on
# ciphered meters (2^-96 chance of a forgery passing) and HDLC's FCS
# (CRC-16: every odd number of flipped bits, every burst up to 16 bits,
# and all but 2^-16 of the rest; each session ends at its first bad frame,
# so a run checks a few hundred corrupted frames).
. "$(dirname "$0")/lib.sh"

START=2024-03-01T00:00:00Z
START_S=$(date -u -d "$START" +%s)
DAYS=1
CONC=8
METERSIM=$BUILD/metersim
AMMD=$BUILD/ammd
[ -x "$METERSIM" ] && [ -x "$AMMD" ] || fail "build ammd and metersim first"
. "$(dirname "$0")/collect.sh"

root=$(mktemp -d)
lib_cleanup_add rm -rf "$root"
cp "$METERSIM" "$root/metersim" && cp "$AMMD" "$root/ammd" || fail "copying the programs"
METERSIM=$root/metersim
AMMD=$root/ammd
lo=$(iso $((START_S - DAYS * 86400 + 3600)))
hi=$(iso $((START_S - 3600)))

simctl() { "$METERSIM" ctl "$work/sim.sock" "$@"; }
fired() { simctl counters | awk -F= -v k="fault_$1" '$1 == k { print $2 }'; }

# setup NAME SEED COUNT TRANSPORT: database, inventory, simulator, config
setup() {
	work=$root/$1
	mkdir -p "$work"
	N=$3
	fleet=(--count "$N" --seed "$2" --origin "$START")
	BASE=$(port_block "$N")
	"$METERSIM" export "${fleet[@]}" --transport "$4" --base-port "$BASE" >"$work/m.csv" ||
		fail "metersim export"
	dsn=$(pg_newdb "amm_fault_$1")
	"$AMMCTL" db migrate --dsn "$dsn" >/dev/null || fail "migrate"
	"$AMMCTL" meter import --dsn "$dsn" "$work/m.csv" >/dev/null || fail "import"
	"$METERSIM" serve "${fleet[@]}" --transport "$4" --base-port "$BASE" --start "$START" --speed 0 \
		--control "$work/sim.sock" >"$work/sim.log" 2>&1 &
	sim_pid=$!
	lib_cleanup_add kill "$sim_pid"
	wait_port $((BASE + N - 1)) 20 || { cat "$work/sim.log" >&2; fail "metersim did not start"; }
	conf "$dsn"
	# short timeouts and retries so that a faulty round is over in seconds
	sed -i -e 's/^response_timeout_ms = .*/response_timeout_ms = 1500/' \
		-e 's/^connect_timeout_ms = .*/connect_timeout_ms = 1000/' \
		-e 's/^lease_seconds = .*/lease_seconds = 600\nretry_base_s = 1\nretry_max_s = 4/' "$work/ammd.conf"
	expect_load "$dsn" "$(iso $((START_S - DAYS * 86400 - 86400)))" "$(iso $((START_S + 3600)))" "$START"
}

# Every stored row is the truth (whatever is missing yet).
stored_true() { # WHAT
	expect_eq "$1: every stored register value true" "0" "$(q "$dsn" "
		SELECT count(*) FROM register_reading r JOIN meter m ON m.id = r.meter_id
		WHERE NOT EXISTS (SELECT 1 FROM er WHERE er.serial = m.serial AND er.obis = r.obis AND er.value = r.value)")"
	expect_eq "$1: every stored interval true" "0" "$(q "$dsn" "
		SELECT count(*) FROM interval_reading i JOIN meter m ON m.id = i.meter_id
		LEFT JOIN ei ON ei.serial = m.serial AND ei.ts = i.ts
		WHERE (ei.a_plus, ei.a_minus, ei.r_plus, ei.r_minus, ei.status)
		      IS DISTINCT FROM (i.a_plus, i.a_minus, i.r_plus, i.r_minus, i.status)")"
	expect_eq "$1: every stored event and billing value true" "0" "$(q "$dsn" "
		SELECT (SELECT count(*) FROM event e JOIN meter m ON m.id = e.meter_id
		        WHERE NOT EXISTS (SELECT 1 FROM ee WHERE ee.serial = m.serial AND ee.ts = e.ts
		                          AND ee.log = e.log AND ee.code = e.code))
		     + (SELECT count(*) FROM billing_value b JOIN meter m ON m.id = b.meter_id
		        WHERE NOT EXISTS (SELECT 1 FROM eb WHERE eb.serial = m.serial AND eb.period_end = b.period_end
		                          AND eb.obis = b.obis AND eb.value = b.value))")"
	expect_eq "$1: every profile pointer at a stored interval" "0" "$(q "$dsn" "
		SELECT count(*) FROM read_pointer p WHERE p.what = 'profile'
		AND p.last_ts IS DISTINCT FROM (SELECT max(ts) FROM interval_reading i WHERE i.meter_id = p.meter_id)")"
}

# ROUNDS faulty rounds: every meter made due, until no meter is due or leased
faulty_rounds() { # ROUNDS WHAT
	local r
	for r in $(seq "$1"); do
		q "$dsn" "UPDATE meter SET next_due_at = NULL" >/dev/null
		round_wait "$dsn" 240
		stored_true "$2, round $r"
	done
	echo "  $2: session outcomes: $(q "$dsn" "SELECT string_agg(outcome || ' ' || n, ', ') FROM (SELECT outcome, count(*) n FROM session_log GROUP BY 1 ORDER BY 1) x")"
	echo "  $2: faults fired: $(simctl counters | grep '^fault_' | grep -v '=0$' | tr '\n' ' ')"
}

# Faults off, one more round: everything equals the truth.
clean_round() { # WHAT
	# no session of the faulty rounds may still run (its retry would be
	# scheduled past the clean round): stop ammd, clear, start again
	ammd_term || fail "ammd exit status $?"
	simctl clear >/dev/null || fail "ctl clear"
	q "$dsn" "UPDATE meter SET next_due_at = NULL" >/dev/null
	ammd_start
	round_wait "$dsn" 240
	q "$dsn" "SELECT m.serial, s.outcome, s.error FROM meter m JOIN LATERAL (SELECT * FROM session_log s
		WHERE s.meter_id = m.id ORDER BY s.id DESC LIMIT 1) s ON true WHERE s.outcome <> 'ok'" >&2
	expect_eq "$1: faults cleared, the last session of every meter ok" "$N" "$(q "$dsn" "
		SELECT count(*) FROM meter m WHERE (SELECT outcome FROM session_log s WHERE s.meter_id = m.id
		                                    ORDER BY s.id DESC LIMIT 1) = 'ok'")"
	compare "$dsn" "$lo" "$hi"
	stored_true "$1, clean"
	local rows
	rows=$(counts "$dsn")
	q "$dsn" "UPDATE meter SET next_due_at = NULL" >/dev/null
	round_wait "$dsn" 240
	expect_eq "$1: one more round adds no row" "$rows" "$(counts "$dsn")"
}

# ---- A: wrapper fleet ------------------------------------------------------------

setup wrap 31 40 tcpip
hls=$(awk -F, 'NR > 1 && $9 == "hls-gmac" { print $1 }' "$work/m.csv")
stall=$(awk -F, 'NR > 1 && $9 != "hls-gmac" { print $1; exit }' "$work/m.csv")
[ -n "$hls" ] && [ -n "$stall" ] || fail "fleet lacks ciphered or plain meters"
spec="drop=0.03,truncate=0.01,abort=0.01,stall=3000@$stall"
simctl fault "$spec" >/dev/null || fail "ctl fault $spec"
# half the ciphered meters get corrupted bytes, the other half replayed
# counters (a corrupted session rarely lives long enough to see a replay)
i=0
for s in $hls; do
	if [ $((i % 2)) = 0 ]; then f="corrupt=0.01@$s,drop=0.03@$s"; else f="ic_replay=0.05@$s,drop=0.03@$s"; fi
	simctl fault "$f" >/dev/null || fail "ctl fault on $s"
	i=$((i + 1))
done
ok "faults set: drop, truncate, abort fleet-wide; stall on $stall; corrupt 1 % or ic_replay 5 %, and drop, on $(echo $hls | wc -w) ciphered meters"
ammd_start
faulty_rounds 3 "wrapper under faults"
for k in drop truncate abort stall corrupt ic_replay; do
	[ "${fired_min:=1}" -le "$(fired $k)" ] || fail "fault $k never fired"
done
ok "every fault fired (drop $(fired drop), truncate $(fired truncate), abort $(fired abort), stall $(fired stall), corrupt $(fired corrupt) bytes, ic_replay $(fired ic_replay))"
expect_match "sessions were cut short (not every session ok)" "[1-9]" \
	"$(q "$dsn" "SELECT count(*) FROM session_log WHERE outcome <> 'ok'")"
echo "  errors: $(q "$dsn" "SELECT string_agg(DISTINCT outcome || ': ' || error, '; ') FROM session_log WHERE outcome IN ('auth', 'error')")"
expect_eq "the stalling meter timed out" "timeout" "$(q "$dsn" "SELECT string_agg(DISTINCT outcome, ',') FROM session_log s
	JOIN meter m ON m.id = s.meter_id WHERE m.serial = '$stall'")"
expect_match "corrupted ciphered answers refused (outcome auth or protocol)" "[1-9]" "$(q "$dsn" "
	SELECT count(*) FROM session_log s JOIN meter m ON m.id = s.meter_id
	WHERE m.security = 'hls-gmac' AND s.outcome IN ('auth', 'protocol', 'timeout', 'aborted')")"
clean_round "wrapper"
ammd_term || fail "ammd exit status $?"
kill "$sim_pid"; wait "$sim_pid" 2>/dev/null

# ---- B: HDLC fleet ------------------------------------------------------------------

setup hdlc 32 20 hdlc
simctl fault "corrupt=0.01,drop=0.02" >/dev/null || fail "ctl fault"
ok "faults set on the HDLC fleet: corrupt 1 % of all bytes, drop 2 %"
ammd_start
faulty_rounds 3 "HDLC under faults"
[ "$(fired corrupt)" -ge 100 ] || fail "few bytes corrupted ($(fired corrupt))"
ok "HDLC: $(fired corrupt) bytes corrupted, every stored row true (checked above)"
clean_round "HDLC"
ammd_term || fail "ammd exit status $?"
kill "$sim_pid"; wait "$sim_pid" 2>/dev/null
exit 0
