-- 0005_command_actions.sql: the fleet-wide command caps hold on what is
-- sent to meters (issue 7).
--
-- 0003 capped the starts of commands.  A disconnect's ACTION goes out some
-- variable time after its start (the state is read first), so starts spread
-- evenly could still bunch into more ACTIONs than the cap in one sliding
-- minute.  Now:
--
--  * command_action has one row per state-changing step sent (the first
--    SET or ACTION of an attempt; a command's few SETs, e.g. a calendar's,
--    go together under that one slot), with the time it was allowed out.
--    command.acted_at is the latest of them for that command.
--  * ammd_command_act() is the slot: ammd calls it immediately before the
--    step is sent and sends only when it answered 1.  Under the group's
--    advisory lock it counts the group's actions in the sliding minute and
--    refuses (0) when the cap is reached, so several ammd on one database
--    and restarts cannot exceed it.  The same statement stores the run's
--    checkpoint (the credit_add baseline), so a slot is never taken for a
--    run whose checkpoint was not stored.
--  * ammd_command_claim() reserves slots: it claims for a group only while
--    the group's actions in the last minute plus its running commands that
--    have not acted yet in their attempt stay under the cap.  That sum never
--    grows between two claims (an action moves a command from one term to
--    the other, and the minute only drops actions), so a claimed command
--    finds its slot free when it gets to act, and commands do not wait in
--    their meters' associations for slots in normal operation; the check in
--    ammd_command_act() is what makes it hold whatever happens (a re-run
--    after a crash, instances configured with different caps).  read_now
--    sends nothing that changes a meter and is still capped on its starts.
--  * the command_rate view shows actions per minute and hour next to the
--    starts.

SET LOCAL client_min_messages = warning;

ALTER TABLE command ADD COLUMN acted_at timestamptz; -- last state-changing step allowed out

CREATE TABLE command_action (
	id         bigserial PRIMARY KEY,
	command_id bigint NOT NULL,
	kind       text NOT NULL,
	instance   text NOT NULL,
	attempt    integer NOT NULL,
	acted_at   timestamptz NOT NULL
);
CREATE INDEX command_action_kind_idx ON command_action (kind, acted_at);
CREATE INDEX command_action_cmd_idx ON command_action (command_id);

-- Takes the action slot of command `cmd` (running, claimed by `instance`)
-- in cap group `grp` (kinds `kinds`, at most `cap` actions in any sliding
-- minute; cap <= 0: no cap) and stores `progress` (NULL: keep it).
-- Returns 1 (send now), 0 (the minute is full: ask again later) or -1 (the
-- command is no longer ours: do not send).
CREATE FUNCTION ammd_command_act(cmd bigint, instance text, progress jsonb, grp text,
	kinds text[], cap integer) RETURNS integer
	LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
	c record;
	used bigint;
	t timestamptz;
BEGIN
	SELECT cm.kind, cm.attempts INTO c FROM command cm
		WHERE cm.id = cmd AND cm.state = 'running' AND cm.claimed_by = instance FOR UPDATE;
	IF NOT FOUND THEN
		RETURN -1;
	END IF;
	IF cap > 0 THEN
		PERFORM pg_advisory_xact_lock(hashtext('ammd_command_rate:' || grp));
		-- after the lock: the clock, not the transaction's start, so the
		-- window counts everything committed before us
		t := clock_timestamp();
		SELECT count(*) INTO used FROM command_action a
			WHERE a.kind = ANY (kinds) AND a.acted_at > t - interval '1 minute';
		IF used >= cap THEN
			RETURN 0;
		END IF;
	ELSE
		t := clock_timestamp();
	END IF;
	INSERT INTO command_action (command_id, kind, instance, attempt, acted_at)
		VALUES (cmd, c.kind, instance, c.attempts, t);
	UPDATE command SET acted_at = t, progress = coalesce(ammd_command_act.progress, command.progress)
		WHERE id = cmd;
	RETURN 1;
END $$;

-- As in 0003, with the caps of acting kinds counted on actions plus the
-- running commands that may still act (see the top of this file).
CREATE OR REPLACE FUNCTION ammd_command_claim(instance text, kinds text[], groups text[],
	caps integer[], n integer, lease interval DEFAULT '5 minutes', meters integer[] DEFAULT NULL,
	transports text[] DEFAULT NULL)
	RETURNS SETOF command LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
	g record;
	used bigint;
	left_n integer := n;
	got integer;
BEGIN
	UPDATE command SET state = 'queued', claimed_by = NULL, lease_until = NULL
		WHERE state = 'running' AND lease_until < now() AND attempts < max_attempts;
	FOR g IN SELECT grp, min(cap) AS cap, array_agg(k) AS ks
			FROM unnest(kinds, groups, caps) AS t(k, grp, cap)
			GROUP BY grp ORDER BY grp LOOP
		EXIT WHEN left_n <= 0;
		CONTINUE WHEN g.cap <= 0;
		PERFORM pg_advisory_xact_lock(hashtext('ammd_command_rate:' || g.grp));
		SELECT (SELECT count(*) FROM command_action a
				WHERE a.kind = ANY (g.ks) AND a.kind <> 'read_now'
				  AND a.acted_at > clock_timestamp() - interval '1 minute')
		     + (SELECT count(*) FROM command r
				WHERE r.state = 'running' AND r.kind = ANY (g.ks) AND r.kind <> 'read_now'
				  AND (r.acted_at IS NULL OR r.acted_at < r.started_at))
		     + (SELECT count(*) FROM command s
				WHERE s.kind = ANY (g.ks) AND s.kind = 'read_now'
				  AND s.started_at > now() - interval '1 minute')
			INTO used;
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

DROP VIEW command_rate;
CREATE VIEW command_rate AS
SELECT k.kind,
       (SELECT count(*) FROM command_action a
		WHERE a.kind = k.kind AND a.acted_at > now() - interval '1 minute') AS acted_last_minute,
       (SELECT count(*) FROM command_action a
		WHERE a.kind = k.kind AND a.acted_at > now() - interval '1 hour') AS acted_last_hour,
       k.started_last_minute, k.started_last_hour, k.queued, k.running
FROM (SELECT kind,
	     count(*) FILTER (WHERE started_at > now() - interval '1 minute') AS started_last_minute,
	     count(*) FILTER (WHERE started_at > now() - interval '1 hour') AS started_last_hour,
	     count(*) FILTER (WHERE state = 'queued') AS queued,
	     count(*) FILTER (WHERE state = 'running') AS running
      FROM command GROUP BY kind) k;

REVOKE EXECUTE ON FUNCTION ammd_command_act(bigint, text, jsonb, text, text[], integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ammd_command_act(bigint, text, jsonb, text, text[], integer) TO ammd;
GRANT SELECT, INSERT ON command_action TO ammd;
GRANT USAGE, SELECT ON SEQUENCE command_action_id_seq TO ammd;
GRANT SELECT ON command_action TO ammd_operator, ammd_reader;
GRANT SELECT ON command_rate TO ammd, ammd_operator, ammd_reader;
