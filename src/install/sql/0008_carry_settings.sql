-- pgbg SQL API 0008: application settings (placeholders such as myapp.tenant,
-- often read by row-level security policies) reach the worker when the caller
-- names them: SET pgbg.carry_settings = 'myapp.tenant, myapp.user'.
-- PostgreSQL does not list placeholders in pg_settings, so they cannot be found otherwise.
CREATE OR REPLACE FUNCTION pgbg_private.caller_settings() RETURNS pg_catalog.json
LANGUAGE sql STABLE AS $$
  SELECT pg_catalog.json_object_agg(n, v) FROM (
    SELECT n, pg_catalog.current_setting(n, true) AS v
      FROM pg_catalog.unnest(pgbg_private.carried_settings() || pg_catalog.string_to_array(
             pg_catalog.replace(COALESCE(pg_catalog.current_setting('pgbg.carry_settings', true), ''), ' ', ''), ',')) AS n
     WHERE n <> ''
  ) s WHERE v IS NOT NULL
$$;
