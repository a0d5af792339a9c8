-- pgbg SQL API 0006: capture the caller's settings in ~0.15 ms instead of ~0.9 ms; duplicate column names.
-- Scanning pg_settings builds every GUC (~380 rows) on each launch: it was the
-- largest cost of a launch. Now a fixed list of the settings that change what a
-- statement means or how it is planned is read with current_setting(); the pgbg
-- server sends a worker only those that differ from the login's defaults.
-- Settings outside this list are not carried (pgbg_private.carried_settings() names them).
CREATE FUNCTION pgbg_private.carried_settings() RETURNS pg_catalog.text[]
LANGUAGE sql IMMUTABLE AS $$
  SELECT ARRAY[
    'search_path', 'TimeZone', 'DateStyle', 'IntervalStyle', 'extra_float_digits', 'bytea_output',
    'lc_messages', 'lc_monetary', 'lc_numeric', 'lc_time', 'default_text_search_config',
    'standard_conforming_strings', 'xmlbinary', 'xmloption', 'row_security', 'client_min_messages',
    'check_function_bodies', 'array_nulls', 'quote_all_identifiers', 'transform_null_equals', 'backslash_quote',
    'work_mem', 'maintenance_work_mem', 'temp_buffers', 'hash_mem_multiplier', 'temp_tablespaces', 'default_tablespace',
    'lock_timeout', 'idle_in_transaction_session_timeout', 'synchronous_commit', 'session_replication_role',
    'default_transaction_isolation', 'default_transaction_deferrable',
    'enable_seqscan', 'enable_indexscan', 'enable_indexonlyscan', 'enable_bitmapscan', 'enable_tidscan',
    'enable_hashjoin', 'enable_mergejoin', 'enable_nestloop', 'enable_sort', 'enable_incremental_sort',
    'enable_hashagg', 'enable_material', 'enable_memoize', 'enable_partitionwise_join', 'enable_partitionwise_aggregate',
    'enable_partition_pruning', 'enable_parallel_append', 'enable_parallel_hash', 'enable_gathermerge',
    'jit', 'random_page_cost', 'seq_page_cost', 'cpu_tuple_cost', 'cpu_index_tuple_cost', 'cpu_operator_cost',
    'effective_cache_size', 'effective_io_concurrency', 'default_statistics_target', 'constraint_exclusion',
    'cursor_tuple_fraction', 'from_collapse_limit', 'join_collapse_limit', 'geqo', 'plan_cache_mode',
    'max_parallel_workers_per_gather', 'parallel_setup_cost', 'parallel_tuple_cost', 'force_parallel_mode',
    'debug_parallel_query', 'vacuum_cost_delay', 'vacuum_cost_limit', 'gin_fuzzy_search_limit', 'commit_delay'
  ]::pg_catalog.text[]
$$;

-- Unknown names (a setting newer than this server) read as NULL and are left out.
CREATE OR REPLACE FUNCTION pgbg_private.caller_settings() RETURNS pg_catalog.json
LANGUAGE sql STABLE AS $$
  SELECT pg_catalog.json_object_agg(n, v) FROM (
    SELECT n, pg_catalog.current_setting(n, true) AS v FROM pg_catalog.unnest(pgbg_private.carried_settings()) AS n
  ) s WHERE v IS NOT NULL
$$;
GRANT EXECUTE ON FUNCTION pgbg_private.carried_settings() TO pgbackground_role;

-- Worker columns are relayed by position: a result may repeat a column name
-- (SELECT current_setting('a'), current_setting('b')) — the caller's column list names them.
CREATE OR REPLACE FUNCTION pgbg_private.result_query(pid int4, cookie int8) RETURNS pg_catalog.text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
  c text := pgbg_private.conn();
  coldefs text;
BEGIN
  -- Pseudo-typed columns (void, e.g. SELECT pg_sleep(1)) arrive as text.
  SELECT string_agg(format('c%s %s', t.position, CASE WHEN ty.typtype = 'p' THEN 'text' ELSE format_type(t.type_oid, NULL) END),
                    ', ' ORDER BY t.position) INTO coldefs
    FROM @dblink@.dblink(c, pgbg_private.handle_json('describe', pid, cookie)::text) AS t(position int4, name text, type_oid oid)
    LEFT JOIN pg_type ty ON ty.oid = t.type_oid;
  RETURN format('SELECT * FROM @dblink@.dblink(%L, %L) AS t(%s)', c, pgbg_private.handle_json('result', pid, cookie)::text, coldefs);
END $$;
