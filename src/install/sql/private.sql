-- The pgbg SQL API's private part, shared by both surfaces it serves (pg_background 1.8 and
-- 2.0, each in api-<version>.sql): the identity and transport every wrapper uses, and the
-- privilege helpers' logic.
--
-- Install fills in the placeholders (words between at-signs): the API's schema, the schema of
-- dblink's functions, the names and values of the settings a worker takes from its caller
-- (the one list in src/sql/carried-settings.ts), and the name of the surface's grant helper.
--
-- Identity. Every wrapper is SECURITY INVOKER: it runs as the code that called it. A job runs
-- as that code's effective role (current_user), proved to the server on every request:
--  * the foreign server `pgbg` (made by install) points at the endpoint; each role allowed to
--    use the API has a USER MAPPING holding its own random secret (PostgreSQL shows a mapping's
--    options only to its role), and the server keeps only values derived from it;
--  * dblink_connect(name, 'pgbg') logs in with the mapping of current_user;
--  * because any code in a backend can use a dblink connection by name, a connection proves
--    nothing by itself: each request carries a proof computed from current_user's secret,
--    bound to the connection's nonce, a growing sequence number and the request's text.
-- No function here is SECURITY DEFINER except the two privilege helpers, which the installer
-- alone may execute, evaluate nothing but a role name, and qualify everything.


