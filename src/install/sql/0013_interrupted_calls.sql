-- pgbg SQL API 0013: interrupted calls, the rest of 0011.
-- 1. wait_v2_timeout gives way to statement_timeout and Ctrl-C. It read its answer
--    with dblink's synchronous call, which on an interrupt keeps reading until the
--    answer comes: up to the whole timeout. Sent asynchronously, the wait stops at
--    once; the next call settles the abandoned request.
-- 2. An abandoned request whose answer arrived whole before the next call: the
--    connection is not busy then, but the answer is still unread, and the next call
--    failed once ("another command is already in progress"). conn() now reads such
--    an answer away too (~2 µs per call when there is none).
CREATE OR REPLACE FUNCTION @schema@.pg_background_wait_v2_timeout(pid int4, cookie int8, timeout_ms int4) RETURNS bool
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  c text := pgbg_private.conn();
  finished bool;
BEGIN
  IF @dblink@.dblink_send_query(c, (pgbg_private.handle_json('wait_timeout', pid, cookie)::jsonb
        || jsonb_build_object('timeout_ms', timeout_ms))::text) <> 1 THEN
    RAISE EXCEPTION 'could not send a request to the pgbg server' USING ERRCODE = 'connection_failure',
      DETAIL = @dblink@.dblink_error_message(c);
  END IF;
  -- An error answer (e.g. 42704) is raised here; its end is read by the next call's check (0011).
  SELECT t.finished INTO finished FROM @dblink@.dblink_get_result(c) AS t(finished bool);
  PERFORM * FROM @dblink@.dblink_get_result(c) AS t(x text);  -- the answer's end
  RETURN finished;
END $$;

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
      IF @dblink@.dblink_is_busy(wanted) = 1 THEN
        PERFORM pgbg_private.settle(wanted);
      ELSE
        -- Nothing to read on an idle connection: an empty set at once. An answer left
        -- behind comes out as a row or as an error (its own, or a shape other than this one).
        BEGIN
          PERFORM * FROM @dblink@.dblink_get_result(wanted) AS t(x text);
          IF FOUND THEN
            PERFORM pgbg_private.settle(wanted);
          END IF;
        EXCEPTION WHEN OTHERS THEN
          PERFORM pgbg_private.settle(wanted);
        END;
      END IF;
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
