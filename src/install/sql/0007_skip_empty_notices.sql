-- pgbg SQL API 0007: a result whose job ended without notices skips the notices request.
-- describe_v2 also tells how many notices are still to raise (-1 while the job runs);
-- result_query leaves that count in a transaction-local setting for the result function.
CREATE OR REPLACE FUNCTION pgbg_private.result_query(pid int4, cookie int8) RETURNS pg_catalog.text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  c text := pgbg_private.conn();
  coldefs text;
  pending int4;
BEGIN
  -- Pseudo-typed columns (void, e.g. SELECT pg_sleep(1)) arrive as text; columns are named by position.
  SELECT string_agg(format('c%s %s', t.position, CASE WHEN ty.typtype = 'p' THEN 'text' ELSE format_type(t.type_oid, NULL) END),
                    ', ' ORDER BY t.position), max(t.notices) INTO coldefs, pending
    FROM @dblink@.dblink(c, pgbg_private.handle_json('describe_v2', pid, cookie)::text) AS t(position int4, name text, type_oid oid, notices int4)
    LEFT JOIN pg_type ty ON ty.oid = t.type_oid;
  PERFORM set_config('pgbg.notices_pending', pending::text, true);
  RETURN format('SELECT * FROM @dblink@.dblink(%L, %L) AS t(%s)', c, pgbg_private.handle_json('result', pid, cookie)::text, coldefs);
END $$;

CREATE OR REPLACE FUNCTION @schema@.pg_background_result_v2(pid int4, cookie int8) RETURNS SETOF record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  RETURN QUERY EXECUTE pgbg_private.result_query(pid, cookie);
  IF current_setting('pgbg.notices_pending', true) IS DISTINCT FROM '0' THEN
    PERFORM pgbg_private.raise_notices(pid);
  END IF;
EXCEPTION WHEN datatype_mismatch THEN
  RAISE EXCEPTION 'remote query result rowtype does not match the specified FROM clause rowtype' USING ERRCODE = 'datatype_mismatch';
END $$;

CREATE OR REPLACE FUNCTION @schema@.pg_background_result(pid int4) RETURNS SETOF record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  RETURN QUERY EXECUTE pgbg_private.result_query(pid, NULL);
  IF current_setting('pgbg.notices_pending', true) IS DISTINCT FROM '0' THEN
    PERFORM pgbg_private.raise_notices(pid);
  END IF;
EXCEPTION WHEN datatype_mismatch THEN
  RAISE EXCEPTION 'remote query result rowtype does not match the specified FROM clause rowtype' USING ERRCODE = 'datatype_mismatch';
END $$;