-- The handle type outlives an upgrade (a caller's table may store handles): made only where missing.
DO $$ BEGIN
  IF pg_catalog.to_regtype('@schema@.pg_background_handle') IS NULL THEN
    CREATE TYPE @schema@.pg_background_handle AS (pid pg_catalog.int4, cookie pg_catalog.int8);
  END IF;
END $$;

-- Which run of the server the caller's connections belong to: each start writes a new one, so a
-- connection left from an earlier run is replaced instead of failing. Not secret.
-- (Tables are kept by ALTER EXTENSION UPDATE, which runs this part again.)
CREATE TABLE IF NOT EXISTS pgbg_private.server (generation pg_catalog.text NOT NULL);
INSERT INTO pgbg_private.server (generation) SELECT '' WHERE NOT EXISTS (SELECT FROM pgbg_private.server);

-- What the server verifies a role's requests with: values derived from the role's secret,
-- never the secret (which only the role's user mapping holds). Read by the server only.
CREATE TABLE IF NOT EXISTS pgbg_private.role_keys (
  role_oid pg_catalog.oid PRIMARY KEY,
  -- sha256(secret): checks a request proof (see pgbg_private.request)
  proof_key pg_catalog.bytea NOT NULL,
  -- a SCRAM-SHA-256 verifier of the secret: checks the endpoint login
  scram pg_catalog.text NOT NULL,
  created_at pg_catalog.timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- The caller backend's connection for current_user, opened (and introduced with `hello`) on
-- first use, and one signed request on it: {connection name, request text, answer key}.
-- (search_path pinned: the role's secret passes through these functions' operators.)
--
-- A connection is named pgbg_<role oid>_<generation>_<nonce>. The nonce is chosen here and
-- bound into every proof, so a proof is good on that one connection only; the server takes each
-- sequence number once per connection, so a proof cannot be replayed there either.
CREATE FUNCTION pgbg_private.request(body pg_catalog.text) RETURNS pg_catalog.text[]
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  me record;
  secret pg_catalog.text;
  prefix pg_catalog.text;
  conn pg_catalog.text;
  existing pg_catalog.text;
  nonce pg_catalog.text;
  doubled pg_catalog.bool := false;
  stale pg_catalog.text[] := '{}';
  app pg_catalog.text;
BEGIN
  SELECT m.umuser, m.umoptions INTO me FROM pg_catalog.pg_user_mappings m
   WHERE m.srvname = 'pgbg' AND m.usename OPERATOR(pg_catalog.=) CURRENT_USER;
  SELECT pg_catalog.substr(o, 10) INTO secret FROM pg_catalog.unnest(me.umoptions) AS o WHERE pg_catalog.starts_with(o, 'password=');
  IF secret IS NULL THEN
    RAISE EXCEPTION 'role "%" may not use pg_background', CURRENT_USER USING ERRCODE = 'insufficient_privilege',
      DETAIL = 'A job runs as the role of the code that launches it, and this role has no pgbg credentials.',
      HINT = pg_catalog.format('An administrator can run: SELECT @grant_helper@(%L)', CURRENT_USER);
  END IF;
  prefix := 'pgbg_' || me.umuser::pg_catalog.text || '_' || (SELECT pg_catalog.left(pg_catalog.md5(s.generation), 8) FROM pgbg_private.server s LIMIT 1) || '_';
  FOREACH existing IN ARRAY COALESCE(@dblink@.dblink_get_connections(), '{}') LOOP
    IF pg_catalog.starts_with(existing, prefix) AND conn IS NULL AND NOT doubled THEN
      conn := existing;
    ELSIF pg_catalog.starts_with(existing, 'pgbg_' || me.umuser::pg_catalog.text || '_') AND NOT pg_catalog.starts_with(existing, prefix) THEN
      -- An earlier server run's (or install's): never used again, and closed once the new one has
      -- said hello, so that the server keeps this backend's session (and its handles) meanwhile.
      stale := stale || existing;
    ELSIF pg_catalog.starts_with(existing, 'pgbg_' || me.umuser::pg_catalog.text || '_') THEN
      -- A second one under this role's name: this backend's code may have opened either, so
      -- neither is trusted; a fresh one replaces them.
      PERFORM @dblink@.dblink_disconnect(existing);
      IF conn IS NOT NULL THEN
        PERFORM @dblink@.dblink_disconnect(conn);
        conn := NULL;
        doubled := true;
      END IF;
    END IF;
  END LOOP;
  IF conn IS NULL THEN
    nonce := pg_catalog.replace(pg_catalog.gen_random_uuid()::pg_catalog.text, '-', '');
    conn := prefix || nonce;
    PERFORM @dblink@.dblink_connect(conn, 'pgbg');
    -- Only code running in this backend can set its application_name, which pg_stat_activity shows
    -- to everyone: the server reads it during the hello, so a hello cannot claim another backend.
    -- It shows (half of) the nonce's hash, as application_name holds 63 bytes: a role watching
    -- pg_stat_activity cannot say hello with it.
    -- (Set for the transaction and put back at once: the caller's own name returns at its end too.)
    app := pg_catalog.current_setting('application_name');
    PERFORM pg_catalog.set_config('application_name', 'pgbg hello ' || pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(nonce, 'UTF8')), 'hex'), 32), true);
    BEGIN
      PERFORM @dblink@.dblink_exec(conn, (pgbg_private.sign(secret, nonce,
        pg_catalog.json_build_object('op', 'hello', 'nonce', nonce, 'backend_pid', pg_catalog.pg_backend_pid())::pg_catalog.text))[1]);
    EXCEPTION WHEN OTHERS THEN
      -- A connection without its hello answers nothing but errors: the next call opens another.
      PERFORM @dblink@.dblink_disconnect(conn);
      RAISE;
    END;
    PERFORM pg_catalog.set_config('application_name', app, true);
    FOREACH existing IN ARRAY stale LOOP
      PERFORM @dblink@.dblink_disconnect(existing);
    END LOOP;
  ELSE
    nonce := pg_catalog.substr(conn, pg_catalog.length(prefix) + 1);
    PERFORM pgbg_private.settle(conn);
  END IF;
  RETURN ARRAY[conn] || pgbg_private.sign(secret, nonce, body);
END $$;

-- `pgbg1 <seq> <proof>\n<body>`: proof = secret XOR sha256(sha256(secret) || "<nonce> <seq> " || body),
-- as bits. The server holds sha256(secret): it recomputes the hash, recovers the secret from the
-- proof and checks its sha256, so what it stores is useless for making a proof (as in SCRAM).
-- Also returns the request's answer key, sha256(sha256(secret) || "answer <nonce> <seq>"): the
-- server vouches for the answers the wrappers act on (the columns of a result) with it.
CREATE FUNCTION pgbg_private.sign(secret pg_catalog.text, nonce pg_catalog.text, body pg_catalog.text) RETURNS pg_catalog.text[]
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  seq pg_catalog.text := pg_catalog.floor(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) * 1000000)::pg_catalog.int8::pg_catalog.text;
  key pg_catalog.bytea := pg_catalog.sha256(pg_catalog.decode(secret, 'hex'));
  mac pg_catalog.bytea := pg_catalog.sha256(key || pg_catalog.convert_to(nonce || ' ' || seq || ' ' || body, 'UTF8'));
