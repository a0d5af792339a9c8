-- pgbg SQL API 0011: a request canceled while it waited no longer blocks the next one.
-- When statement_timeout or Ctrl-C interrupts a wrapper waiting on the server (wait,
-- result, …), dblink leaves that request's answer unread and the backend's connection
-- busy; the next request then hung until the server answered the old one, and failed.
-- Now the next request finds the abandoned answer — still coming (the connection is
-- busy: it cancels the old request, which the server answers at once, the job itself
-- untouched) or already arrived whole — and reads it away first (~2 µs per call when
-- there is none).

-- Only a busy connection has a request to cancel (a cancel opens a connection of its own).
CREATE FUNCTION pgbg_private.settle(c pg_catalog.text) RETURNS void
LANGUAGE plpgsql SET client_min_messages = warning AS $$
BEGIN
  IF @dblink@.dblink_is_busy(c) = 1 THEN
    PERFORM @dblink@.dblink_cancel_query(c);
  END IF;
  -- An answer is at most two result sets and its end; one of another shape is read and dropped all the same.
  FOR i IN 1..3 LOOP
    BEGIN
      PERFORM * FROM @dblink@.dblink_get_result(c, false) AS t(x pg_catalog.text);
    EXCEPTION WHEN OTHERS THEN
      NULL;
    END;
  END LOOP;
END $$;
REVOKE ALL ON FUNCTION pgbg_private.settle(pg_catalog.text) FROM PUBLIC;

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
