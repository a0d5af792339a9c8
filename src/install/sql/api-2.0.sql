-- pg_background 2.0's SQL surface (the contract: the 2.0 API page), served by the pgbg server
-- through the private part (private.sql), which install runs first. The unsuffixed names are
-- canonical; the _v2 names are made from them at the end of this script as deprecated aliases.
--
-- Most functions here ask the server one question and get one JSON answer (pgbg_private.ask),
-- which fills in the surface's composite types: the server knows the moment a job ends, so
-- nothing here polls.

DO $$ BEGIN
  IF pg_catalog.to_regtype('@schema@.pg_background_stats') IS NULL THEN
    CREATE TYPE @schema@.pg_background_stats AS (
      workers_launched pg_catalog.int8, workers_completed pg_catalog.int8, workers_failed pg_catalog.int8,
      workers_canceled pg_catalog.int8, workers_timed_out pg_catalog.int8, workers_active pg_catalog.int4,
      avg_execution_ms pg_catalog.float8, max_workers pg_catalog.int4);
  END IF;
  IF pg_catalog.to_regtype('@schema@.pg_background_progress_info') IS NULL THEN
    CREATE TYPE @schema@.pg_background_progress_info AS (progress_pct pg_catalog.int4, progress_msg pg_catalog.text);
  END IF;
  IF pg_catalog.to_regtype('@schema@.pg_background_result_info') IS NULL THEN
    CREATE TYPE @schema@.pg_background_result_info AS (
      row_count pg_catalog.int8, command_tag pg_catalog.text, completed pg_catalog.bool, has_error pg_catalog.bool,
      started_at pg_catalog.timestamptz, finished_at pg_catalog.timestamptz);
  END IF;
  IF pg_catalog.to_regtype('@schema@.pg_background_error') IS NULL THEN
    CREATE TYPE @schema@.pg_background_error AS (
      sqlstate pg_catalog.text, message pg_catalog.text, detail pg_catalog.text, hint pg_catalog.text, context pg_catalog.text,
      schema_name pg_catalog.text, table_name pg_catalog.text, column_name pg_catalog.text, constraint_name pg_catalog.text);
  END IF;
  IF pg_catalog.to_regtype('@schema@.pg_background_outcome') IS NULL THEN
    CREATE TYPE @schema@.pg_background_outcome AS (
      pid pg_catalog.int4, cookie pg_catalog.int8, state pg_catalog.text, consumed pg_catalog.bool, completed pg_catalog.bool,
      has_error pg_catalog.bool, row_count pg_catalog.int8, command_tag pg_catalog.text, sqlstate pg_catalog.text,
      error_message pg_catalog.text, label pg_catalog.text, launched_at pg_catalog.timestamptz);
  END IF;
  IF pg_catalog.to_regtype('@schema@.pg_background_run_result') IS NULL THEN
    CREATE TYPE @schema@.pg_background_run_result AS (
      pid pg_catalog.int4, cookie pg_catalog.int8, state pg_catalog.text, consumed pg_catalog.bool, completed pg_catalog.bool,
      has_error pg_catalog.bool, row_count pg_catalog.int8, command_tag pg_catalog.text, sqlstate pg_catalog.text,
      error_message pg_catalog.text, label pg_catalog.text, launched_at pg_catalog.timestamptz,
      timed_out pg_catalog.bool, elapsed_ms pg_catalog.int8);
  END IF;
END $$;

-- A request about one handle, answered by one JSON object (or JSON null, for `quiet` ones that
-- would otherwise raise).
CREATE FUNCTION pgbg_private.ask_handle(op pg_catalog.text, pid pg_catalog.int4, cookie pg_catalog.int8, extra pg_catalog.jsonb DEFAULT '{}') RETURNS pg_catalog.jsonb
LANGUAGE sql AS $$ SELECT pgbg_private.ask(pgbg_private.handle_json(op, pid, cookie) OPERATOR(pg_catalog.||) extra) $$;

-- Handles as the server takes them (NULL elements are left out: they are skipped).
CREATE FUNCTION pgbg_private.handles_json(handles @schema@.pg_background_handle[]) RETURNS pg_catalog.jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('pid', h.pid, 'cookie', h.cookie::pg_catalog.text) ORDER BY h.n), '[]')
    FROM pg_catalog.unnest(handles) WITH ORDINALITY AS h(pid, cookie, n) WHERE h.pid IS NOT NULL AND h.cookie IS NOT NULL
