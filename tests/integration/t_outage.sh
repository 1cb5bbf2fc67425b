#!/bin/bash
# t_outage.sh: PostgreSQL and the broker each go away for 30 s in the
# middle of a round; nothing is lost and ammd recovers by itself.
#
# A PostgreSQL cluster and a broker of this test's own (they are stopped
# and started again, so the run's shared ones cannot be used; the broker
# keeps a persistence file so a persistent subscriber session survives its
# restart).  600 simulated meters answering each request 40 ms late
# (metersim --faults delay=40) at concurrency 10, so the round lasts well
# over a minute and both outages fall inside it.  ammd publishes protobuf
# with QoS 1; a trigger of the test logs every outbox row committed (a
# rolled-back batch logs nothing), and `mosquitto_sub -c -q 1` records what
# arrives (topic, payload in hex).
#   1. Some sessions done: PostgreSQL is stopped (fast shutdown) for 30 s.
#      /healthz answers 503 during the outage, then 200 again without any
#      help; the round goes on.
#   2. Right after: the broker is stopped for 30 s (and until /healthz says
#      503: the mqtt check fails after 30 s without a broker), then
#      started on the same port; /healthz is 200 again.
#   3. At the end: every meter read once ok, the database equals
#      `metersim expect` exactly (collect.sh's compare), the outbox is
#      empty, every committed outbox message arrived (distinct topic and
#      payload on the subscriber = distinct rows logged), ammd is the same
#      process throughout and exits 0 on SIGTERM.
. "$(dirname "$0")/lib.sh"

N=${OUTAGE_METERS:-600}
SEED=31
START=2024-03-01T00:00:00Z
START_S=$(date -u -d "$START" +%s)
DAYS=1
CONC=10
OUTAGE=${OUTAGE_SECONDS:-30}
command -v mosquitto_sub >/dev/null || fail "no mosquitto_sub (apt-get install mosquitto-clients)"
. "$(dirname "$0")/collect.sh"
collect_progs

work=$(mktemp -d)
chmod 755 "$work"
[ -n "${KEEP_WORK:-}" ] && echo "work: $work" || lib_cleanup_add rm -rf "$work"
cp "$METERSIM" "$work/metersim" && cp "$AMMD" "$work/ammd" && cp "$AMMCTL" "$work/ammctl" ||
	fail "copying the programs"
METERSIM=$work/metersim
AMMD=$work/ammd
AMMCTL=$work/ammctl
fleet=(--count "$N" --seed "$SEED" --origin "$START")

# ---- services of our own -------------------------------------------------------

pg_start # always private: this test stops it
pg_stop_now() { _as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 30 stop >/dev/null; }
pg_start_again() {
	_as_pg "$PGBIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start >/dev/null ||
		{ tail "$PG_DIR/server.log" >&2; fail "postgres did not start again"; }
}

