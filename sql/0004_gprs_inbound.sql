-- 0004_gprs_inbound.sql: GPRS meters without an APN address are never
-- dialled: they are read when they connect to the listener (drivers/gprs,
-- daemon/gprs_inbound.c leases them by serial then).  The scheduler's claim
-- leaves them alone, so that a due inbound fleet neither takes lease slots
-- from meters that can be dialled nor is leased away from the listener.
CREATE OR REPLACE FUNCTION ammd_claim_meters(instance text, n integer, lease interval DEFAULT '5 minutes')
	RETURNS SETOF integer LANGUAGE sql AS $$
	UPDATE meter m SET leased_by = instance, lease_until = now() + lease
	FROM (SELECT id FROM meter
		WHERE enabled
		  AND (next_due_at IS NULL OR next_due_at <= now())
		  AND (lease_until IS NULL OR lease_until < now())
		  AND NOT (transport = 'gprs' AND host IS NULL)
		ORDER BY next_due_at NULLS FIRST, id
		LIMIT n
		FOR UPDATE SKIP LOCKED) c
	WHERE m.id = c.id
	RETURNING m.id;
$$;

