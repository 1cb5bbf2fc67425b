-- 0002_roles.sql: least-privilege group roles (DESIGN §5, issue 8).
--
-- Three NOLOGIN group roles; a deployment creates its own login roles and
-- grants one of these to each, e.g.
--     CREATE ROLE ammd_daemon LOGIN;     GRANT ammd TO ammd_daemon;
--     CREATE ROLE alice LOGIN;           GRANT ammd_operator TO alice;
--     CREATE ROLE grafana LOGIN;         GRANT ammd_reader TO grafana;
--
--   ammd           the daemon: reads the inventory and the keys, writes
--                  readings, read pointers, session log, outbox, command
--                  results, key counters; creates partitions through
--                  ammd_ensure_partitions().
--   ammd_operator  inventory (meters, gateways; may set keys but never read
--                  them back) and commands (queue, read, cancel through
--                  ammd_command_cancel()).  No rights on readings at all;
--                  completeness only through the views, which are aggregates.
--   ammd_reader    read-only: readings, inventory, command state, session
--                  log, completeness.  Cannot queue commands, cannot read keys.
--
-- The tables belong to the role that runs the migrations (the deployment's
-- schema owner; it needs CREATEROLE, or the three roles must exist already).
-- Roles are cluster-wide, so they are created only when missing: several
-- databases on one cluster share them.  Every later migration that adds a
-- table grants on it here-style, explicitly.

SET LOCAL client_min_messages = warning;

DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['ammd', 'ammd_operator', 'ammd_reader'] LOOP
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
			EXECUTE format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END $$;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
-- Security-definer functions are callable only by those named below.
REVOKE EXECUTE ON FUNCTION ammd_ensure_partitions(timestamptz, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ammd_command_cancel(bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ammd_completeness(integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ammd_claim_meters(text, integer, interval) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ammd_renew_leases(text, interval) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION ammd_set_meter_keys(integer[], bytea[], bytea[], text[], bytea[]) FROM PUBLIC;

-- Everyone may see which schema version this is (ammd checks it at start).
-- The table is made by the migration runner (daemon/db.c) before 0001.
DO $$
BEGIN
	IF to_regclass('schema_migrations') IS NOT NULL THEN
		GRANT SELECT ON schema_migrations TO ammd, ammd_operator, ammd_reader;
	END IF;
END $$;

-- ---- ammd ----------------------------------------------------------------------
GRANT SELECT, INSERT, UPDATE, DELETE ON
	meter, gateway, meter_key, meter_object, meter_profile_layout,
	register_reading, interval_reading, event, billing_value, analysis_reading,
	voltage_quality, read_pointer, command, session_log, outbox
	TO ammd;
GRANT SELECT ON command_rate_cap, command_audit, completeness_daily, completeness_fleet TO ammd;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ammd;
GRANT EXECUTE ON FUNCTION ammd_ensure_partitions(timestamptz, integer),
	ammd_command_cancel(bigint), ammd_completeness(integer),
	ammd_claim_meters(text, integer, interval), ammd_renew_leases(text, interval),
	ammd_set_meter_keys(integer[], bytea[], bytea[], text[], bytea[]) TO ammd;

-- ---- ammd_operator ---------------------------------------------------------------
GRANT SELECT, INSERT, UPDATE, DELETE ON meter, gateway TO ammd_operator;
-- Keys: write-only, through ammd_set_meter_keys().  The non-secret columns
-- are readable so that an operator can see whether a meter has keys.
GRANT SELECT (meter_id, system_title, key_set, updated_at) ON meter_key TO ammd_operator;
GRANT SELECT ON meter_object, meter_profile_layout, read_pointer, session_log,
	command_audit, command_rate_cap, completeness_daily, completeness_fleet TO ammd_operator;
GRANT SELECT, INSERT ON command TO ammd_operator;
GRANT EXECUTE ON FUNCTION ammd_command_cancel(bigint), ammd_completeness(integer),
	ammd_set_meter_keys(integer[], bytea[], bytea[], text[], bytea[]) TO ammd_operator;

-- ---- ammd_reader -------------------------------------------------------------------
GRANT SELECT ON meter, gateway, meter_object, meter_profile_layout,
	register_reading, interval_reading, event, billing_value, analysis_reading,
	voltage_quality, read_pointer, command, command_audit, command_rate_cap,
	session_log, completeness_daily, completeness_fleet TO ammd_reader;
GRANT SELECT (meter_id, system_title, key_set, updated_at) ON meter_key TO ammd_reader;
GRANT EXECUTE ON FUNCTION ammd_completeness(integer) TO ammd_reader;
