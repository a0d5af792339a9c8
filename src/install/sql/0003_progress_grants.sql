-- pgbg SQL API 0003: progress reporting, and the privilege helpers.
CREATE TYPE @schema@.pg_background_progress AS (progress_pct pg_catalog.int4, progress_msg pg_catalog.text);

-- Called by the worker's SQL. The notice carries the report to the pgbg engine,
-- which keeps the latest value; client_min_messages is raised for the call so a
-- caller's setting cannot hide it.
CREATE FUNCTION @schema@.pg_background_progress(pct int4, msg text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog SET client_min_messages = notice AS $$
BEGIN
  IF COALESCE(current_setting('pgbg.worker', true), '') <> 'on' THEN
    RAISE EXCEPTION 'pg_background_progress can only be called from a background worker' USING ERRCODE = 'feature_not_supported';
  END IF;
  RAISE NOTICE USING MESSAGE = 'pg_background progress', ERRCODE = 'PB001',
    DETAIL = json_build_object('pct', LEAST(100, GREATEST(0, COALESCE(pct, 0))), 'msg', msg)::text;
END $$;

CREATE FUNCTION @schema@.pg_background_get_progress_v2(pid int4, cookie int8) RETURNS @schema@.pg_background_progress
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
  SELECT * FROM @dblink@.dblink(pgbg_private.conn(), pgbg_private.handle_json('progress', pid, cookie)::text)
    AS t(progress_pct int4, progress_msg text)
$$;

-- Access is membership in pgbackground_role, which holds every EXECUTE and USAGE.
CREATE FUNCTION @schema@.grant_pg_background_privileges(role_name text, print_commands bool DEFAULT false) RETURNS bool
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  cmd text := format('GRANT pgbackground_role TO %I', role_name);
BEGIN
  EXECUTE cmd;
  IF print_commands THEN RAISE INFO '%', cmd; END IF;
  RETURN true;
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'Error granting pg_background privileges to %: %', role_name, SQLERRM;
  RETURN false;
END $$;

CREATE FUNCTION @schema@.revoke_pg_background_privileges(role_name text, print_commands bool DEFAULT false) RETURNS bool
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  cmd text := format('REVOKE pgbackground_role FROM %I', role_name);
BEGIN
  EXECUTE cmd;
  IF print_commands THEN RAISE INFO '%', cmd; END IF;
  RETURN true;
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'Error revoking pg_background privileges from %: %', role_name, SQLERRM;
  RETURN false;
END $$;

CREATE FUNCTION @schema@.pg_background_drop_executor_role() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgbackground_role') THEN
    EXECUTE 'DROP ROLE pgbackground_role';
  END IF;
END $$;

REVOKE ALL ON FUNCTION @schema@.pg_background_progress(int4, text), @schema@.pg_background_get_progress_v2(int4, int8),
  @schema@.grant_pg_background_privileges(text, bool), @schema@.revoke_pg_background_privileges(text, bool),
  @schema@.pg_background_drop_executor_role() FROM PUBLIC;
REVOKE ALL ON TYPE @schema@.pg_background_progress FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @schema@.pg_background_progress(int4, text), @schema@.pg_background_get_progress_v2(int4, int8)
  TO pgbackground_role;
GRANT USAGE ON TYPE @schema@.pg_background_progress TO pgbackground_role;