$$;

-- Launch and submit. The two-argument forms are STRICT (NULL in, NULL out); the labelled forms
-- take a NULL queue size as 0 and a NULL label as none, and refuse a NULL statement.
CREATE FUNCTION pgbg_private.launch_labelled(op pg_catalog.text, sql pg_catalog.text, queue_size pg_catalog.int4, label pg_catalog.text) RETURNS @schema@.pg_background_handle
LANGUAGE plpgsql AS $$
BEGIN
  IF sql IS NULL THEN
    RAISE EXCEPTION 'sql parameter cannot be NULL' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  RETURN pgbg_private.launch(op, sql, COALESCE(queue_size, 0), label);
END $$;

CREATE OR REPLACE FUNCTION @schema@.pg_background_launch(sql pg_catalog.text, queue_size pg_catalog.int4 DEFAULT 0) RETURNS @schema@.pg_background_handle
LANGUAGE sql STRICT AS $$ SELECT pgbg_private.launch('launch', sql, queue_size) $$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_launch(sql pg_catalog.text, queue_size pg_catalog.int4, label pg_catalog.text) RETURNS @schema@.pg_background_handle
LANGUAGE sql AS $$ SELECT pgbg_private.launch_labelled('launch', sql, queue_size, label) $$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_submit(sql pg_catalog.text, queue_size pg_catalog.int4 DEFAULT 0) RETURNS @schema@.pg_background_handle
LANGUAGE sql STRICT AS $$ SELECT pgbg_private.launch('submit', sql, queue_size) $$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_submit(sql pg_catalog.text, queue_size pg_catalog.int4, label pg_catalog.text) RETURNS @schema@.pg_background_handle
LANGUAGE sql AS $$ SELECT pgbg_private.launch_labelled('submit', sql, queue_size, label) $$;

-- A SETOF record cannot be forwarded, so the result function runs the relay query itself.
CREATE OR REPLACE FUNCTION @schema@.pg_background_result(pid pg_catalog.int4, cookie pg_catalog.int8) RETURNS SETOF record
LANGUAGE plpgsql STRICT AS $$
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

CREATE OR REPLACE FUNCTION @schema@.pg_background_detach(pid pg_catalog.int4, cookie pg_catalog.int8) RETURNS void
LANGUAGE sql STRICT AS $$ SELECT pgbg_private.call(pgbg_private.handle_json('detach', pid, cookie)) $$;

-- Cooperative first: the worker is asked to stop, and the server terminates its backend only if
-- it has not stopped when the grace period (at least a second) ends. Waits up to grace_ms.
CREATE OR REPLACE FUNCTION @schema@.pg_background_cancel(pid pg_catalog.int4, cookie pg_catalog.int8, grace_ms pg_catalog.int4 DEFAULT 0) RETURNS void
LANGUAGE sql STRICT AS $$
  SELECT pgbg_private.call(pgbg_private.handle_json('cancel', pid, cookie)
    OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('grace_ms', grace_ms, 'cooperative', true))
$$;

-- timeout_ms <= 0 waits for the end; > 0 at most that long (false: still running).
CREATE OR REPLACE FUNCTION @schema@.pg_background_wait(pid pg_catalog.int4, cookie pg_catalog.int8, timeout_ms pg_catalog.int4 DEFAULT 0) RETURNS pg_catalog.bool
LANGUAGE sql STRICT AS $$
  SELECT (pgbg_private.ask_handle('wait_for', pid, cookie, pg_catalog.jsonb_build_object('timeout_ms', timeout_ms)) OPERATOR(pg_catalog.->>) 'finished')::pg_catalog.bool
$$;

CREATE OR REPLACE FUNCTION @schema@.pg_background_result_info(pid pg_catalog.int4, cookie pg_catalog.int8) RETURNS @schema@.pg_background_result_info
LANGUAGE sql STRICT AS $$
  SELECT * FROM pg_catalog.jsonb_populate_record(NULL::@schema@.pg_background_result_info, pgbg_private.ask_handle('info', pid, cookie))
