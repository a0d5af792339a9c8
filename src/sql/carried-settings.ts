/**
 * The settings a worker takes from its launcher: those that change what a
 * statement means or how it is planned. Reading them with current_setting()
 * costs ~0.15 ms; scanning pg_settings for everything the session changed cost
 * ~0.9 ms per launch — most of a launch. Only values that differ from the
 * login's defaults reach the worker. The SQL API's list
 * (src/install/sql/0006_fast_settings.sql) is the same; a test keeps them equal.
 */
export const CARRIED_SETTINGS: readonly string[] = [
  'search_path', 'TimeZone', 'DateStyle', 'IntervalStyle', 'extra_float_digits', 'bytea_output', 'lc_messages',
  'lc_monetary', 'lc_numeric', 'lc_time', 'default_text_search_config', 'standard_conforming_strings', 'xmlbinary',
  'xmloption', 'row_security', 'client_min_messages', 'check_function_bodies', 'array_nulls',
  'quote_all_identifiers', 'transform_null_equals', 'backslash_quote', 'work_mem', 'maintenance_work_mem',
  'temp_buffers', 'hash_mem_multiplier', 'temp_tablespaces', 'default_tablespace', 'lock_timeout',
  'idle_in_transaction_session_timeout', 'synchronous_commit', 'session_replication_role',
  'default_transaction_isolation', 'default_transaction_deferrable', 'enable_seqscan', 'enable_indexscan',
  'enable_indexonlyscan', 'enable_bitmapscan', 'enable_tidscan', 'enable_hashjoin', 'enable_mergejoin',
  'enable_nestloop', 'enable_sort', 'enable_incremental_sort', 'enable_hashagg', 'enable_material', 'enable_memoize',
  'enable_partitionwise_join', 'enable_partitionwise_aggregate', 'enable_partition_pruning',
  'enable_parallel_append', 'enable_parallel_hash', 'enable_gathermerge', 'jit', 'random_page_cost', 'seq_page_cost',
  'cpu_tuple_cost', 'cpu_index_tuple_cost', 'cpu_operator_cost', 'effective_cache_size', 'effective_io_concurrency',
  'default_statistics_target', 'constraint_exclusion', 'cursor_tuple_fraction', 'from_collapse_limit',
  'join_collapse_limit', 'geqo', 'plan_cache_mode', 'max_parallel_workers_per_gather', 'parallel_setup_cost',
  'parallel_tuple_cost', 'force_parallel_mode', 'debug_parallel_query', 'vacuum_cost_delay', 'vacuum_cost_limit',
  'gin_fuzzy_search_limit', 'commit_delay',
];
