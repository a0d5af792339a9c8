-- pgbg SQL API 0004: jobs run in the caller's database; notices after wait_v2.

-- The server connection names the caller's database, so its workers log in
-- there (a later keyword wins in a libpq connection string).
CREATE OR REPLACE FUNCTION pgbg_private.conn() RETURNS pg_catalog.text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  IF 'pgbg_api' = ANY (COALESCE(@dblink@.dblink_get_connections(), '{}')) THEN
    RETURN 'pgbg_api';
  END IF;
  PERFORM @dblink@.dblink_connect('pgbg_api', (SELECT connstr FROM pgbg_private.server LIMIT 1)
    || ' dbname=''' || replace(replace(current_database(), '\', '\\'), '''', '\''') || '''');
  PERFORM @dblink@.dblink_exec('pgbg_api', json_build_object(
    'op', 'hello', 'session_user', session_user::text, 'backend_pid', pg_backend_pid(),
    'backend_start', (SELECT backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()))::text);
  RETURN 'pgbg_api';
END $$;

-- Waiting re-raises the worker's error (the server does) and its notices (here),
-- which a later result then does not repeat.
CREATE OR REPLACE FUNCTION @schema@.pg_background_wait_v2(pid int4, cookie int8) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  PERFORM pgbg_private.request(pgbg_private.handle_json('wait', pid, cookie));
  PERFORM pgbg_private.raise_notices(pid);
END $$;
