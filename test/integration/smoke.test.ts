import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serverUrl, withClient } from '../helpers/db.js';

test('the test server answers', async () => {
  const v = await withClient(serverUrl(), (c) => c.query<{ n: number }>('SELECT 41 + 1 AS n'));
  assert.equal(v.rows[0]?.n, 42);
});