BEGIN
  RETURN ARRAY['pgbg1 ' || seq || ' '
    || ((('x' || secret)::pg_catalog.bit(256)) # (('x' || pg_catalog.encode(mac, 'hex'))::pg_catalog.bit(256)))::pg_catalog.text
    || E'\n' || body,
    pg_catalog.encode(pg_catalog.sha256(key || pg_catalog.convert_to('answer ' || nonce || ' ' || seq, 'UTF8')), 'hex')];
END $$;

-- A request abandoned by statement_timeout or Ctrl-C leaves its answer unread and the connection
-- busy: cancel it (the server answers at once, the job itself untouched) and read it away.
CREATE FUNCTION pgbg_private.settle(conn pg_catalog.text) RETURNS void
LANGUAGE plpgsql SET client_min_messages = warning AS $$
BEGIN
  IF NOT conn = ANY (COALESCE(@dblink@.dblink_get_connections(), '{}')) THEN
    RETURN;  -- dropped (an answer that did not come from the server)
  END IF;
  IF @dblink@.dblink_is_busy(conn) = 1 THEN
    PERFORM @dblink@.dblink_cancel_query(conn);
  ELSE
    -- Nothing to read on an idle connection: an empty set at once. An answer left behind
    -- comes out as a row, as an error of another shape than this one, or — an error answer,
    -- read without raising it (a canceled request's is 57014, which OTHERS does not catch) —
    -- as an empty set with the connection's error message set.
    BEGIN
      PERFORM * FROM @dblink@.dblink_get_result(conn, false) AS t(x pg_catalog.text);
      IF NOT FOUND AND @dblink@.dblink_error_message(conn) = 'OK' THEN RETURN; END IF;
    EXCEPTION WHEN OTHERS THEN
      NULL;
    END;
  END IF;
  -- An answer is at most two result sets and its end; one of another shape is read and dropped all the same.
  FOR i IN 1..3 LOOP
    BEGIN
      PERFORM * FROM @dblink@.dblink_get_result(conn, false) AS t(x pg_catalog.text);
    EXCEPTION WHEN OTHERS THEN
      NULL;
    END;
  END LOOP;
END $$;

-- The settings a worker copies from its caller; a setting this PostgreSQL lacks reads NULL and is
-- left out. Application settings (myapp.tenant) come when named: SET pgbg.carry_settings = 'myapp.tenant'.
CREATE FUNCTION pgbg_private.caller_settings() RETURNS pg_catalog.json
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF COALESCE(pg_catalog.current_setting('pgbg.carry_settings', true), '') <> '' THEN
    RETURN (SELECT pg_catalog.json_object_agg(n, v) FROM (
      SELECT n, pg_catalog.current_setting(n, true) AS v
        FROM pg_catalog.unnest(@carried_names@ OPERATOR(pg_catalog.||) pg_catalog.string_to_array(
               pg_catalog.replace(pg_catalog.current_setting('pgbg.carry_settings', true), ' ', ''), ',')) AS n
       WHERE n <> ''
    ) s WHERE v IS NOT NULL);
  END IF;
  RETURN pg_catalog.json_strip_nulls(pg_catalog.json_object(@carried_names@, @carried_values@));
END $$;

-- A time setting as SHOW writes it ('0', '250ms', '5s') in milliseconds; a bare number is ms.
CREATE FUNCTION pgbg_private.ms(setting pg_catalog.text) RETURNS pg_catalog.int8
LANGUAGE sql IMMUTABLE AS $$
  SELECT (pg_catalog.date_part('epoch', (CASE WHEN setting OPERATOR(pg_catalog.~) '^[0-9]+$' THEN setting || 'ms' ELSE setting END)::pg_catalog.interval) * 1000)::pg_catalog.int8
$$;

-- The session settings that shape the server's answers (pg_background.*; unset = the default).
CREATE FUNCTION pgbg_private.limits() RETURNS pg_catalog.jsonb
LANGUAGE sql STABLE AS $$
  SELECT pg_catalog.jsonb_build_object(
    'api', '@api_version@',
    'max_workers', COALESCE(NULLIF(pg_catalog.current_setting('pg_background.max_workers', true), ''), '16')::pg_catalog.int4,
    'default_queue_size', pg_catalog.pg_size_bytes(COALESCE(NULLIF(pg_catalog.current_setting('pg_background.default_queue_size', true), ''), '64kB')),
    'worker_timeout_ms', pgbg_private.ms(COALESCE(NULLIF(pg_catalog.current_setting('pg_background.worker_timeout', true), ''), '0')))
$$;

CREATE FUNCTION pgbg_private.handle_json(op pg_catalog.text, pid pg_catalog.int4, cookie pg_catalog.int8) RETURNS pg_catalog.jsonb
LANGUAGE sql STABLE AS $$
  SELECT pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object('op', op, 'pid', pid, 'cookie', cookie::pg_catalog.text, 'api', '@api_version@'))
$$;

-- A request sent (asynchronously, so that statement_timeout and Ctrl-C stop one that waits for
-- a job's end; the next call settles it); its answer is the caller's to read. A connection that
-- cannot take it (the server restarted or dropped it) was sent nothing: it is closed and the
-- request goes once more, on a new one.
CREATE FUNCTION pgbg_private.send(body pg_catalog.text) RETURNS pg_catalog.text[]
LANGUAGE plpgsql AS $$
DECLARE
  r pg_catalog.text[] := pgbg_private.request(body);
BEGIN
  IF @dblink@.dblink_send_query(r[1], r[2]) = 1 THEN
    RETURN r;
  END IF;
  PERFORM @dblink@.dblink_disconnect(r[1]);
  r := pgbg_private.request(body);
  IF @dblink@.dblink_send_query(r[1], r[2]) <> 1 THEN
    RAISE EXCEPTION 'could not send a request to the pgbg server' USING ERRCODE = 'connection_failure',
      DETAIL = @dblink@.dblink_error_message(r[1]);
  END IF;
  RETURN r;
END $$;

-- A request answered by a command tag alone.
CREATE FUNCTION pgbg_private.call(body pg_catalog.jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  r pg_catalog.text[];
BEGIN
  r := pgbg_private.send(body::pg_catalog.text);
  PERFORM * FROM @dblink@.dblink_get_result(r[1]) AS t(tag pg_catalog.text);
  PERFORM * FROM @dblink@.dblink_get_result(r[1]) AS t(x pg_catalog.text);  -- the answer's end
EXCEPTION WHEN OTHERS OR query_canceled THEN
  @reraise@
END $$;

-- A launch request: the SQL, its queue size and label, and what the worker takes from its caller.
CREATE FUNCTION pgbg_private.launch_json(op pg_catalog.text, sql pg_catalog.text, queue_size pg_catalog.int4, label pg_catalog.text) RETURNS pg_catalog.jsonb
LANGUAGE sql STABLE AS $$
  SELECT pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
    'op', op, 'sql', sql, 'queue_size', COALESCE(queue_size, 0), 'label', NULLIF(label, ''),
    'settings', COALESCE(pgbg_private.caller_settings(), '{}'::pg_catalog.json),
    'statement_timeout_ms', pgbg_private.ms(pg_catalog.current_setting('statement_timeout')))) OPERATOR(pg_catalog.||) pgbg_private.limits()
$$;

-- A request answered by one JSON value. An error answer is raised here.
CREATE FUNCTION pgbg_private.ask(body pg_catalog.jsonb) RETURNS pg_catalog.jsonb
LANGUAGE plpgsql AS $$
DECLARE
  r pg_catalog.text[];
  answer pg_catalog.jsonb;
BEGIN
  r := pgbg_private.send(body::pg_catalog.text);
  SELECT t.answer INTO answer FROM @dblink@.dblink_get_result(r[1]) AS t(answer pg_catalog.jsonb);
  PERFORM * FROM @dblink@.dblink_get_result(r[1]) AS t(x pg_catalog.text);  -- the answer's end
  RETURN answer;
EXCEPTION
  WHEN query_canceled THEN
    -- (run and run_query launch: one still waiting for a worker must not run later.)
    IF r IS NOT NULL THEN
      PERFORM pgbg_private.give_up(r[1]);
    END IF;
    @reraise@
  WHEN OTHERS THEN
    @reraise@
END $$;

-- A request given up by statement_timeout or Ctrl-C while the server still works on it is
-- canceled at once (the next call would, but only then), so that the server stops at once too:
-- a launch still waiting for a worker is dropped. True if there was one to cancel.
CREATE FUNCTION pgbg_private.give_up(conn pg_catalog.text) RETURNS pg_catalog.bool
LANGUAGE plpgsql SET client_min_messages = warning AS $$
BEGIN
  IF NOT conn = ANY (COALESCE(@dblink@.dblink_get_connections(), '{}')) THEN
    RETURN false;  -- dropped
  END IF;
  IF @dblink@.dblink_is_busy(conn) = 0 THEN
    RETURN false;
  END IF;
  PERFORM @dblink@.dblink_cancel_query(conn);
  RETURN true;  -- the next call reads the answer away
END $$;

-- A launch given up must never run: one that still waits for a worker (the pool at its caps) is
-- dropped by the server; one answered just as the caller gave up is canceled.
CREATE FUNCTION pgbg_private.abandon_launch(conn pg_catalog.text) RETURNS void
LANGUAGE plpgsql SET client_min_messages = warning AS $$
DECLARE
  h record;
BEGIN
  IF pgbg_private.give_up(conn) THEN
    RETURN;
  END IF;
  IF NOT conn = ANY (COALESCE(@dblink@.dblink_get_connections(), '{}')) THEN
    RETURN;
  END IF;
  BEGIN
    SELECT t.pid, t.cookie INTO h FROM @dblink@.dblink_get_result(conn) AS t(pid pg_catalog.int4, cookie pg_catalog.int8);
    PERFORM * FROM @dblink@.dblink_get_result(conn) AS t(x pg_catalog.text);  -- the answer's end
  EXCEPTION WHEN OTHERS THEN
    RETURN;  -- an error answer: nothing was launched
  END;
  IF h.pid IS NOT NULL THEN
    PERFORM pgbg_private.call(pgbg_private.handle_json('cancel', h.pid, h.cookie));
  END IF;
END $$;

-- Sent asynchronously, so that statement_timeout and Ctrl-C stop a launch that waits for a worker
-- (a synchronous dblink call waits for the answer even when interrupted).
CREATE FUNCTION pgbg_private.launch(op pg_catalog.text, sql pg_catalog.text, queue_size pg_catalog.int4, label pg_catalog.text DEFAULT NULL) RETURNS @schema@.pg_background_handle
LANGUAGE plpgsql AS $$
DECLARE
  r pg_catalog.text[];
  h @schema@.pg_background_handle;
BEGIN
  r := pgbg_private.send(pgbg_private.launch_json(op, sql, queue_size, label)::pg_catalog.text);
  -- An error answer is raised here; its end is read by the next call's settle.
  SELECT t.pid, t.cookie INTO h FROM @dblink@.dblink_get_result(r[1]) AS t(pid pg_catalog.int4, cookie pg_catalog.int8);
  PERFORM * FROM @dblink@.dblink_get_result(r[1]) AS t(x pg_catalog.text);  -- the answer's end
  RETURN h;
EXCEPTION
  WHEN query_canceled THEN
    IF r IS NOT NULL THEN
      PERFORM pgbg_private.abandon_launch(r[1]);
    END IF;
    @reraise@
  WHEN OTHERS THEN
    @reraise@
END $$;

-- Worker notices reach the caller: dblink does not pass remote notices on, so the wrappers
-- fetch a job's notices once its rows are read and raise them here. The server counts them as
-- raised only once its answer went out whole: sent asynchronously, so that a caller giving up
-- (statement_timeout, Ctrl-C) cancels the request while the server is still on it, and the job's
-- result then raises them; an answer that came all the same is raised on the way out.
CREATE FUNCTION pgbg_private.raise_notices(pid pg_catalog.int4) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  r pg_catalog.text[] := pgbg_private.send(pg_catalog.json_build_object('op', 'notices', 'pid', pid)::pg_catalog.text);
  n record;
BEGIN
  BEGIN
    FOR n IN SELECT * FROM @dblink@.dblink_get_result(r[1]) AS t(severity pg_catalog.text, message pg_catalog.text, detail pg_catalog.text, hint pg_catalog.text) LOOP
      IF n.severity = 'WARNING' THEN
        @raise_warning@
      ELSE
        @raise_notice@
      END IF;
    END LOOP;
  EXCEPTION WHEN query_canceled THEN
    FOR n IN SELECT * FROM pgbg_private.notices_given_up(r[1]) LOOP
      IF n.severity = 'WARNING' THEN
        @raise_warning@
      ELSE
        @raise_notice@
      END IF;
    END LOOP;
    RAISE;
  END;
  PERFORM * FROM @dblink@.dblink_get_result(r[1]) AS t(x pg_catalog.text);  -- the answer's end
END $$;

-- A notices request given up: canceled, and its answer read — none (the server counts none as
-- raised) or, when it came before the cancel, the notices, which the caller raises after all.
CREATE FUNCTION pgbg_private.notices_given_up(conn pg_catalog.text)
RETURNS TABLE (severity pg_catalog.text, message pg_catalog.text, detail pg_catalog.text, hint pg_catalog.text)
LANGUAGE plpgsql SET client_min_messages = warning AS $$
BEGIN
  PERFORM pgbg_private.give_up(conn);
  RETURN QUERY SELECT * FROM @dblink@.dblink_get_result(conn, false)
    AS t(severity pg_catalog.text, message pg_catalog.text, detail pg_catalog.text, hint pg_catalog.text);
  PERFORM * FROM @dblink@.dblink_get_result(conn, false) AS t(x pg_catalog.text);  -- the answer's end
EXCEPTION WHEN OTHERS THEN
  RETURN;  -- the next call settles the connection
END $$;

-- Results: one request answered once the job has ended or filled its queue, with the worker's
-- columns and — when the job has ended and its rows are few — the rows as a second result set;
-- else the rows stream through a `result` request of their own. `r` is the first request, sent
-- (pgbg_private.send); its answer is read here. Returns the query that reads the rows. Column types are named by OID, schema-qualified: no name is looked up.
CREATE FUNCTION pgbg_private.result_rows_query(r pg_catalog.text[], pid pg_catalog.int4, cookie pg_catalog.int8) RETURNS pg_catalog.text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  conn pg_catalog.text := r[1];
  coldefs pg_catalog.text;
  pending pg_catalog.int4;
  inline pg_catalog.bool;
  columns pg_catalog.text;
  mac pg_catalog.text;
BEGIN
  -- Pseudo-typed columns (void, e.g. SELECT pg_sleep(1)) arrive as text; columns are named by position.
  SELECT string_agg(format('c%s %s', t.position,
           CASE WHEN ty.oid IS NULL OR ty.typtype = 'p' THEN 'pg_catalog.text'
                ELSE quote_ident(ns.nspname) || '.' || quote_ident(ty.typname) END),
           ', ' ORDER BY t.position), max(t.notices), COALESCE(bool_and(t.inline), false),
         string_agg(t.position::text || ':' || t.type_oid::text, ',' ORDER BY t.position), max(t.mac)
    INTO coldefs, pending, inline, columns, mac
    FROM @dblink@.dblink_get_result(conn) AS t(position int4, name text, type_oid oid, notices int4, inline bool, mac text)
    LEFT JOIN pg_type ty ON ty.oid = t.type_oid
    LEFT JOIN pg_namespace ns ON ns.oid = ty.typnamespace;
  -- The column types decide what code decoding the rows runs: they must be the server's, not those
  -- of a connection put in this one's place (see the security model in the README).
  IF mac IS DISTINCT FROM encode(sha256(decode(r[3], 'hex') || convert_to(columns || ';' || pending || ';' || CASE WHEN inline THEN 't' ELSE 'f' END, 'UTF8')), 'hex') THEN
    PERFORM @dblink@.dblink_disconnect(conn);
    RAISE EXCEPTION 'the answer on connection "%" did not come from the pgbg server', conn USING ERRCODE = 'protocol_violation',
      DETAIL = 'Code running in this backend replaced the connection; it was dropped, and the next call opens a new one.';
  END IF;
  PERFORM set_config('pgbg.notices_pending', pending::text, true);
  IF inline THEN
    RETURN format('SELECT * FROM @dblink@.dblink_get_result(%L) AS t(%s)', conn, coldefs);
  END IF;
  PERFORM * FROM @dblink@.dblink_get_result(conn) AS t(x text);  -- the answer's end
  RETURN format('SELECT * FROM @dblink@.dblink(%L, %L) AS t(%s)', conn,
    (pgbg_private.request(pgbg_private.handle_json('result', pid, cookie)::text))[2], coldefs);
END $$;

-- `key` zero-padded to 64 bytes, each byte XOR `pad`. (PL/pgSQL, not SQL: a SQL function's
-- arguments can reach the log through auto_explain; these are a secret.)
CREATE FUNCTION pgbg_private.pad64(key pg_catalog.bytea, pad pg_catalog.int4) RETURNS pg_catalog.bytea
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  out pg_catalog.bytea := decode(repeat('00', 64), 'hex');
BEGIN
  FOR i IN 0..63 LOOP
    out := set_byte(out, i, (CASE WHEN i < length(key) THEN get_byte(key, i) ELSE 0 END) # pad);
  END LOOP;
  RETURN out;
END $$;
-- HMAC-SHA-256 (RFC 2104), for the SCRAM verifier of a new secret.
CREATE FUNCTION pgbg_private.hmac(key pg_catalog.bytea, msg pg_catalog.bytea) RETURNS pg_catalog.bytea
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  k pg_catalog.bytea := CASE WHEN length(key) > 64 THEN sha256(key) ELSE key END;
BEGIN
  RETURN sha256(pgbg_private.pad64(k, 92) || sha256(pgbg_private.pad64(k, 54) || msg));
END $$;

-- A role's secret: 256 bits from the CSPRNG (gen_random_uuid), hex. The user mapping gets it, the
-- server's table what it verifies with; neither statement text ever holds it where a log could
-- show it (errors are re-raised without the failing statement as context).
CREATE FUNCTION pgbg_private.issue_secret(role_oid pg_catalog.oid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  secret pg_catalog.text := pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
    pg_catalog.gen_random_uuid()::pg_catalog.text || pg_catalog.gen_random_uuid()::pg_catalog.text || pg_catalog.gen_random_uuid()::pg_catalog.text, 'UTF8')), 'hex');
  salt pg_catalog.bytea := pg_catalog.decode(pg_catalog.replace(pg_catalog.gen_random_uuid()::pg_catalog.text, '-', ''), 'hex');
  salted pg_catalog.bytea;
  rolname pg_catalog.text := (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) role_oid);
