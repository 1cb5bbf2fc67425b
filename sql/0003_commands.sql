-- 0003_commands.sql: the operator command queue's server side (issue 7).
--
--  * ammd_command_submit(): queue one command kind for many meters by
--    serial, merging a command identical to one still pending (same meter,
--    kind and parameters, queued or running) instead of queuing it twice,
--    and answering a repeated credit_add transaction id with the command it
--    already made (exactly once per operator transaction).
--  * ammd_command_claim(): what an ammd instance runs to take commands,
--    with the fleet-wide per-minute caps of its [commands] section enforced
--    here, from the command table itself: a kind's group may have had at
--    most `cap` commands started in any sliding minute, across restarts and
--    across every instance (the count and the claim are serialised per
--    group by an advisory lock, so two instances cannot both use the last
--    slot).  One command per meter runs at a time, oldest first.
--  * a running command whose instance died (its lease ran out) is queued
--    again by the next claim; its `progress` (the credit_add baseline)
--    stays, which is what makes the retry safe (daemon/cmd_kinds.c).
--  * commands queued by ammd on behalf of an MQTT client keep the client
--    id as created_by ("mqtt:<client id>"); everyone else is recorded as
--    the database login, as before.

SET LOCAL client_min_messages = warning;

ALTER TABLE command
	ADD COLUMN progress    jsonb,        -- checkpoint of a running command (credit_add baseline)
	ADD COLUMN lease_until timestamptz,  -- running: the claiming instance renews or loses it
	ADD COLUMN request_id  text;         -- MQTT CommandRequest id, echoed in the result

CREATE INDEX command_running_idx ON command (lease_until) WHERE state = 'running';
CREATE INDEX command_started_idx ON command (kind, started_at) WHERE started_at IS NOT NULL;
CREATE INDEX command_pending_idx ON command (meter_id, kind) WHERE state IN ('queued', 'running');

CREATE OR REPLACE FUNCTION command_before_insert() RETURNS trigger LANGUAGE plpgsql
	SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
	cap integer;
	n   bigint;
BEGIN
	SELECT per_hour INTO cap FROM command_rate_cap WHERE kind = NEW.kind;
	IF cap IS NOT NULL THEN
		PERFORM pg_advisory_xact_lock(hashtext('ammd_command_cap:' || NEW.kind));
		SELECT count(*) INTO n FROM command
			WHERE kind = NEW.kind AND created_at > now() - interval '1 hour';
		IF n >= cap THEN
			RAISE EXCEPTION 'command: rate cap for % reached (% per hour)', NEW.kind, cap
				USING ERRCODE = 'program_limit_exceeded';
		END IF;
	END IF;
	-- Only the daemon may name someone else (the MQTT client it heard).
	IF NOT (NEW.created_by LIKE 'mqtt:%' AND pg_has_role(session_user, 'ammd', 'MEMBER')) THEN
		NEW.created_by := session_user;
	END IF;
	RETURN NEW;
END $$;

-- Queues `kind` with `params` for every meter in `serials`.  Returns one
-- row per meter: the command id and whether an existing command was reused.
-- Unknown serials fail the whole call (nothing is queued).  SECURITY
-- DEFINER because merging extends the kept command's expiry, which an
-- operator may not UPDATE directly; the audit still names the login
-- (session_user).
CREATE FUNCTION ammd_command_submit(serials text[], kind text, params jsonb DEFAULT '{}',
	expires_at timestamptz DEFAULT NULL, idempotency_key text DEFAULT NULL,
	priority smallint DEFAULT 0, created_by text DEFAULT NULL, request_id text DEFAULT NULL)
	RETURNS TABLE (command_id bigint, serial text, merged boolean)
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
	unknown text;
	m record;
	c record;
BEGIN
	SELECT string_agg(s, ', ') INTO unknown
		FROM unnest(serials) s WHERE NOT EXISTS (SELECT FROM meter WHERE meter.serial = s);
	IF unknown IS NOT NULL THEN
		RAISE EXCEPTION 'unknown meter: %', unknown USING ERRCODE = 'no_data_found';
	END IF;
	FOR m IN SELECT DISTINCT ON (mt.id) mt.id, mt.serial FROM meter mt
			WHERE mt.serial = ANY (serials) ORDER BY mt.id LOOP
		-- Two operators submitting the same thing at once merge too.
		PERFORM pg_advisory_xact_lock(hashtext('ammd_command_merge:' || m.id || ':' || kind));
		IF idempotency_key IS NOT NULL THEN
			SELECT cm.id, cm.params INTO c FROM command cm
				WHERE cm.meter_id = m.id AND cm.kind = ammd_command_submit.kind
				  AND cm.idempotency_key = ammd_command_submit.idempotency_key;
			IF FOUND THEN
				IF c.params IS DISTINCT FROM ammd_command_submit.params THEN
					RAISE EXCEPTION 'meter %: % transaction id % was already used with other parameters (command %)',
						m.serial, kind, idempotency_key, c.id USING ERRCODE = 'unique_violation';
				END IF;
				command_id := c.id; serial := m.serial; merged := true;
				RETURN NEXT;
				CONTINUE;
			END IF;
		ELSE
			SELECT cm.id INTO c FROM command cm
				WHERE cm.meter_id = m.id AND cm.kind = ammd_command_submit.kind
				  AND cm.state IN ('queued', 'running') AND cm.idempotency_key IS NULL
				  AND cm.params = ammd_command_submit.params
				ORDER BY cm.id LIMIT 1;
			IF FOUND THEN
				-- The merged command lives as long as the later of the two asked.
				UPDATE command SET expires_at = greatest(command.expires_at, ammd_command_submit.expires_at)
					WHERE command.id = c.id AND ammd_command_submit.expires_at IS NOT NULL
					  AND command.state = 'queued';
				command_id := c.id; serial := m.serial; merged := true;
				RETURN NEXT;
				CONTINUE;
			END IF;
		END IF;
		INSERT INTO command (meter_id, kind, params, expires_at, idempotency_key, priority,
			created_by, request_id)
			VALUES (m.id, kind, params, coalesce(expires_at, now() + interval '1 day'),
				idempotency_key, priority, coalesce(created_by, session_user), request_id)
			RETURNING command.id INTO command_id;
		serial := m.serial; merged := false;
		RETURN NEXT;
	END LOOP;
