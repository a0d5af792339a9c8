-- pgbg SQL API 0009: handle requests carry the caller's role OID.
-- The server checks that the caller may touch a worker (the role that launched
-- it, or one with its privileges). When the caller's role is the launching role
-- itself, the OIDs match and the server answers without asking PostgreSQL
-- (pg_has_role); that query cost a round trip on every detach, wait and result.
-- Role OIDs are looked up through regrole (one catalog cache probe) instead of pg_roles.
CREATE OR REPLACE FUNCTION pgbg_private.handle_json(op text, pid int4, cookie int8) RETURNS pg_catalog.json
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN cookie IS NULL
    THEN pg_catalog.json_build_object('op', op, 'pid', pid, 'role', r.name, 'role_oid', pg_catalog.quote_ident(r.name)::regrole::oid::int8)
    ELSE pg_catalog.json_build_object('op', op, 'pid', pid, 'cookie', cookie::text, 'role', r.name,
           'role_oid', pg_catalog.quote_ident(r.name)::regrole::oid::int8) END
    FROM (SELECT pgbg_private.caller_role()::text AS name) r
$$;

CREATE OR REPLACE FUNCTION @schema@.pg_background_wait_v2_timeout(pid int4, cookie int8, timeout_ms int4) RETURNS bool
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
  SELECT t.finished FROM @dblink@.dblink(pgbg_private.conn(),
      (pgbg_private.handle_json('wait_timeout', pid, cookie)::jsonb || jsonb_build_object('timeout_ms', timeout_ms))::text) AS t(finished bool)
$$;

CREATE OR REPLACE FUNCTION @schema@.pg_background_cancel_v2_grace(pid int4, cookie int8, grace_ms int4) RETURNS void
LANGUAGE sql AS $$
  SELECT pgbg_private.request((pgbg_private.handle_json('cancel', pid, cookie)::jsonb || jsonb_build_object('grace_ms', grace_ms))::json);
$$;

CREATE OR REPLACE FUNCTION pgbg_private.launch(op text, sql text, queue_size int4, caller_role text, settings json, statement_timeout text)
RETURNS @schema@.pg_background_handle
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  h @schema@.pg_background_handle;
BEGIN
  SELECT t.pid, t.cookie INTO h FROM @dblink@.dblink(pgbg_private.conn(), json_build_object(
    'op', op, 'sql', sql, 'queue_size', COALESCE(queue_size, 0),
    'role', NULLIF(caller_role, 'none'), 'settings', COALESCE(settings, '{}'::json),
    'role_oid', quote_ident(COALESCE(NULLIF(caller_role, 'none'), session_user::text))::regrole::oid::int8,
    'statement_timeout_ms', pgbg_private.ms(statement_timeout),
    'max_workers', COALESCE(NULLIF(current_setting('pg_background.max_workers', true), ''), '16')::int,
    'default_queue_size', pg_size_bytes(COALESCE(NULLIF(current_setting('pg_background.default_queue_size', true), ''), '64kB')),
    'worker_timeout_ms', pgbg_private.ms(COALESCE(NULLIF(current_setting('pg_background.worker_timeout', true), ''), '0')))::text)
    AS t(pid int4, cookie int8);
  RETURN h;
END $$;
