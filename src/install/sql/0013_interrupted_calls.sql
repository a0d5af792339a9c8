-- pgbg SQL API 0013: wait_v2_timeout gives way to statement_timeout and Ctrl-C.
-- It read its answer with dblink's synchronous call, which on an interrupt keeps
-- reading until the answer comes: up to the whole timeout. Sent asynchronously, the
-- wait stops at once; the next call settles the abandoned request (0011).
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
