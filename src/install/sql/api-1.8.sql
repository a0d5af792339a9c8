-- pg_background 1.8's SQL surface (the contract: the 1.8 API page), served by the pgbg server
-- through the private part (private.sql), which install runs first.

DO $$ BEGIN
  IF pg_catalog.to_regtype('@schema@.pg_background_stats') IS NULL THEN
    CREATE TYPE @schema@.pg_background_stats AS (
      workers_launched pg_catalog.int8, workers_completed pg_catalog.int8, workers_failed pg_catalog.int8,
      workers_canceled pg_catalog.int8, workers_active pg_catalog.int4, avg_execution_ms pg_catalog.float8, max_workers pg_catalog.int4);
  END IF;
  IF pg_catalog.to_regtype('@schema@.pg_background_progress') IS NULL THEN
    CREATE TYPE @schema@.pg_background_progress AS (progress_pct pg_catalog.int4, progress_msg pg_catalog.text);
  END IF;
END $$;

CREATE OR REPLACE FUNCTION @schema@.pg_background_launch_v2(sql pg_catalog.text, queue_size pg_catalog.int4 DEFAULT 0) RETURNS @schema@.pg_background_handle
LANGUAGE sql AS $$ SELECT pgbg_private.launch('launch', sql, queue_size) $$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_submit_v2(sql pg_catalog.text, queue_size pg_catalog.int4 DEFAULT 0) RETURNS @schema@.pg_background_handle
LANGUAGE sql AS $$ SELECT pgbg_private.launch('submit', sql, queue_size) $$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_launch(sql pg_catalog.text, queue_size pg_catalog.int4 DEFAULT 0) RETURNS pg_catalog.int4
LANGUAGE sql AS $$ SELECT (pgbg_private.launch('launch', sql, queue_size)).pid $$;

-- A SETOF record cannot be forwarded, so each result function runs the relay query itself.
CREATE OR REPLACE FUNCTION @schema@.pg_background_result_v2(pid pg_catalog.int4, cookie pg_catalog.int8) RETURNS SETOF record
LANGUAGE plpgsql AS $$
DECLARE
  r pg_catalog.text[];
BEGIN
  r := pgbg_private.send(pgbg_private.handle_json('describe_result', pid, cookie)::pg_catalog.text);
  RETURN QUERY EXECUTE pgbg_private.result_rows_query(r, pid, cookie);
  -- The end of an answer with the rows in it (nothing is left after streamed rows).
  PERFORM * FROM @dblink@.dblink_get_result(r[1]) AS t(x pg_catalog.text);
  IF pg_catalog.current_setting('pgbg.notices_pending', true) IS DISTINCT FROM '0' THEN
    PERFORM pgbg_private.raise_notices(pid);
  END IF;
EXCEPTION
  WHEN datatype_mismatch THEN
    IF r IS NOT NULL THEN
      PERFORM pgbg_private.settle(r[1]);
    END IF;
    RAISE EXCEPTION 'remote query result rowtype does not match the specified FROM clause rowtype' USING ERRCODE = 'datatype_mismatch';
  WHEN query_canceled THEN
    @reraise@
  WHEN OTHERS THEN
    IF r IS NOT NULL THEN
      PERFORM pgbg_private.settle(r[1]);
    END IF;
    @reraise@
END $$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_result(pid pg_catalog.int4) RETURNS SETOF record
LANGUAGE plpgsql AS $$
DECLARE
  r pg_catalog.text[];
BEGIN
  r := pgbg_private.send(pgbg_private.handle_json('describe_result', pid, NULL)::pg_catalog.text);
  RETURN QUERY EXECUTE pgbg_private.result_rows_query(r, pid, NULL);
  -- The end of an answer with the rows in it (nothing is left after streamed rows).
  PERFORM * FROM @dblink@.dblink_get_result(r[1]) AS t(x pg_catalog.text);
  IF pg_catalog.current_setting('pgbg.notices_pending', true) IS DISTINCT FROM '0' THEN
    PERFORM pgbg_private.raise_notices(pid);
  END IF;
EXCEPTION
  WHEN datatype_mismatch THEN
    IF r IS NOT NULL THEN
      PERFORM pgbg_private.settle(r[1]);
    END IF;
    RAISE EXCEPTION 'remote query result rowtype does not match the specified FROM clause rowtype' USING ERRCODE = 'datatype_mismatch';
  WHEN query_canceled THEN
    @reraise@
  WHEN OTHERS THEN
    IF r IS NOT NULL THEN
      PERFORM pgbg_private.settle(r[1]);
    END IF;
    @reraise@
END $$;

