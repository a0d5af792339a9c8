import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyStatements, loadClassifier, sqlPreview } from '../../src/sql/classify.js';
import { PgbgError } from '../../src/protocol/errors.js';

before(async () => {
  // Concurrent first calls must share one load.
  await Promise.all([loadClassifier(), loadClassifier()]);
  await loadClassifier();
});

function rejects(sql: string, message: string): void {
  assert.throws(
    () => classifyStatements(sql),
    (err: unknown) => {
      assert.ok(err instanceof PgbgError, `expected PgbgError for ${JSON.stringify(sql)}`);
      assert.equal(err.code, '0A000');
      assert.equal(err.message, message);
      return true;
    },
    JSON.stringify(sql),
  );
}

const TX = 'transaction control statements are not allowed in pg_background';
const COPY = 'COPY protocol not allowed in pg_background';

describe('statement counts', () => {
  test('one statement, with or without a trailing semicolon or comment', () => {
    for (const sql of ['SELECT 1', 'SELECT 1;', 'SELECT 1 -- trailing', '/* lead */ SELECT 1']) {
      assert.deepEqual(classifyStatements(sql), { statementCount: 1, mustRunAlone: false, parsed: true }, sql);
    }
  });

  test('several statements', () => {
    assert.equal(classifyStatements('SELECT 1; SELECT 2').statementCount, 2);
    assert.equal(classifyStatements('CREATE TABLE t (a int); INSERT INTO t VALUES (1); SELECT * FROM t;').statementCount, 3);
    // Empty statements between semicolons are not statements.
    assert.equal(classifyStatements('SELECT 1;; ;SELECT 2;').statementCount, 2);
  });

  test('empty, blank and comment-only strings have no statements', () => {
    for (const sql of ['', '   \n\t', '-- nothing here', '/* nor here */', ';', ' ; ; ']) {
      assert.deepEqual(classifyStatements(sql), { statementCount: 0, mustRunAlone: false, parsed: true }, JSON.stringify(sql));
    }
  });
});

describe('transaction control is rejected', () => {
  const forms = [
    'BEGIN', 'BEGIN ISOLATION LEVEL SERIALIZABLE', 'START TRANSACTION', 'COMMIT', 'COMMIT AND CHAIN', 'END',
    'ROLLBACK', 'ABORT', 'SAVEPOINT s', 'RELEASE s', 'RELEASE SAVEPOINT s', 'ROLLBACK TO s', 'ROLLBACK TO SAVEPOINT s',
    "PREPARE TRANSACTION 'g'", "COMMIT PREPARED 'g'", "ROLLBACK PREPARED 'g'",
  ];
  for (const sql of forms) test(sql, () => rejects(sql, TX));

  test('anywhere in a multi-statement string', () => {
    rejects('SELECT 1; COMMIT', TX);
    rejects('INSERT INTO t VALUES (1); COMMIT; SELECT 2', TX);
    rejects('/* hi */ begin; select 1', TX);
  });

  test('BEGIN inside a DO body is PL/pgSQL, not transaction control', () => {
    const plan = classifyStatements('DO $$ BEGIN PERFORM 1; END $$');
    assert.deepEqual(plan, { statementCount: 1, mustRunAlone: false, parsed: true });
    assert.equal(classifyStatements("DO LANGUAGE plpgsql 'BEGIN COMMIT; END'").statementCount, 1);
  });

  test('the word inside a literal, identifier or comment is not a statement', () => {
    assert.equal(classifyStatements("SELECT 'COMMIT'").statementCount, 1);
    assert.equal(classifyStatements("SELECT 'x; COMMIT; --'").statementCount, 1);
    assert.equal(classifyStatements('SELECT $q$; ROLLBACK;$q$').statementCount, 1);
    assert.equal(classifyStatements('SELECT 1 AS "begin"').statementCount, 1);
    assert.equal(classifyStatements('SELECT 1 -- ; COMMIT').statementCount, 1);
  });
});

describe('COPY is rejected', () => {
  for (const sql of [
    'COPY t TO STDOUT', 'COPY t FROM STDIN', "COPY t TO '/tmp/pgbg.csv'", "COPY t FROM '/tmp/pgbg.csv' WITH (FORMAT csv)",
    'COPY (SELECT 1) TO STDOUT', "COPY t TO PROGRAM 'cat'",
  ]) {
    test(sql, () => rejects(sql, COPY));
  }
  test('anywhere in a multi-statement string', () => rejects('SELECT 1; COPY t TO STDOUT', COPY));
});

