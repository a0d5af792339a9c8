-- pgbg SQL API 0001: launch / submit / result / detach / wait / cancel (v1 and v2).
-- @schema@ is the API schema, @dblink@ the schema of the dblink extension.
CREATE TYPE @schema@.pg_background_handle AS (pid pg_catalog.int4, cookie pg_catalog.int8);

-- How to reach the pgbg server; its password is the secret only the definer functions can read.
CREATE TABLE pgbg_private.server (connstr pg_catalog.text NOT NULL);
REVOKE ALL ON pgbg_private.server FROM PUBLIC;

-- The caller backend's named dblink connection, opened and bound to this backend
-- (hello: session user, pid, start time, all derived here) on first use.
CREATE FUNCTION pgbg_private.conn() RETURNS pg_catalog.text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  IF 'pgbg_api' = ANY (COALESCE(@dblink@.dblink_get_connections(), '{}')) THEN
    RETURN 'pgbg_api';
  END IF;
  PERFORM @dblink@.dblink_connect('pgbg_api', (SELECT connstr FROM pgbg_private.server LIMIT 1));
  PERFORM @dblink@.dblink_exec('pgbg_api', json_build_object(
    'op', 'hello', 'session_user', session_user::text, 'backend_pid', pg_backend_pid(),
    'backend_start', (SELECT backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()))::text);
  RETURN 'pgbg_api';
END $$;

-- The settings a worker copies: what the caller's session changed.
CREATE FUNCTION pgbg_private.caller_settings() RETURNS pg_catalog.json
LANGUAGE sql STABLE AS $$
  SELECT pg_catalog.json_object_agg(name, setting) FROM pg_catalog.pg_settings
   WHERE source = 'session' AND name NOT IN ('role', 'session_authorization', 'client_encoding',
     'application_name', 'statement_timeout', 'transaction_isolation', 'transaction_read_only', 'transaction_deferrable')
$$;

-- A time setting as SHOW writes it ('0', '250ms', '5s') in milliseconds; a bare number is ms.
CREATE FUNCTION pgbg_private.ms(setting text) RETURNS pg_catalog.int8
LANGUAGE sql IMMUTABLE AS $$
  SELECT (EXTRACT(epoch FROM (CASE WHEN setting ~ '^[0-9]+$' THEN setting || 'ms' ELSE setting END)::interval) * 1000)::int8
$$;

-- A request carries the caller's role; the worker takes it with set_config, so
-- PostgreSQL itself refuses a role the caller's login cannot take.
CREATE FUNCTION pgbg_private.launch(op text, sql text, queue_size int4, caller_role text, settings json, statement_timeout text)
RETURNS @schema@.pg_background_handle
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  h @schema@.pg_background_handle;
BEGIN
  SELECT t.pid, t.cookie INTO h FROM @dblink@.dblink(pgbg_private.conn(), json_build_object(
    'op', op, 'sql', sql, 'queue_size', COALESCE(queue_size, 0),
    'role', NULLIF(caller_role, 'none'), 'settings', COALESCE(settings, '{}'::json),
    'role_oid', (SELECT oid::int8 FROM pg_roles WHERE rolname = COALESCE(NULLIF(caller_role, 'none'), session_user::text)),
    'statement_timeout_ms', pgbg_private.ms(statement_timeout),
    'max_workers', COALESCE(NULLIF(current_setting('pg_background.max_workers', true), ''), '16')::int,
    'default_queue_size', pg_size_bytes(COALESCE(NULLIF(current_setting('pg_background.default_queue_size', true), ''), '64kB')),
    'worker_timeout_ms', pgbg_private.ms(COALESCE(NULLIF(current_setting('pg_background.worker_timeout', true), ''), '0')))::text)
    AS t(pid int4, cookie int8);
  RETURN h;
END $$;

CREATE FUNCTION pgbg_private.request(req json) RETURNS pg_catalog.text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  RETURN @dblink@.dblink_exec(pgbg_private.conn(), req::text);
END $$;

