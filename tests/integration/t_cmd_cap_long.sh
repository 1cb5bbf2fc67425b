#!/bin/bash
# t_cmd_cap_long.sh (AMM_LONG=1 only; ten minutes): 1,000 disconnects for
# 1,000 meters under [commands] disconnect_per_minute = 100.  All of them
# run, verified; no sliding minute ever has more than 100 started (counted
# from command.started_at, where the cap is enforced); prints the measured
# maximum per sliding minute, of starts and of finishes.
# t_cmd_safety.sh has the short variant (150 under the same cap).
. "$(dirname "$0")/lib.sh"

if [ "${AMM_LONG:-0}" != 1 ]; then
	echo "  skipped: set AMM_LONG=1 (runs about ten minutes)"
	exit 0
fi
N=1000
SEED=44
work=$(mktemp -d)
lib_cleanup_add rm -rf "$work"
. "$(dirname "$0")/cmd_lib.sh"
CMD_CONC=50
CMD_CONF="[commands]
disconnect_per_minute = 100
default_expiry_s = 3600"
cmd_setup amm_cmd_cap_long
cmd_ammd_start

t0=$(date +%s)
"$AMMCTL" cmd disconnect "${S[@]}" --confirm --expires 1h --dsn "$dsn" >/dev/null || fail "queue 1,000 disconnects"
ok "1,000 disconnects queued"
done_n=0
for _ in $(seq 1 1500); do
	done_n=$(q "$dsn" "SELECT count(*) FROM command WHERE kind = 'disconnect' AND state = 'succeeded'")
	[ "$done_n" = 1000 ] && break
	sleep 0.5
done
t1=$(date +%s)
expect_eq "all 1,000 succeeded" "1000" "$done_n"
max=$(q "$dsn" "SELECT max((SELECT count(*) FROM command d WHERE d.kind = 'disconnect'
	AND d.started_at >= c.started_at AND d.started_at < c.started_at + interval '1 minute'))
	FROM command c WHERE c.kind = 'disconnect'")
[ "$max" -le 100 ] || fail "$max disconnects started within one sliding minute"
ok "at most $max disconnects started in any sliding minute ($((t1 - t0)) s for 1,000)"
fmax=$(q "$dsn" "SELECT max((SELECT count(*) FROM command d WHERE d.kind = 'disconnect'
	AND d.finished_at >= c.started_at AND d.finished_at < c.started_at + interval '1 minute'))
	FROM command c WHERE c.kind = 'disconnect'")
# The cap is enforced on starts (claims); a batch started late in one
# minute can finish next to the following minute's, so finishes may bunch
# (measured: up to 141 in a sliding minute).  Reported, not asserted.
echo "  (finishes: at most $fmax in any sliding minute)"
expect_eq "the meters agree: 1,000 breakers open" "1000" \
	"$(ctl list 0 $N | grep -c ' disconnected$')"
cmd_ammd_term || fail "ammd exit status"
exit 0
