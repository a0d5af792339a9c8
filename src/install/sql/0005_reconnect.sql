-- pgbg SQL API 0005: a caller backend follows the server across restarts.
-- Each server start writes a new generation; a backend's dblink connection is
-- named after the generation it was opened for, so one left over from an
-- earlier server run is dropped and replaced instead of failing every call.
-- (A name, unlike a setting or a table row, is not undone by a rollback.)
ALTER TABLE pgbg_private.server ADD COLUMN generation pg_catalog.text NOT NULL DEFAULT '';

CREATE OR REPLACE FUNCTION pgbg_private.conn() RETURNS pg_catalog.text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  srv record;
  wanted text;
  existing text;
BEGIN
  SELECT connstr, generation INTO srv FROM pgbg_private.server LIMIT 1;
  wanted := 'pgbg_api_' || md5(srv.generation);
  FOREACH existing IN ARRAY COALESCE(@dblink@.dblink_get_connections(), '{}') LOOP
    IF existing = wanted THEN
      RETURN wanted;
    ELSIF existing = 'pgbg_api' OR existing LIKE 'pgbg\_api\_%' THEN
      PERFORM @dblink@.dblink_disconnect(existing);
    END IF;
  END LOOP;
  PERFORM @dblink@.dblink_connect(wanted, srv.connstr
    || ' dbname=''' || replace(replace(current_database(), '\', '\\'), '''', '\''') || '''');
  PERFORM @dblink@.dblink_exec(wanted, json_build_object(
    'op', 'hello', 'session_user', session_user::text, 'backend_pid', pg_backend_pid(),
    'backend_start', (SELECT backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()))::text);
  RETURN wanted;
END $$;