BEGIN
  -- SCRAM with one iteration: the secret is random, so there is nothing to slow a guess down for.
  salted := pgbg_private.hmac(pg_catalog.convert_to(secret, 'UTF8'), salt || '\x00000001'::pg_catalog.bytea);
  BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_user_mappings m WHERE m.srvname = 'pgbg' AND m.umuser OPERATOR(pg_catalog.=) role_oid) THEN
      EXECUTE pg_catalog.format('ALTER USER MAPPING FOR %I SERVER pgbg OPTIONS (SET user %L, SET password %L)', rolname, 'r' || role_oid::pg_catalog.text, secret);
    ELSE
      EXECUTE pg_catalog.format('CREATE USER MAPPING FOR %I SERVER pgbg OPTIONS (user %L, password %L)', rolname, 'r' || role_oid::pg_catalog.text, secret);
    END IF;
  EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION USING ERRCODE = SQLSTATE, MESSAGE = SQLERRM;
  END;
  INSERT INTO pgbg_private.role_keys AS k (role_oid, proof_key, scram)
  VALUES (role_oid, pg_catalog.sha256(pg_catalog.decode(secret, 'hex')),
          'SCRAM-SHA-256$1:' || pg_catalog.encode(salt, 'base64') || '$'
            || pg_catalog.encode(pg_catalog.sha256(pgbg_private.hmac(salted, pg_catalog.convert_to('Client Key', 'UTF8'))), 'base64') || ':'
            || pg_catalog.encode(pgbg_private.hmac(salted, pg_catalog.convert_to('Server Key', 'UTF8')), 'base64'))
  ON CONFLICT ON CONSTRAINT role_keys_pkey DO UPDATE SET proof_key = EXCLUDED.proof_key, scram = EXCLUDED.scram, created_at = pg_catalog.now();