$$;

-- NULL when the job raised no error.
CREATE OR REPLACE FUNCTION @schema@.pg_background_error_info(pid pg_catalog.int4, cookie pg_catalog.int8) RETURNS @schema@.pg_background_error
LANGUAGE sql STRICT AS $$
  SELECT e.* FROM (SELECT pgbg_private.ask_handle('info', pid, cookie) OPERATOR(pg_catalog.->) 'error' AS j) a,
    LATERAL pg_catalog.jsonb_populate_record(NULL::@schema@.pg_background_error, a.j) e
   WHERE pg_catalog.jsonb_typeof(a.j) = 'object'
$$;

CREATE OR REPLACE FUNCTION @schema@.pg_background_full_sql(pid pg_catalog.int4, cookie pg_catalog.int8) RETURNS pg_catalog.text
LANGUAGE sql STRICT AS $$ SELECT pgbg_private.ask_handle('info', pid, cookie) OPERATOR(pg_catalog.->>) 'full_sql' $$;

-- NULL before the first report, and for a handle this session does not track (only 42501 raises).
CREATE OR REPLACE FUNCTION @schema@.pg_background_get_progress(pid pg_catalog.int4, cookie pg_catalog.int8) RETURNS @schema@.pg_background_progress_info
LANGUAGE sql AS $$
  SELECT p.* FROM (SELECT pgbg_private.ask_handle('progress_info', pid, cookie) AS j) a,
    LATERAL pg_catalog.jsonb_populate_record(NULL::@schema@.pg_background_progress_info, a.j) p
   WHERE pg_catalog.jsonb_typeof(a.j) = 'object'
$$;

-- A snapshot that never raises: what would raise stays NULL.
CREATE OR REPLACE FUNCTION @schema@.pg_background_outcome(p_pid pg_catalog.int4, p_cookie pg_catalog.int8) RETURNS @schema@.pg_background_outcome
LANGUAGE sql AS $$
  SELECT * FROM pg_catalog.jsonb_populate_record(NULL::@schema@.pg_background_outcome,
    pg_catalog.jsonb_build_object('pid', p_pid, 'cookie', p_cookie) OPERATOR(pg_catalog.||)
    COALESCE(NULLIF(pgbg_private.ask_handle('outcome', p_pid, p_cookie), 'null'), '{}'))
$$;

-- The list the server answers for this session (only the workers whose owner role the caller has
-- the privileges of), in the ten columns of pg_background_list.
CREATE FUNCTION pgbg_private.list_rows() RETURNS TABLE (
  pid pg_catalog.int4, cookie pg_catalog.int8, launched_at pg_catalog.timestamptz, user_id pg_catalog.oid, queue_size pg_catalog.int4,
  state pg_catalog.text, sql_preview pg_catalog.text, last_error pg_catalog.text, consumed pg_catalog.bool, label pg_catalog.text)
LANGUAGE sql AS $$
  SELECT * FROM pg_catalog.jsonb_to_recordset(
    pgbg_private.ask(pg_catalog.jsonb_build_object('op', 'list', 'as_json', true) OPERATOR(pg_catalog.||) pgbg_private.limits()))
    AS l(pid pg_catalog.int4, cookie pg_catalog.int8, launched_at pg_catalog.timestamptz, user_id pg_catalog.oid, queue_size pg_catalog.int4,
         state pg_catalog.text, sql_preview pg_catalog.text, last_error pg_catalog.text, consumed pg_catalog.bool, label pg_catalog.text)
$$;

-- The caller's column list decides: nine columns (1.8's) or ten (with the label).
CREATE OR REPLACE FUNCTION @schema@.pg_background_list() RETURNS SETOF record
LANGUAGE plpgsql AS $$
BEGIN
  BEGIN
    RETURN QUERY SELECT * FROM pgbg_private.list_rows();
  EXCEPTION WHEN datatype_mismatch THEN
    BEGIN
      RETURN QUERY SELECT l.pid, l.cookie, l.launched_at, l.user_id, l.queue_size, l.state, l.sql_preview, l.last_error, l.consumed
        FROM pgbg_private.list_rows() l;
    EXCEPTION WHEN datatype_mismatch THEN
      RAISE EXCEPTION 'pg_background_list() requires a 9- or 10-column definition list' USING ERRCODE = 'datatype_mismatch',
        DETAIL = SQLERRM;
    END;
  END;
