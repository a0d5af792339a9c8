/** `pgbg install` / `pgbg uninstall`: the SQL API in an existing database. */
import pg from 'pg';
import { install, uninstall } from '../install/install.js';
import type { ApiVersion } from '../install/script.js';
import { endpointOf, loadIdentity } from '../server/identity.js';

export interface InstallCommandOptions {
  database: string;
  schema: string;
  data: string;
  apiHost: string;
  apiPort?: number | undefined;
  apiVersion?: ApiVersion | undefined;
}

export async function installCommand(options: InstallCommandOptions): Promise<void> {
  const identity = await loadIdentity(options.data, options.apiPort);
  await withClient(options.database, async (client) => {
    const report = await install(client, { schema: options.schema, endpoint: endpointOf(options.apiHost, identity), ...(options.apiVersion ? { apiVersion: options.apiVersion } : {}) });
    const what = report.upgradedFrom ? 'upgraded the SQL API (made by an earlier pgbg)' : report.installed ? 'installed the SQL API' : 'the SQL API was up to date';
    process.stdout.write(`${what} in schema ${report.schema} (pg_background ${report.apiVersion}); it reaches the server at ${options.apiHost}:${identity.port}\n`);
  });
}

export async function uninstallCommand(options: { database: string; dropRole: boolean }): Promise<void> {
  await withClient(options.database, async (client) => {
    const { removed } = await uninstall(client, { dropRole: options.dropRole });
    process.stdout.write(removed ? 'removed the SQL API\n' : 'the SQL API was not installed here\n');
  });
}

async function withClient(url: string, fn: (client: pg.Client) => Promise<void>): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await fn(client);
  } finally {
    await client.end();
  }
}