END $$;

-- Access: membership in pgbackground_role (EXECUTE on the API) and a secret of the role's own.
-- Granting again issues a new secret: the old one stops working (rotation). Called by each
-- surface's SECURITY DEFINER helper, which only the installer may execute.
CREATE FUNCTION pgbg_private.grant_privileges(role_name pg_catalog.text, print_commands pg_catalog.bool) RETURNS pg_catalog.bool
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cmd pg_catalog.text := pg_catalog.format('GRANT pgbackground_role TO %I', role_name);
  target pg_catalog.oid := (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) role_name);
BEGIN
  IF target IS NULL THEN
    RAISE EXCEPTION 'role "%" does not exist', role_name USING ERRCODE = 'undefined_object';
  END IF;
  IF role_name <> 'pgbackground_role' AND NOT pg_catalog.pg_has_role(target, 'pgbackground_role', 'MEMBER') THEN
    EXECUTE cmd;
    IF print_commands THEN RAISE INFO '%', cmd; END IF;
  END IF;
  PERFORM pgbg_private.issue_secret(target);
  IF print_commands THEN
    RAISE INFO '%', pg_catalog.format('CREATE USER MAPPING FOR %I SERVER pgbg OPTIONS (user %L, password <a new secret>)', role_name, 'r' || target::pg_catalog.text);
  END IF;
  RETURN true;
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'Error granting pg_background privileges to %: %', role_name, SQLERRM;
  RETURN false;