CREATE OR REPLACE FUNCTION @schema@.pg_background_detach(pid pg_catalog.int4) RETURNS void
LANGUAGE sql AS $$ SELECT pgbg_private.call(pgbg_private.handle_json('detach', pid, NULL)) $$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_detach_v2(pid pg_catalog.int4, cookie pg_catalog.int8) RETURNS void
LANGUAGE sql AS $$ SELECT pgbg_private.call(pgbg_private.handle_json('detach', pid, cookie)) $$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_cancel_v2(pid pg_catalog.int4, cookie pg_catalog.int8) RETURNS void
LANGUAGE sql AS $$ SELECT pgbg_private.call(pgbg_private.handle_json('cancel', pid, cookie)) $$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_cancel_v2_grace(pid pg_catalog.int4, cookie pg_catalog.int8, grace_ms pg_catalog.int4) RETURNS void
LANGUAGE sql AS $$
  SELECT pgbg_private.call(pgbg_private.handle_json('cancel', pid, cookie) OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('grace_ms', grace_ms))
$$;

-- Waiting raises the job's notices (here), which a later result does not repeat; its error comes with the result.
CREATE OR REPLACE FUNCTION @schema@.pg_background_wait_v2(pid pg_catalog.int4, cookie pg_catalog.int8) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pgbg_private.call(pgbg_private.handle_json('wait', pid, cookie));
  PERFORM pgbg_private.raise_notices(pid);
END $$;

-- Sent asynchronously, so statement_timeout and Ctrl-C stop the wait at once; the next call settles the request.
CREATE OR REPLACE FUNCTION @schema@.pg_background_wait_v2_timeout(pid pg_catalog.int4, cookie pg_catalog.int8, timeout_ms pg_catalog.int4) RETURNS pg_catalog.bool
LANGUAGE plpgsql AS $$
DECLARE
  r pg_catalog.text[];
  finished pg_catalog.bool;
BEGIN
  r := pgbg_private.send((pgbg_private.handle_json('wait_timeout', pid, cookie)
    OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('timeout_ms', timeout_ms))::pg_catalog.text);
  -- An error answer (e.g. 42704) is raised here; its end is read by the next call's settle.
  SELECT t.finished INTO finished FROM @dblink@.dblink_get_result(r[1]) AS t(finished pg_catalog.bool);
  PERFORM * FROM @dblink@.dblink_get_result(r[1]) AS t(x pg_catalog.text);  -- the answer's end
  RETURN finished;
EXCEPTION WHEN OTHERS OR query_canceled THEN
  @reraise@
END $$;

-- The server lists only the workers whose owner role the caller has the privileges of.
CREATE OR REPLACE FUNCTION @schema@.pg_background_list_v2() RETURNS SETOF record
LANGUAGE plpgsql AS $$
DECLARE
  r pg_catalog.text[];
BEGIN
  r := pgbg_private.send((pg_catalog.jsonb_build_object('op', 'list') OPERATOR(pg_catalog.||) pgbg_private.limits())::pg_catalog.text);
  RETURN QUERY SELECT * FROM @dblink@.dblink_get_result(r[1])
    AS t(pid pg_catalog.int4, cookie pg_catalog.int8, launched_at pg_catalog.timestamptz, user_id pg_catalog.oid, queue_size pg_catalog.int4,
         state pg_catalog.text, sql_preview pg_catalog.text, last_error pg_catalog.text, consumed pg_catalog.bool);
  PERFORM * FROM @dblink@.dblink_get_result(r[1]) AS t(x pg_catalog.text);  -- the answer's end
EXCEPTION WHEN OTHERS OR query_canceled THEN
  @reraise@
END $$;

CREATE OR REPLACE FUNCTION @schema@.pg_background_stats_v2() RETURNS @schema@.pg_background_stats
LANGUAGE plpgsql AS $$
DECLARE
  r pg_catalog.text[];
  s @schema@.pg_background_stats;
BEGIN
  r := pgbg_private.send((pg_catalog.jsonb_build_object('op', 'stats') OPERATOR(pg_catalog.||) pgbg_private.limits())::pg_catalog.text);
  SELECT * INTO s FROM @dblink@.dblink_get_result(r[1])
    AS t(workers_launched pg_catalog.int8, workers_completed pg_catalog.int8, workers_failed pg_catalog.int8, workers_canceled pg_catalog.int8,
         workers_active pg_catalog.int4, avg_execution_ms pg_catalog.float8, max_workers pg_catalog.int4);
  PERFORM * FROM @dblink@.dblink_get_result(r[1]) AS t(x pg_catalog.text);  -- the answer's end
  RETURN s;
EXCEPTION WHEN OTHERS OR query_canceled THEN
  @reraise@
END $$;