END $$;

CREATE OR REPLACE VIEW @schema@.pg_background_list AS
  SELECT * FROM @schema@.pg_background_list() AS l(pid pg_catalog.int4, cookie pg_catalog.int8, launched_at pg_catalog.timestamptz,
    user_id pg_catalog.oid, queue_size pg_catalog.int4, state pg_catalog.text, sql_preview pg_catalog.text, last_error pg_catalog.text,
    consumed pg_catalog.bool, label pg_catalog.text);

CREATE OR REPLACE VIEW @schema@.pg_background_activity AS
  SELECT l.pid, l.cookie, l.launched_at, l.user_id, l.queue_size, l.state AS pgbg_state, l.sql_preview, l.last_error, l.consumed, l.label,
         a.state AS backend_state, a.wait_event_type, a.wait_event, a.xact_start, a.query_start, a.backend_start, a.query
    FROM @schema@.pg_background_list l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid;

CREATE OR REPLACE FUNCTION @schema@.pg_background_stats() RETURNS @schema@.pg_background_stats
LANGUAGE sql AS $$
  SELECT * FROM pg_catalog.jsonb_populate_record(NULL::@schema@.pg_background_stats,
    pgbg_private.ask(pg_catalog.jsonb_build_object('op', 'stats', 'as_json', true) OPERATOR(pg_catalog.||) pgbg_private.limits()))
$$;

