-- pgbg SQL API 0004: worker notices reach the caller. dblink does not pass
-- remote notices on, so after relaying a result the wrappers fetch the job's
-- notices and raise them here.
CREATE FUNCTION pgbg_private.raise_notices(pid int4) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  n record;
BEGIN
  FOR n IN SELECT * FROM @dblink@.dblink(pgbg_private.conn(), json_build_object('op', 'notices', 'pid', pid)::text)
      AS t(severity text, message text, detail text, hint text) LOOP
    IF n.severity = 'WARNING' THEN
      RAISE WARNING '%', n.message USING DETAIL = COALESCE(n.detail, ''), HINT = COALESCE(n.hint, '');
    ELSE
      RAISE NOTICE '%', n.message USING DETAIL = COALESCE(n.detail, ''), HINT = COALESCE(n.hint, '');
    END IF;
  END LOOP;
END $$;
REVOKE ALL ON FUNCTION pgbg_private.raise_notices(int4) FROM PUBLIC;

CREATE OR REPLACE FUNCTION @schema@.pg_background_result_v2(pid int4, cookie int8) RETURNS SETOF record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  RETURN QUERY EXECUTE pgbg_private.result_query(pid, cookie);
  PERFORM pgbg_private.raise_notices(pid);
EXCEPTION WHEN datatype_mismatch THEN
  RAISE EXCEPTION 'remote query result rowtype does not match the specified FROM clause rowtype' USING ERRCODE = 'datatype_mismatch';
END $$;
CREATE OR REPLACE FUNCTION @schema@.pg_background_result(pid int4) RETURNS SETOF record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  RETURN QUERY EXECUTE pgbg_private.result_query(pid, NULL);
  PERFORM pgbg_private.raise_notices(pid);
EXCEPTION WHEN datatype_mismatch THEN
  RAISE EXCEPTION 'remote query result rowtype does not match the specified FROM clause rowtype' USING ERRCODE = 'datatype_mismatch';
END $$;
