#!/bin/bash
# t_lease.sh: several ammd instances share the fleet through leases
# (ammd_claim_meters, DESIGN §8): concurrent claims never overlap, a lease
# that runs out is taken over, disabled and not-yet-due meters are skipped,
# and queued commands are claimed once (FOR UPDATE SKIP LOCKED).
. "$(dirname "$0")/lib.sh"

dsn=$(pg_newdb amm_lease)
"$AMMCTL" db migrate --dsn "$dsn" >/dev/null || fail "migrate"
q "$dsn" "INSERT INTO meter (serial, transport, host) SELECT 'L' || i, 'tcpip', 'h' FROM generate_series(1, 300) i" >/dev/null

# Three instances claim at once, in batches, until nothing is left.
work=$(mktemp -d)
lib_cleanup_add rm -rf "$work"
for i in 1 2 3; do
	psql "$dsn" -X -q -At -v ON_ERROR_STOP=1 \
		-c "SELECT ammd_claim_meters('i$i', 40, '10 minutes')" \
		-c "SELECT ammd_claim_meters('i$i', 40, '10 minutes')" \
		-c "SELECT ammd_claim_meters('i$i', 40, '10 minutes')" >"$work/i$i" &
done
wait
expect_eq "three concurrent instances claimed 300 meters together" "300" "$(cat "$work"/i? | wc -l)"
expect_eq "... each exactly once" "300" "$(cat "$work"/i? | sort -u | wc -l)"
expect_eq "the table agrees" "300" "$(q "$dsn" "SELECT count(*) FROM meter WHERE leased_by IN ('i1', 'i2', 'i3')")"
expect_eq "nothing left for a fourth" "0" "$(q "$dsn" "SELECT count(*) FROM ammd_claim_meters('i4', 1000)")"

# i1 dies: its leases run out and i4 takes its meters over.
q "$dsn" "UPDATE meter SET lease_until = now() - interval '1 second' WHERE leased_by = 'i1'" >/dev/null
n1=$(q "$dsn" "SELECT count(*) FROM meter WHERE leased_by = 'i1'")
expect_eq "expired leases are taken over" "$n1" "$(q "$dsn" "SELECT count(*) FROM ammd_claim_meters('i4', 1000)")"
expect_eq "... and only those" "0" "$(q "$dsn" "SELECT count(*) FROM meter WHERE leased_by = 'i1'")"

# Disabled and not-yet-due meters are not claimed.
q "$dsn" "UPDATE meter SET lease_until = NULL, leased_by = NULL" >/dev/null
q "$dsn" "UPDATE meter SET enabled = false WHERE serial IN ('L1', 'L2')" >/dev/null
q "$dsn" "UPDATE meter SET next_due_at = now() + interval '1 hour' WHERE serial = 'L3'" >/dev/null
expect_eq "disabled and future meters are skipped" "297" "$(q "$dsn" "SELECT count(*) FROM ammd_claim_meters('i5', 1000)")"
expect_eq "a second claim by the same instance returns nothing new" "0" "$(q "$dsn" "SELECT count(*) FROM ammd_claim_meters('i5', 1000)")"
q "$dsn" "UPDATE meter SET lease_until = now() + interval '1 second' WHERE serial = 'L4'" >/dev/null
expect_eq "an instance renews its live leases" "297" "$(q "$dsn" "SELECT ammd_renew_leases('i5', '10 minutes')")"
expect_eq "... to the new expiry" "0" "$(q "$dsn" "SELECT count(*) FROM meter WHERE leased_by = 'i5' AND lease_until < now() + interval '9 minutes'")"

# Commands: two executors claiming at once never take the same one.
q "$dsn" "INSERT INTO command (meter_id, kind) SELECT id, 'clock_sync' FROM meter" >/dev/null
claim="UPDATE command SET state = 'running', claimed_by = :'who', started_at = now(), attempts = attempts + 1
	WHERE id IN (SELECT id FROM command WHERE state = 'queued' AND not_before <= now()
	             ORDER BY priority DESC, id LIMIT 50 FOR UPDATE SKIP LOCKED) RETURNING id"
for i in 1 2 3 4; do
	for _ in 1 2; do echo "$claim;"; done | psql "$dsn" -X -q -At -v ON_ERROR_STOP=1 -v who="x$i" >"$work/c$i" &
done
wait
expect_eq "four executors claimed 300 commands together" "300" "$(cat "$work"/c? | wc -l)"
expect_eq "... none twice" "300" "$(cat "$work"/c? | sort -u | wc -l)"
expect_eq "the audit trail has one queued->running per command" "300" \
	"$(q "$dsn" "SELECT count(DISTINCT command_id) FROM command_audit WHERE old_state = 'queued' AND new_state = 'running'")"
exit 0