-- Called by the worker's SQL. The notice carries the report to the pgbg engine, which keeps the
-- latest value; client_min_messages is raised for the call so a caller's setting cannot hide it.
CREATE OR REPLACE FUNCTION @schema@.pg_background_progress(pct pg_catalog.int4, msg pg_catalog.text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SET client_min_messages = notice AS $$
BEGIN
  IF COALESCE(pg_catalog.current_setting('pgbg.worker', true), '') <> 'on' THEN
    RAISE EXCEPTION 'pg_background_progress can only be called from a background worker' USING ERRCODE = 'feature_not_supported';
  END IF;
  RAISE NOTICE USING MESSAGE = 'pg_background progress', ERRCODE = 'PB001',
    DETAIL = pg_catalog.json_build_object('pct', pg_catalog.int4smaller(100, pg_catalog.int4larger(0, COALESCE(pct, 0))), 'msg', msg)::pg_catalog.text;
END $$;

CREATE OR REPLACE FUNCTION @schema@.pg_background_get_progress_v2(pid pg_catalog.int4, cookie pg_catalog.int8) RETURNS @schema@.pg_background_progress
LANGUAGE plpgsql AS $$
DECLARE
  r pg_catalog.text[];
  p @schema@.pg_background_progress;
BEGIN
  r := pgbg_private.send(pgbg_private.handle_json('progress', pid, cookie)::pg_catalog.text);
  SELECT * INTO p FROM @dblink@.dblink_get_result(r[1]) AS t(progress_pct pg_catalog.int4, progress_msg pg_catalog.text);
  PERFORM * FROM @dblink@.dblink_get_result(r[1]) AS t(x pg_catalog.text);  -- the answer's end
  RETURN p;
EXCEPTION WHEN OTHERS OR query_canceled THEN
  @reraise@
END $$;

CREATE OR REPLACE FUNCTION @schema@.pg_background_drop_executor_role() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgbackground_role') THEN
    EXECUTE 'DROP ROLE pgbackground_role';
  END IF;
END $$;

-- The privilege helpers: the installer alone may execute them (see pgbg_private.grant_privileges).
CREATE OR REPLACE FUNCTION @schema@.grant_pg_background_privileges(role_name pg_catalog.text, print_commands pg_catalog.bool DEFAULT false) RETURNS pg_catalog.bool
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT pgbg_private.grant_privileges(role_name, print_commands) $$;
CREATE OR REPLACE FUNCTION @schema@.revoke_pg_background_privileges(role_name pg_catalog.text, print_commands pg_catalog.bool DEFAULT false) RETURNS pg_catalog.bool
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT pgbg_private.revoke_privileges(role_name, print_commands) $$;

-- No ambient access: revoked from PUBLIC; pgbackground_role may call the wrappers, not the helpers.
REVOKE ALL ON FUNCTION @schema@.pg_background_launch(pg_catalog.text, pg_catalog.int4), @schema@.pg_background_launch_v2(pg_catalog.text, pg_catalog.int4),
  @schema@.pg_background_submit_v2(pg_catalog.text, pg_catalog.int4), @schema@.pg_background_result(pg_catalog.int4),
  @schema@.pg_background_result_v2(pg_catalog.int4, pg_catalog.int8), @schema@.pg_background_detach(pg_catalog.int4),
  @schema@.pg_background_detach_v2(pg_catalog.int4, pg_catalog.int8), @schema@.pg_background_wait_v2(pg_catalog.int4, pg_catalog.int8),
  @schema@.pg_background_wait_v2_timeout(pg_catalog.int4, pg_catalog.int8, pg_catalog.int4),
  @schema@.pg_background_cancel_v2(pg_catalog.int4, pg_catalog.int8), @schema@.pg_background_cancel_v2_grace(pg_catalog.int4, pg_catalog.int8, pg_catalog.int4),
  @schema@.pg_background_list_v2(), @schema@.pg_background_stats_v2(), @schema@.pg_background_progress(pg_catalog.int4, pg_catalog.text),
  @schema@.pg_background_get_progress_v2(pg_catalog.int4, pg_catalog.int8), @schema@.grant_pg_background_privileges(pg_catalog.text, pg_catalog.bool),
  @schema@.revoke_pg_background_privileges(pg_catalog.text, pg_catalog.bool), @schema@.pg_background_drop_executor_role() FROM PUBLIC;
REVOKE ALL ON TYPE @schema@.pg_background_stats, @schema@.pg_background_progress FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @schema@.pg_background_launch(pg_catalog.text, pg_catalog.int4), @schema@.pg_background_launch_v2(pg_catalog.text, pg_catalog.int4),
  @schema@.pg_background_submit_v2(pg_catalog.text, pg_catalog.int4), @schema@.pg_background_result(pg_catalog.int4),
  @schema@.pg_background_result_v2(pg_catalog.int4, pg_catalog.int8), @schema@.pg_background_detach(pg_catalog.int4),
  @schema@.pg_background_detach_v2(pg_catalog.int4, pg_catalog.int8), @schema@.pg_background_wait_v2(pg_catalog.int4, pg_catalog.int8),
  @schema@.pg_background_wait_v2_timeout(pg_catalog.int4, pg_catalog.int8, pg_catalog.int4),
  @schema@.pg_background_cancel_v2(pg_catalog.int4, pg_catalog.int8), @schema@.pg_background_cancel_v2_grace(pg_catalog.int4, pg_catalog.int8, pg_catalog.int4),
  @schema@.pg_background_list_v2(), @schema@.pg_background_stats_v2(), @schema@.pg_background_progress(pg_catalog.int4, pg_catalog.text),
  @schema@.pg_background_get_progress_v2(pg_catalog.int4, pg_catalog.int8) TO pgbackground_role;
GRANT USAGE ON TYPE @schema@.pg_background_stats, @schema@.pg_background_progress TO pgbackground_role;