-- Called by the worker's SQL. The notice carries the report to the pgbg engine, which keeps the
-- latest value; client_min_messages is raised for the call so a caller's setting cannot hide it.
CREATE OR REPLACE FUNCTION @schema@.pg_background_report_progress(pct pg_catalog.int4, msg pg_catalog.text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SET client_min_messages = notice AS $$
BEGIN
  IF COALESCE(pg_catalog.current_setting('pgbg.worker', true), '') <> 'on' THEN
    RAISE EXCEPTION 'pg_background_report_progress can only be called from a background worker' USING ERRCODE = 'feature_not_supported';
  END IF;
  IF pct IS NULL THEN
    RAISE EXCEPTION 'pct must not be NULL' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  RAISE NOTICE USING MESSAGE = 'pg_background progress', ERRCODE = 'PB001',
    DETAIL = pg_catalog.json_build_object('pct', pg_catalog.int4smaller(100, pg_catalog.int4larger(0, pct)), 'msg', msg)::pg_catalog.text;
END $$;

CREATE FUNCTION pgbg_private.count(op pg_catalog.text, extra pg_catalog.jsonb DEFAULT '{}') RETURNS pg_catalog.int4
LANGUAGE sql AS $$
  SELECT (pgbg_private.ask(pg_catalog.jsonb_build_object('op', op, 'api', '2.0') OPERATOR(pg_catalog.||) extra) OPERATOR(pg_catalog.->>) 'count')::pg_catalog.int4
$$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_detach_all() RETURNS pg_catalog.int4
LANGUAGE sql AS $$ SELECT pgbg_private.count('detach_all') $$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_cancel_all() RETURNS pg_catalog.int4
LANGUAGE sql AS $$ SELECT pgbg_private.count('cancel_all') $$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_purge() RETURNS pg_catalog.int4
LANGUAGE sql AS $$ SELECT pgbg_private.count('purge') $$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_cancel_by_label(pattern pg_catalog.text, grace_ms pg_catalog.int4 DEFAULT 0) RETURNS pg_catalog.int4
LANGUAGE sql AS $$
  SELECT CASE WHEN pattern IS NULL THEN 0
    ELSE pgbg_private.count('cancel_by_label', pg_catalog.jsonb_build_object('pattern', pattern, 'grace_ms', COALESCE(grace_ms, 0))) END
$$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_record_timeout() RETURNS void
LANGUAGE sql AS $$ SELECT pgbg_private.call(pg_catalog.jsonb_build_object('op', 'record_timeout', 'api', '2.0')) $$;

-- Launch, wait, outcome and detach in one request; the worker's error is reported, not raised.
CREATE OR REPLACE FUNCTION @schema@.pg_background_run(sql pg_catalog.text, queue_size pg_catalog.int4 DEFAULT 0, timeout_ms pg_catalog.int4 DEFAULT 0,
    label pg_catalog.text DEFAULT NULL) RETURNS @schema@.pg_background_run_result
LANGUAGE sql AS $$
  SELECT * FROM pg_catalog.jsonb_populate_record(NULL::@schema@.pg_background_run_result,
    pgbg_private.ask(pgbg_private.launch_json('run', sql, queue_size, label)
      OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('timeout_ms', COALESCE(timeout_ms, 0))))
$$;

-- Launch and wait in one request (an overrun is canceled, counted and detached by the server),
-- then the rows through pg_background_result with the caller's column list: only a column list
-- is taken (the server checks it), never other SQL.
CREATE OR REPLACE FUNCTION @schema@.pg_background_run_query(sql pg_catalog.text, queue_size pg_catalog.int4 DEFAULT 0, timeout_ms pg_catalog.int4 DEFAULT 0,
    label pg_catalog.text DEFAULT NULL, col_def pg_catalog.text DEFAULT NULL) RETURNS SETOF record
LANGUAGE plpgsql AS $$
DECLARE
  a pg_catalog.jsonb := pgbg_private.ask(pgbg_private.launch_json('run_query', sql, queue_size, label)
    OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('timeout_ms', COALESCE(timeout_ms, 0), 'col_def', col_def));
BEGIN
  IF (a OPERATOR(pg_catalog.->>) 'timed_out')::pg_catalog.bool THEN
    RAISE EXCEPTION 'pg_background_run_query: worker did not complete within % ms', timeout_ms USING ERRCODE = 'query_canceled';
  END IF;
  IF a OPERATOR(pg_catalog.->>) 'sqlstate' IS NOT NULL THEN
    RAISE EXCEPTION '%', a OPERATOR(pg_catalog.->>) 'error_message' USING ERRCODE = a OPERATOR(pg_catalog.->>) 'sqlstate';
  END IF;
  IF col_def IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY EXECUTE pg_catalog.format('SELECT * FROM @schema@.pg_background_result(%s, %s) AS r(%s)',
    a OPERATOR(pg_catalog.->>) 'pid', a OPERATOR(pg_catalog.->>) 'cookie', col_def);
END $$;

CREATE OR REPLACE FUNCTION @schema@.pg_background_drain(handles @schema@.pg_background_handle[], timeout_ms pg_catalog.int4 DEFAULT 0) RETURNS SETOF @schema@.pg_background_outcome
LANGUAGE sql AS $$
  SELECT o.* FROM pg_catalog.jsonb_populate_recordset(NULL::@schema@.pg_background_outcome,
    pgbg_private.ask(pg_catalog.jsonb_build_object('op', 'drain', 'api', '2.0', 'handles', pgbg_private.handles_json(handles),
      'timeout_ms', COALESCE(timeout_ms, 0)))) o
$$;

-- The first handle, in array order, whose job has ended: the server answers the moment one ends.
CREATE OR REPLACE FUNCTION @schema@.pg_background_wait_any(handles @schema@.pg_background_handle[], timeout_ms pg_catalog.int4 DEFAULT 0) RETURNS @schema@.pg_background_handle
LANGUAGE sql AS $$
  SELECT h.* FROM (SELECT CASE WHEN pg_catalog.cardinality(handles) > 0 THEN
      pgbg_private.ask(pg_catalog.jsonb_build_object('op', 'wait_any', 'api', '2.0', 'handles', pgbg_private.handles_json(handles),
        'timeout_ms', COALESCE(timeout_ms, 0))) END AS j) a,
    LATERAL pg_catalog.jsonb_populate_record(NULL::@schema@.pg_background_handle, a.j) h
   WHERE pg_catalog.jsonb_typeof(a.j) = 'object'
$$;

-- The privilege helpers: the installer alone may execute them (see pgbg_private.grant_privileges).
CREATE OR REPLACE FUNCTION @schema@.pg_background_grant_privileges(role_name pg_catalog.text, print_commands pg_catalog.bool DEFAULT false) RETURNS pg_catalog.bool
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT pgbg_private.grant_privileges(role_name, print_commands) $$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_revoke_privileges(role_name pg_catalog.text, print_commands pg_catalog.bool DEFAULT false) RETURNS pg_catalog.bool
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$ SELECT pgbg_private.revoke_privileges(role_name, print_commands) $$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_drop_executor_role() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgbackground_role') THEN
    EXECUTE 'DROP ROLE pgbackground_role';
  END IF;
END $$;

-- The deprecated _v2 aliases: each the canonical function under its old name, same arguments,
-- defaults, result and errors (run_query_v2's timeout message names itself).
DO $$
DECLARE
  f record;
  def pg_catalog.text;
BEGIN
  FOR f IN SELECT p.oid, p.proname, p.oid::pg_catalog.regprocedure::pg_catalog.text AS sig FROM pg_catalog.pg_proc p
            WHERE p.pronamespace = '@schema@'::pg_catalog.regnamespace
              AND p.proname OPERATOR(pg_catalog.=) ANY (ARRAY['pg_background_launch', 'pg_background_submit', 'pg_background_result',
                'pg_background_detach', 'pg_background_cancel', 'pg_background_wait', 'pg_background_list', 'pg_background_stats',
                'pg_background_get_progress', 'pg_background_result_info', 'pg_background_error_info', 'pg_background_full_sql',
                'pg_background_detach_all', 'pg_background_cancel_all', 'pg_background_outcome', 'pg_background_run', 'pg_background_drain',
                'pg_background_wait_any', 'pg_background_cancel_by_label', 'pg_background_purge', 'pg_background_run_query']) LOOP
    def := pg_catalog.replace(pg_catalog.pg_get_functiondef(f.oid), '.' || f.proname || '(', '.' || f.proname || '_v2(');
    def := pg_catalog.replace(def, 'pg_background_run_query: worker', 'pg_background_run_query_v2: worker');
    EXECUTE def;
    EXECUTE pg_catalog.format('COMMENT ON FUNCTION %s IS %L', pg_catalog.replace(f.sig, f.proname || '(', f.proname || '_v2('),
      'DEPRECATED in 2.0: use ' || f.proname || '. Removed in 3.0.');
  END LOOP;
END $$;

-- No ambient access: revoked from PUBLIC; pgbackground_role may call the wrappers and read the
-- views, not the helpers (grant, revoke, drop_executor_role).
DO $$
DECLARE
  f record;
BEGIN
  FOR f IN SELECT p.oid::pg_catalog.regprocedure AS sig, p.prosecdef FROM pg_catalog.pg_proc p
            WHERE p.pronamespace = '@schema@'::pg_catalog.regnamespace AND p.proname OPERATOR(pg_catalog.~) '^pg_background_' LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f.sig);
    IF NOT f.prosecdef THEN
      EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO pgbackground_role', f.sig);
    END IF;
  END LOOP;
END $$;
REVOKE ALL ON TYPE @schema@.pg_background_stats, @schema@.pg_background_progress_info, @schema@.pg_background_result_info,
  @schema@.pg_background_error, @schema@.pg_background_outcome, @schema@.pg_background_run_result FROM PUBLIC;
GRANT USAGE ON TYPE @schema@.pg_background_stats, @schema@.pg_background_progress_info, @schema@.pg_background_result_info,
  @schema@.pg_background_error, @schema@.pg_background_outcome, @schema@.pg_background_run_result TO pgbackground_role;
REVOKE ALL ON @schema@.pg_background_list, @schema@.pg_background_activity FROM PUBLIC;
GRANT SELECT ON @schema@.pg_background_list, @schema@.pg_background_activity TO pgbackground_role;
GRANT EXECUTE ON FUNCTION pgbg_private.ask_handle(pg_catalog.text, pg_catalog.int4, pg_catalog.int8, pg_catalog.jsonb),
  pgbg_private.handles_json(@schema@.pg_background_handle[]), pgbg_private.launch_labelled(pg_catalog.text, pg_catalog.text, pg_catalog.int4, pg_catalog.text),
  pgbg_private.list_rows(), pgbg_private.count(pg_catalog.text, pg_catalog.jsonb) TO pgbackground_role;