END $$;

-- Claims up to `n` due commands for `instance`.  kinds[i] belongs to cap
-- group groups[i] whose per-minute cap is caps[i] (0: the kind is not run
-- at all); kinds not listed are left alone.  meters: only those meters
-- (NULL: any); transports: only meters of these transports (NULL: any):
-- ammd claims for always-on meters at once and for GPRS meters when they
-- connect.  Returns the claimed rows.
CREATE FUNCTION ammd_command_claim(instance text, kinds text[], groups text[], caps integer[],
	n integer, lease interval DEFAULT '5 minutes', meters integer[] DEFAULT NULL,
	transports text[] DEFAULT NULL)
	RETURNS SETOF command LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
	g record;
	used bigint;
	left_n integer := n;
	got integer;
BEGIN
	-- Commands of an instance that stopped renewing: run them again
	-- (attempts counts them; the expiry pass fails those with none left).
	UPDATE command SET state = 'queued', claimed_by = NULL, lease_until = NULL
		WHERE state = 'running' AND lease_until < now() AND attempts < max_attempts;
	FOR g IN SELECT grp, min(cap) AS cap, array_agg(k) AS ks
			FROM unnest(kinds, groups, caps) AS t(k, grp, cap)
			GROUP BY grp ORDER BY grp LOOP
		EXIT WHEN left_n <= 0;
		CONTINUE WHEN g.cap <= 0;
		PERFORM pg_advisory_xact_lock(hashtext('ammd_command_rate:' || g.grp));
		SELECT count(*) INTO used FROM command
			WHERE kind = ANY (g.ks) AND started_at > now() - interval '1 minute';
		CONTINUE WHEN used >= g.cap;
		RETURN QUERY
		UPDATE command c SET state = 'running', claimed_by = instance, started_at = now(),
			attempts = c.attempts + 1, lease_until = now() + lease
		WHERE c.id IN (
			SELECT q.id FROM command q
			WHERE q.state = 'queued' AND q.kind = ANY (g.ks)
			  AND q.not_before <= now() AND q.expires_at > now()
			  AND (meters IS NULL OR q.meter_id = ANY (meters))
			  AND (transports IS NULL OR EXISTS (SELECT FROM meter mt
				WHERE mt.id = q.meter_id AND mt.transport = ANY (transports)))
			  AND NOT EXISTS (SELECT FROM command o WHERE o.meter_id = q.meter_id
				AND (o.state = 'running' OR (o.state = 'queued' AND o.id < q.id
				     AND o.expires_at > now())))
			ORDER BY q.priority DESC, q.id
			LIMIT least(left_n, g.cap - used)
			FOR UPDATE SKIP LOCKED)
		RETURNING c.*;
		GET DIAGNOSTICS got = ROW_COUNT;
		left_n := left_n - got;
	END LOOP;
END $$;

-- Extends the leases of an instance's running commands (its heartbeat).
CREATE FUNCTION ammd_command_renew(instance text, lease interval DEFAULT '5 minutes')
	RETURNS integer LANGUAGE sql SET search_path = public, pg_temp AS $$
	WITH r AS (UPDATE command SET lease_until = now() + lease
		WHERE state = 'running' AND claimed_by = instance RETURNING 1)
	SELECT count(*)::integer FROM r;
$$;

-- How fast each kind is being started, next to the caps (dashboards,
-- `ammctl cmd list --rates`).
CREATE VIEW command_rate AS
SELECT kind,
       count(*) FILTER (WHERE started_at > now() - interval '1 minute') AS started_last_minute,
       count(*) FILTER (WHERE started_at > now() - interval '1 hour') AS started_last_hour,
       count(*) FILTER (WHERE state = 'queued') AS queued,
       count(*) FILTER (WHERE state = 'running') AS running
FROM command GROUP BY kind;

REVOKE EXECUTE ON FUNCTION ammd_command_submit(text[], text, jsonb, timestamptz, text, smallint, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ammd_command_claim(text, text[], text[], integer[], integer, interval, integer[], text[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ammd_command_renew(text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ammd_command_submit(text[], text, jsonb, timestamptz, text, smallint, text, text)
	TO ammd, ammd_operator;
GRANT EXECUTE ON FUNCTION ammd_command_claim(text, text[], text[], integer[], integer, interval, integer[], text[]),
	ammd_command_renew(text, interval) TO ammd;
GRANT SELECT ON command_rate TO ammd, ammd_operator, ammd_reader;
