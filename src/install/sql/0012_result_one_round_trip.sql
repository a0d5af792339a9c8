-- pgbg SQL API 0012: a result in one round trip, and a wait for its rows that a cancel can stop.
-- The result wrappers asked for the columns (describe_v2), then for the rows (result): two
-- round trips. Now one request (describe_result), read through dblink's asynchronous calls,
-- is answered once the job has ended or filled its queue: with the columns, and — when the
-- job has ended and its rows are few (≤ 256 kB) — with the rows as a second result set:
-- launch + result of a small job costs one round trip less. Many rows still stream through
-- a `result` request (dblink's synchronous call reads them into a tuplestore; its
-- asynchronous one would hold them all in memory).
-- Waiting asynchronously also lets statement_timeout and Ctrl-C stop a result that waits
-- for its job; the wrapper, or else the next call (0011), settles the abandoned request.

-- Sends describe_result on `c`, reads the columns, and returns the query that reads the rows:
-- the answer's second result set, or (inline false) a `result` request of their own.
CREATE FUNCTION pgbg_private.result_rows_query(c text, pid int4, cookie int8) RETURNS pg_catalog.text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  coldefs text;
  pending int4;
  inline bool;
BEGIN
  IF @dblink@.dblink_send_query(c, pgbg_private.handle_json('describe_result', pid, cookie)::text) <> 1 THEN
    RAISE EXCEPTION 'could not send a request to the pgbg server' USING ERRCODE = 'connection_failure',
      DETAIL = @dblink@.dblink_error_message(c);
  END IF;
  -- Pseudo-typed columns (void, e.g. SELECT pg_sleep(1)) arrive as text; columns are named by position.
  SELECT string_agg(format('c%s %s', t.position, CASE WHEN ty.typtype = 'p' THEN 'text' ELSE format_type(t.type_oid, NULL) END),
                    ', ' ORDER BY t.position), max(t.notices), COALESCE(bool_and(t.inline), false)
    INTO coldefs, pending, inline
    FROM @dblink@.dblink_get_result(c) AS t(position int4, name text, type_oid oid, notices int4, inline bool)
    LEFT JOIN pg_type ty ON ty.oid = t.type_oid;
  PERFORM set_config('pgbg.notices_pending', pending::text, true);
  IF inline THEN
    RETURN format('SELECT * FROM @dblink@.dblink_get_result(%L) AS t(%s)', c, coldefs);
  END IF;
  PERFORM * FROM @dblink@.dblink_get_result(c) AS t(x text);  -- the answer's end
  RETURN format('SELECT * FROM @dblink@.dblink(%L, %L) AS t(%s)', c, pgbg_private.handle_json('result', pid, cookie)::text, coldefs);
END $$;
REVOKE ALL ON FUNCTION pgbg_private.result_rows_query(text, int4, int8) FROM PUBLIC;

CREATE OR REPLACE FUNCTION @schema@.pg_background_result_v2(pid int4, cookie int8) RETURNS SETOF record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  c text := pgbg_private.conn();
BEGIN
  RETURN QUERY EXECUTE pgbg_private.result_rows_query(c, pid, cookie);
  -- The end of an answer with the rows in it (nothing is left after streamed rows).
  PERFORM * FROM @dblink@.dblink_get_result(c) AS t(x text);
  IF current_setting('pgbg.notices_pending', true) IS DISTINCT FROM '0' THEN
    PERFORM pgbg_private.raise_notices(pid);
  END IF;
EXCEPTION
  WHEN datatype_mismatch THEN
    PERFORM pgbg_private.settle(c);
    RAISE EXCEPTION 'remote query result rowtype does not match the specified FROM clause rowtype' USING ERRCODE = 'datatype_mismatch';
  WHEN OTHERS THEN
    PERFORM pgbg_private.settle(c);
    RAISE;
END $$;

CREATE OR REPLACE FUNCTION @schema@.pg_background_result(pid int4) RETURNS SETOF record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  c text := pgbg_private.conn();
BEGIN
  RETURN QUERY EXECUTE pgbg_private.result_rows_query(c, pid, NULL);
  PERFORM * FROM @dblink@.dblink_get_result(c) AS t(x text);
  IF current_setting('pgbg.notices_pending', true) IS DISTINCT FROM '0' THEN
    PERFORM pgbg_private.raise_notices(pid);
  END IF;
EXCEPTION
  WHEN datatype_mismatch THEN
    PERFORM pgbg_private.settle(c);
    RAISE EXCEPTION 'remote query result rowtype does not match the specified FROM clause rowtype' USING ERRCODE = 'datatype_mismatch';
  WHEN OTHERS THEN
    PERFORM pgbg_private.settle(c);
    RAISE;
END $$;