END $$;

CREATE FUNCTION pgbg_private.revoke_privileges(role_name pg_catalog.text, print_commands pg_catalog.bool) RETURNS pg_catalog.bool
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  cmd pg_catalog.text := pg_catalog.format('REVOKE pgbackground_role FROM %I', role_name);
  drop_mapping pg_catalog.text := pg_catalog.format('DROP USER MAPPING IF EXISTS FOR %I SERVER pgbg', role_name);
  target pg_catalog.oid := (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) role_name);
BEGIN
  EXECUTE cmd;
  IF print_commands THEN RAISE INFO '%', cmd; END IF;
  EXECUTE drop_mapping;
  IF print_commands THEN RAISE INFO '%', drop_mapping; END IF;
  DELETE FROM pgbg_private.role_keys k WHERE k.role_oid OPERATOR(pg_catalog.=) target;
  RETURN true;
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'Error revoking pg_background privileges from %: %', role_name, SQLERRM;
  RETURN false;
END $$;


-- No ambient access: everything here is revoked from PUBLIC; pgbackground_role is how access is
-- granted, and it may call only what the wrappers need (not what makes or removes secrets).
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgbackground_role') THEN
    CREATE ROLE pgbackground_role NOLOGIN INHERIT;
  END IF;
END $$;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgbg_private FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA pgbg_private FROM PUBLIC;
REVOKE ALL ON TYPE @schema@.pg_background_handle FROM PUBLIC;
GRANT USAGE ON TYPE @schema@.pg_background_handle TO pgbackground_role;
GRANT USAGE ON SCHEMA pgbg_private TO pgbackground_role;
GRANT SELECT ON pgbg_private.server TO pgbackground_role;
GRANT EXECUTE ON FUNCTION pgbg_private.request(pg_catalog.text), pgbg_private.sign(pg_catalog.text, pg_catalog.text, pg_catalog.text),
  pgbg_private.settle(pg_catalog.text), pgbg_private.caller_settings(), pgbg_private.ms(pg_catalog.text), pgbg_private.limits(),
  pgbg_private.handle_json(pg_catalog.text, pg_catalog.int4, pg_catalog.int8), pgbg_private.send(pg_catalog.text), pgbg_private.call(pg_catalog.jsonb), pgbg_private.ask(pg_catalog.jsonb),
  pgbg_private.launch_json(pg_catalog.text, pg_catalog.text, pg_catalog.int4, pg_catalog.text),
  pgbg_private.launch(pg_catalog.text, pg_catalog.text, pg_catalog.int4, pg_catalog.text), pgbg_private.raise_notices(pg_catalog.int4),
  pgbg_private.give_up(pg_catalog.text), pgbg_private.abandon_launch(pg_catalog.text), pgbg_private.notices_given_up(pg_catalog.text),
  pgbg_private.result_rows_query(pg_catalog.text[], pg_catalog.int4, pg_catalog.int8)
  TO pgbackground_role;
