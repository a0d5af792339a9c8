-- pgbg SQL API 0002: list_v2, stats_v2, wait_v2_timeout, and the settings' defaults.
CREATE TYPE @schema@.pg_background_stats AS (
  workers_launched pg_catalog.int8, workers_completed pg_catalog.int8, workers_failed pg_catalog.int8,
  workers_canceled pg_catalog.int8, workers_active pg_catalog.int4, avg_execution_ms pg_catalog.float8, max_workers pg_catalog.int4);

CREATE FUNCTION @schema@.pg_background_list_v2() RETURNS SETOF record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  -- A caller sees only workers whose owner role it has the privileges of.
  RETURN QUERY SELECT * FROM @dblink@.dblink(pgbg_private.conn(), json_build_object('op', 'list',
      'max_workers', COALESCE(NULLIF(current_setting('pg_background.max_workers', true), ''), '16')::int)::text)
    AS t(pid int4, cookie int8, launched_at timestamptz, user_id oid, queue_size int4, state text, sql_preview text, last_error text, consumed bool)
    WHERE t.user_id IS NULL OR pg_has_role(pgbg_private.caller_role(), t.user_id, 'USAGE');
END $$;

CREATE FUNCTION @schema@.pg_background_stats_v2() RETURNS @schema@.pg_background_stats
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
  SELECT * FROM @dblink@.dblink(pgbg_private.conn(), json_build_object('op', 'stats',
      'max_workers', COALESCE(NULLIF(current_setting('pg_background.max_workers', true), ''), '16')::int)::text)
    AS t(workers_launched int8, workers_completed int8, workers_failed int8, workers_canceled int8, workers_active int4, avg_execution_ms float8, max_workers int4)
$$;

CREATE FUNCTION @schema@.pg_background_wait_v2_timeout(pid int4, cookie int8, timeout_ms int4) RETURNS bool
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
  SELECT t.finished FROM @dblink@.dblink(pgbg_private.conn(),
      json_build_object('op', 'wait_timeout', 'pid', pid, 'cookie', cookie::text, 'timeout_ms', timeout_ms,
        'role', pgbg_private.caller_role())::text) AS t(finished bool)
$$;

REVOKE ALL ON FUNCTION @schema@.pg_background_list_v2(), @schema@.pg_background_stats_v2(),
  @schema@.pg_background_wait_v2_timeout(int4, int8, int4) FROM PUBLIC;
REVOKE ALL ON TYPE @schema@.pg_background_stats FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @schema@.pg_background_list_v2(), @schema@.pg_background_stats_v2(),
  @schema@.pg_background_wait_v2_timeout(int4, int8, int4) TO pgbackground_role;
GRANT USAGE ON TYPE @schema@.pg_background_stats TO pgbackground_role;

-- SHOW answers the defaults in a fresh session.
DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I SET pg_background.max_workers = 16', current_database());
  EXECUTE format('ALTER DATABASE %I SET pg_background.default_queue_size = %L', current_database(), '64kB');
  EXECUTE format('ALTER DATABASE %I SET pg_background.worker_timeout = 0', current_database());
END $$;