B_DIR=$work/broker
mkdir "$B_DIR"
[ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1 && chown mosquitto: "$B_DIR"
B_PORT=$(free_port)
B_PID=
cat >"$B_DIR/mosquitto.conf" <<EOF
listener $B_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $B_DIR/
autosave_interval 1
max_queued_messages 1000000
max_inflight_messages 0
log_dest stderr
log_type error
log_type warning
EOF
B_LOG=$work/mosquitto.log # lib.sh's broker_start and broker_stop (a clean stop) run it
lib_cleanup_add broker_stop
broker_start

# The subscriber: a persistent session (the broker queues for it while it
# is away), restarted after the broker's restart.
sub_pid=
sub_start() {
	mosquitto_sub -h 127.0.0.1 -p "$B_PORT" -q 1 -c -i t-outage-sub -t 't/outage/#' -F '%t %x' \
		>>"$work/sub.txt" 2>>"$work/sub.err" &
	sub_pid=$!
	lib_cleanup_add kill "$sub_pid"
}
sub_stop() { [ -n "$sub_pid" ] && { kill "$sub_pid" 2>/dev/null; wait "$sub_pid" 2>/dev/null; sub_pid=; }; return 0; }
sub_start

# ---- the fleet and the database ------------------------------------------------------

BASE=$(port_block "$N")
"$METERSIM" export "${fleet[@]}" --base-port "$BASE" >"$work/m.csv" || fail "metersim export"
dsn=$(pg_newdb amm_outage)
"$AMMCTL" db migrate --dsn "$dsn" >/dev/null || fail "migrate"
"$AMMCTL" meter import --dsn "$dsn" "$work/m.csv" >/dev/null || fail "import"
psql "$dsn" -X -q -v ON_ERROR_STOP=1 <<'EOF' >/dev/null || fail "outbox log trigger"
CREATE TABLE outbox_log (topic text, payload bytea);
CREATE FUNCTION outbox_log_row() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO outbox_log VALUES (NEW.topic, NEW.payload); RETURN NEW; END $$;
CREATE TRIGGER outbox_log AFTER INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION outbox_log_row();
EOF
fleet+=(--faults delay=40) # serve only: expect knows no faults
sim_start "$START"
fleet=(--count "$N" --seed "$SEED" --origin "$START")
HTTP_PORT=$(free_port)
HTTP_LISTEN=127.0.0.1:$HTTP_PORT conf "$dsn"
cat >>"$work/ammd.conf" <<EOF
[mqtt]
enabled = yes
host = 127.0.0.1
port = $B_PORT
prefix = t/outage
qos = 1
EOF

# healthz: the HTTP status code of /healthz (000 when no answer).
healthz() { curl -s -o "$work/health.json" -w '%{http_code}' --max-time 3 "http://127.0.0.1:$HTTP_PORT/healthz"; }
sessions() { curl -s --max-time 3 "http://127.0.0.1:$HTTP_PORT/metrics" |
	awk '/^ammd_sessions_total/ { s += $NF } END { print s + 0 }'; }

# watch SECS: /healthz once a second for SECS s; prints the codes seen.
watch_health() {
	local codes=" " c
	for _ in $(seq 1 "$1"); do
		c=$(healthz)
		case $codes in *" $c "*) ;; *) codes="$codes$c " ;; esac
		sleep 1
	done
	echo "$codes"
}
# until_healthy SECS: wait for a 200.
until_healthy() {
	local i=0
	until [ "$(healthz)" = 200 ]; do
		sleep 0.5
		i=$((i + 1))
		[ $i -gt $(($1 * 2)) ] && { cat "$work/health.json" >&2; tail -20 "$work/ammd.log" >&2; return 1; }
	done
	return 0
}

t0=$(date +%s)
ammd_start
pid0=$ammd_pid
until_healthy 20 || fail "ammd not healthy at start"
i=0
until [ "$(sessions)" -ge 30 ]; do
	sleep 0.2
	i=$((i + 1))
	[ $i -gt 300 ] && fail "no sessions within 60 s"
done

# ---- 1. PostgreSQL away for 30 s --------------------------------------------------------

before=$(sessions)
pg_stop_now || fail "postgres did not stop"
echo "  postgres stopped at +$(($(date +%s) - t0)) s, after $before sessions"
codes=$(watch_health "$OUTAGE")
expect_match "healthz 503 while postgres is down (codes seen:$codes)" " 503 " "$codes"
grep -o '"database":{[^}]*}' "$work/health.json" | head -1 | sed 's/^/  /'
pg_start_again
until_healthy 60 || fail "healthz not 200 within 60 s of postgres coming back"
ok "healthz 200 again $(($(date +%s) - t0)) s into the run, postgres back"
kill -0 "$ammd_pid" || fail "ammd died during the database outage"
i=0
until [ "$(q "$dsn" "SELECT count(*) FROM session_log")" -gt 0 ] &&
	[ "$(sessions)" -gt $((before + 10)) ]; do
	sleep 0.5
	i=$((i + 1))
	[ $i -gt 120 ] && fail "the round does not go on after the database outage"