-- The caller's effective role (SECURITY DEFINER changes current_user, not the role setting).
CREATE FUNCTION pgbg_private.caller_role() RETURNS pg_catalog.name
LANGUAGE sql STABLE AS $$ SELECT COALESCE(NULLIF(pg_catalog.current_setting('role'), 'none'), session_user::text)::name $$;

-- A handle request; it names the caller's role so the server can refuse another role's workers (42501).
CREATE FUNCTION pgbg_private.handle_json(op text, pid int4, cookie int8) RETURNS pg_catalog.json
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN cookie IS NULL THEN json_build_object('op', op, 'pid', pid, 'role', pgbg_private.caller_role())
              ELSE json_build_object('op', op, 'pid', pid, 'cookie', cookie::text, 'role', pgbg_private.caller_role()) END
$$;

-- Results: describe the worker's columns, then relay its rows typed as the worker typed them.
-- Returns the query that relays them; the public result functions run it.
CREATE FUNCTION pgbg_private.result_query(pid int4, cookie int8) RETURNS pg_catalog.text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  c text := pgbg_private.conn();
  coldefs text;
BEGIN
  -- Pseudo-typed columns (void, e.g. SELECT pg_sleep(1)) arrive as text.
  SELECT string_agg(format('%I %s', t.name, CASE WHEN ty.typtype = 'p' THEN 'text' ELSE format_type(t.type_oid, NULL) END),
                    ', ' ORDER BY t.position) INTO coldefs
    FROM @dblink@.dblink(c, pgbg_private.handle_json('describe', pid, cookie)::text) AS t(position int4, name text, type_oid oid)
    LEFT JOIN pg_type ty ON ty.oid = t.type_oid;
  RETURN format('SELECT * FROM @dblink@.dblink(%L, %L) AS t(%s)', c, pgbg_private.handle_json('result', pid, cookie)::text, coldefs);
END $$;

CREATE FUNCTION @schema@.pg_background_launch_v2(sql text, queue_size int4 DEFAULT 0) RETURNS @schema@.pg_background_handle
LANGUAGE sql AS $$ SELECT pgbg_private.launch('launch', sql, queue_size, current_setting('role'), pgbg_private.caller_settings(), current_setting('statement_timeout')) $$;
CREATE FUNCTION @schema@.pg_background_submit_v2(sql text, queue_size int4 DEFAULT 0) RETURNS @schema@.pg_background_handle
LANGUAGE sql AS $$ SELECT pgbg_private.launch('submit', sql, queue_size, current_setting('role'), pgbg_private.caller_settings(), current_setting('statement_timeout')) $$;
CREATE FUNCTION @schema@.pg_background_launch(sql text, queue_size int4 DEFAULT 0) RETURNS int4
LANGUAGE sql AS $$ SELECT (@schema@.pg_background_launch_v2(sql, queue_size)).pid $$;

-- Worker notices reach the caller: dblink does not pass remote notices on, so
-- after relaying a result the wrappers fetch the job's notices and raise them here.
CREATE FUNCTION pgbg_private.raise_notices(pid int4) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  n record;
BEGIN
  FOR n IN SELECT * FROM @dblink@.dblink(pgbg_private.conn(), json_build_object('op', 'notices', 'pid', pid)::text)
      AS t(severity text, message text, detail text, hint text) LOOP
    IF n.severity = 'WARNING' THEN
      RAISE WARNING '%', n.message USING DETAIL = COALESCE(n.detail, ''), HINT = COALESCE(n.hint, '');
    ELSE
      RAISE NOTICE '%', n.message USING DETAIL = COALESCE(n.detail, ''), HINT = COALESCE(n.hint, '');
    END IF;
  END LOOP;
END $$;
REVOKE ALL ON FUNCTION pgbg_private.raise_notices(int4) FROM PUBLIC;

-- A SETOF record cannot be forwarded, so each result function runs the relay query itself.
CREATE FUNCTION @schema@.pg_background_result_v2(pid int4, cookie int8) RETURNS SETOF record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  RETURN QUERY EXECUTE pgbg_private.result_query(pid, cookie);
  PERFORM pgbg_private.raise_notices(pid);
