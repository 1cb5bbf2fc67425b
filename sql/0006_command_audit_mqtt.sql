-- 0006_command_audit_mqtt.sql: the audit names the MQTT client a command
-- was queued for (issue 7).
--
-- command_audit.actor is the database login (session_user), so a command
-- ammd queued for an MQTT request was audited as ammd's own login only;
-- who asked was in command.created_by ("mqtt:<client>", or
-- "mqtt:request:<request id>" from the shared topic) and nowhere in the
-- audit.  The insert's audit row now carries it in `note` whenever the
-- command was created_by someone other than the login that inserted it.

SET LOCAL client_min_messages = warning;

CREATE OR REPLACE FUNCTION command_after_change() RETURNS trigger LANGUAGE plpgsql
	SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		INSERT INTO command_audit (command_id, meter_id, actor, old_state, new_state, note)
			VALUES (NEW.id, NEW.meter_id, session_user, NULL, NEW.state,
				CASE WHEN NEW.created_by IS DISTINCT FROM session_user
				     THEN 'for ' || NEW.created_by END);
		-- ammd LISTENs on this channel; the payload is the command id.
		PERFORM pg_notify('ammd_command', NEW.id::text);
	ELSIF NEW.state IS DISTINCT FROM OLD.state THEN
		INSERT INTO command_audit (command_id, meter_id, actor, old_state, new_state, note)
			VALUES (NEW.id, NEW.meter_id, session_user, OLD.state, NEW.state, NEW.error);
	END IF;
	RETURN NULL;
END $$;