done
ok "the round goes on ($(sessions) sessions)"
[ "$(q "$dsn" "SELECT count(*) FROM meter WHERE next_due_at IS NULL OR next_due_at <= now()")" -gt 0 ] ||
	fail "the round ended before the broker outage: make it longer"

# ---- 2. the broker away for 30 s ----------------------------------------------------------

sub_stop
broker_stop
echo "  broker stopped at +$(($(date +%s) - t0)) s"
codes=$(watch_health "$OUTAGE")
# the mqtt check fails once the broker has been gone for more than 30 s
i=0
until [ "$(healthz)" = 503 ]; do
	sleep 0.5
	i=$((i + 1))
	[ $i -gt 30 ] && { cat "$work/health.json" >&2; fail "healthz not 503 after the broker was gone for $((OUTAGE + 15)) s"; }
done
ok "healthz 503 with the broker gone for over 30 s: $(grep -o '"mqtt":{[^}]*}' "$work/health.json")"
broker_start
sub_start
echo "  broker back at +$(($(date +%s) - t0)) s"
until_healthy 60 || fail "healthz not 200 within 60 s of the broker coming back"
ok "healthz 200 again with the broker back"

# ---- 3. the end of the round: nothing lost ---------------------------------------------

round_wait "$dsn" 400
i=0
until [ "$(q "$dsn" "SELECT count(*) FROM outbox")" = 0 ]; do
	sleep 0.5
	i=$((i + 1))
	[ $i -gt 240 ] && fail "outbox not empty 120 s after the round"
done
ok "round done at +$(($(date +%s) - t0)) s, outbox empty"
[ "$ammd_pid" = "$pid0" ] && kill -0 "$ammd_pid" || fail "ammd is not the process that started"
ok "the same ammd process throughout (no restart)"
expect_eq "every meter read ok" "$N" "$(q "$dsn" "SELECT count(DISTINCT meter_id) FROM session_log WHERE outcome = 'ok'")"
echo "  sessions by outcome: $(q "$dsn" "SELECT string_agg(outcome || ' ' || n, ', ') FROM (SELECT outcome, count(*) n FROM session_log GROUP BY 1) x")"
expect_load "$dsn" "$(iso $((START_S - DAYS * 86400 - 86400)))" "$(iso $((START_S + 3600)))" "$START"
compare "$dsn" "$(iso $((START_S - DAYS * 86400 + 3600)))" "$(iso $((START_S - 3600)))"

logged=$(q "$dsn" "SELECT count(*) FROM (SELECT DISTINCT topic, payload FROM outbox_log) x")
[ "$logged" -gt "$N" ] || fail "only $logged outbox rows logged"
q "$dsn" "SELECT DISTINCT topic || ' ' || encode(payload, 'hex') FROM outbox_log" | sort >"$work/want.txt"
i=0
while :; do
	sort -u "$work/sub.txt" >"$work/got.txt"
	missing=$(comm -23 "$work/want.txt" "$work/got.txt" | wc -l)
	[ "$missing" = 0 ] && break
	sleep 1
	i=$((i + 1))
	[ $i -gt 60 ] && break
done
expect_eq "every committed outbox message arrived ($logged distinct)" "0" "$missing"
expect_eq "nothing arrived that was not committed" "0" "$(comm -13 "$work/want.txt" "$work/got.txt" | wc -l)"
echo "  $(wc -l <"$work/sub.txt") messages received, $(wc -l <"$work/got.txt") distinct"
grep -E 'database|postgres|mqtt|broker' "$work/ammd.log" | grep -v '^<7>' | head -8 | sed 's/^/  log: /'
ammd_term || fail "ammd exit status $?"
ok "SIGTERM: exit 0"
sub_stop
sim_stop