EXCEPTION WHEN datatype_mismatch THEN
  RAISE EXCEPTION 'remote query result rowtype does not match the specified FROM clause rowtype' USING ERRCODE = 'datatype_mismatch';
END $$;
CREATE FUNCTION @schema@.pg_background_result(pid int4) RETURNS SETOF record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  RETURN QUERY EXECUTE pgbg_private.result_query(pid, NULL);
  PERFORM pgbg_private.raise_notices(pid);
EXCEPTION WHEN datatype_mismatch THEN
  RAISE EXCEPTION 'remote query result rowtype does not match the specified FROM clause rowtype' USING ERRCODE = 'datatype_mismatch';
END $$;

CREATE FUNCTION @schema@.pg_background_detach(pid int4) RETURNS void
LANGUAGE sql AS $$ SELECT pgbg_private.request(pgbg_private.handle_json('detach', pid, NULL)); $$;
CREATE FUNCTION @schema@.pg_background_detach_v2(pid int4, cookie int8) RETURNS void
LANGUAGE sql AS $$ SELECT pgbg_private.request(pgbg_private.handle_json('detach', pid, cookie)); $$;
CREATE FUNCTION @schema@.pg_background_wait_v2(pid int4, cookie int8) RETURNS void
LANGUAGE sql AS $$ SELECT pgbg_private.request(pgbg_private.handle_json('wait', pid, cookie)); $$;
CREATE FUNCTION @schema@.pg_background_cancel_v2(pid int4, cookie int8) RETURNS void
LANGUAGE sql AS $$ SELECT pgbg_private.request(pgbg_private.handle_json('cancel', pid, cookie)); $$;
CREATE FUNCTION @schema@.pg_background_cancel_v2_grace(pid int4, cookie int8, grace_ms int4) RETURNS void
LANGUAGE sql AS $$
  SELECT pgbg_private.request(json_build_object('op', 'cancel', 'pid', pid, 'cookie', cookie::text, 'grace_ms', grace_ms,
    'role', pgbg_private.caller_role()));
$$;

-- No ambient access: everything is revoked from PUBLIC; pgbackground_role is how access is granted.
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgbackground_role') THEN
    CREATE ROLE pgbackground_role NOLOGIN INHERIT;
  END IF;
END $$;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgbg_private FROM PUBLIC;
REVOKE ALL ON FUNCTION @schema@.pg_background_launch(text, int4), @schema@.pg_background_launch_v2(text, int4),
  @schema@.pg_background_submit_v2(text, int4), @schema@.pg_background_result(int4), @schema@.pg_background_result_v2(int4, int8),
  @schema@.pg_background_detach(int4), @schema@.pg_background_detach_v2(int4, int8), @schema@.pg_background_wait_v2(int4, int8),
  @schema@.pg_background_cancel_v2(int4, int8), @schema@.pg_background_cancel_v2_grace(int4, int8, int4) FROM PUBLIC;
REVOKE ALL ON TYPE @schema@.pg_background_handle FROM PUBLIC;
GRANT USAGE ON SCHEMA pgbg_private TO pgbackground_role;
GRANT EXECUTE ON FUNCTION pgbg_private.caller_settings(), pgbg_private.ms(text), pgbg_private.caller_role(), pgbg_private.launch(text, text, int4, text, json, text),
  pgbg_private.request(json), pgbg_private.handle_json(text, int4, int8) TO pgbackground_role;
GRANT EXECUTE ON FUNCTION @schema@.pg_background_launch(text, int4), @schema@.pg_background_launch_v2(text, int4),
  @schema@.pg_background_submit_v2(text, int4), @schema@.pg_background_result(int4), @schema@.pg_background_result_v2(int4, int8),
  @schema@.pg_background_detach(int4), @schema@.pg_background_detach_v2(int4, int8), @schema@.pg_background_wait_v2(int4, int8),
  @schema@.pg_background_cancel_v2(int4, int8), @schema@.pg_background_cancel_v2_grace(int4, int8, int4) TO pgbackground_role;
GRANT USAGE ON TYPE @schema@.pg_background_handle TO pgbackground_role;