describe('mustRunAlone', () => {
  const alone = [
    'VACUUM', 'VACUUM t', 'VACUUM ANALYZE t', 'VACUUM (ANALYZE, VERBOSE) t', 'VACUUM FULL',
    'CREATE INDEX CONCURRENTLY i ON t (a)', 'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)',
    'DROP INDEX CONCURRENTLY i', 'CREATE DATABASE d', 'DROP DATABASE d', 'DROP DATABASE IF EXISTS d WITH (FORCE)',
    'ALTER DATABASE d SET TABLESPACE s', "CREATE TABLESPACE s LOCATION '/x'", 'DROP TABLESPACE s',
    "ALTER SYSTEM SET work_mem = '8MB'", 'ALTER SYSTEM RESET ALL',
    'REINDEX TABLE CONCURRENTLY t', 'REINDEX (CONCURRENTLY) INDEX i', 'REINDEX (VERBOSE, CONCURRENTLY on) TABLE t',
    'REINDEX DATABASE', 'REINDEX DATABASE d', 'REINDEX SYSTEM', 'REINDEX SCHEMA s', 'CLUSTER', 'CLUSTER (VERBOSE)',
    "CREATE SUBSCRIPTION s CONNECTION 'dbname=x' PUBLICATION p", 'ALTER SUBSCRIPTION s REFRESH PUBLICATION',
    'DROP SUBSCRIPTION s', 'ALTER TABLE t DETACH PARTITION p CONCURRENTLY', 'DISCARD ALL',
  ];
  for (const sql of alone) {
    test(`${sql} → true`, () => assert.deepEqual(classifyStatements(sql), { statementCount: 1, mustRunAlone: true, parsed: true }));
  }

  const inBlock = [
    'ANALYZE', 'ANALYZE t', 'CREATE INDEX i ON t (a)', 'DROP INDEX i', 'REINDEX TABLE t', 'REINDEX INDEX i',
    'REINDEX (CONCURRENTLY false) TABLE t', 'REINDEX (CONCURRENTLY 0) TABLE t', 'CLUSTER t', 'CLUSTER t USING i',
    'ALTER TABLE t DETACH PARTITION p', 'ALTER TABLE t DETACH PARTITION p FINALIZE', "ALTER TYPE e ADD VALUE 'x'",
    'ALTER DATABASE d SET work_mem = 1', 'ALTER DATABASE d ALLOW_CONNECTIONS false', 'DISCARD PLANS',
    'REFRESH MATERIALIZED VIEW CONCURRENTLY mv', 'SELECT 1',
  ];
  for (const sql of inBlock) {
    test(`${sql} → false`, () => assert.deepEqual(classifyStatements(sql), { statementCount: 1, mustRunAlone: false, parsed: true }));
  }

  test('only a lone statement can run alone', () => {
    assert.deepEqual(classifyStatements('VACUUM; SELECT 1'), { statementCount: 2, mustRunAlone: false, parsed: true });
    assert.deepEqual(classifyStatements('SELECT 1; CREATE DATABASE d'), { statementCount: 2, mustRunAlone: false, parsed: true });
    assert.deepEqual(classifyStatements('VACUUM;'), { statementCount: 1, mustRunAlone: true, parsed: true });
  });
});

describe('unparsable SQL', () => {
  test('syntax errors are left for the server to report', () => {
    for (const sql of ['SELEC 1', 'SELECT (1', "SELECT 'unterminated", 'COMMIT; SELEC 1', 'COPY t TO STDOUT WITH (']) {
      assert.deepEqual(classifyStatements(sql), { statementCount: 1, mustRunAlone: false, parsed: false }, sql);
    }
  });
});

describe('sqlPreview', () => {
  test('short strings are returned whole', () => {
    assert.equal(sqlPreview('SELECT 1'), 'SELECT 1');
    assert.equal(sqlPreview(''), '');
  });

  test('default limit is 120 code points', () => {
    assert.equal(sqlPreview('x'.repeat(200)), 'x'.repeat(120));
    assert.equal(sqlPreview('é'.repeat(200)), 'é'.repeat(120));
    assert.equal(sqlPreview('😀'.repeat(200)), '😀'.repeat(120));
  });

  test('counts code points, never splitting a surrogate pair', () => {
    const s = 'a😀é😀b';
    assert.equal(sqlPreview(s, 0), '');
    assert.equal(sqlPreview(s, 1), 'a');
    assert.equal(sqlPreview(s, 2), 'a😀');
    assert.equal(sqlPreview(s, 3), 'a😀é');
    assert.equal(sqlPreview(s, 4), 'a😀é😀');
    assert.equal(sqlPreview(s, 5), s);
    assert.equal(sqlPreview(s, 99), s);
  });

  test('the result always encodes to the same UTF-8 prefix', () => {
    const s = "SELECT '😀 café 🇫🇷 naïve'";
    const bytes = Buffer.from(s, 'utf8');
    for (let n = 0; n <= [...s].length; n++) {
      const p = sqlPreview(s, n);
      assert.equal([...p].length, n);
      const pb = Buffer.from(p, 'utf8');
      assert.ok(bytes.subarray(0, pb.length).equals(pb), `prefix at ${n}`);
      assert.equal(pb.toString('utf8'), p); // no replacement characters: nothing was cut mid-sequence
    }
  });
});

describe('recent texts', () => {
  test('a repeated text gets the same plan; a refused text is refused every time', () => {
    const sql = 'VACUUM ANALYZE some_table_for_the_cache_test';
    const first = classifyStatements(sql);
    assert.equal(first.mustRunAlone, true);
    assert.deepEqual(classifyStatements(sql), first);
    assert.throws(() => Object.assign(classifyStatements(sql), { mustRunAlone: false }), TypeError, 'a kept plan cannot be changed by a caller');
    for (let i = 0; i < 3; i++) rejects('BEGIN; SELECT 1; COMMIT', TX);
    // Texts differing only in case or spacing are classified on their own.
    assert.equal(classifyStatements('vacuum  analyze some_table_for_the_cache_test').mustRunAlone, true);
    assert.equal(classifyStatements('SELECT 1; VACUUM ANALYZE some_table_for_the_cache_test').statementCount, 2);
  });
});
