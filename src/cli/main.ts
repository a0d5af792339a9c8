#!/usr/bin/env node
/** The `pgbg` command line. */
import { Command } from 'commander';
import { serve } from './serve.js';

const program = new Command('pgbg').description('background SQL for PostgreSQL');

program
  .command('serve')
  .description('run the pgbg server (with --embedded: also an embedded PostgreSQL with the SQL API installed)')
  .option('--embedded', 'start an embedded PostgreSQL', false)
  .option('--port <n>', 'PostgreSQL port (default: $PGPORT, else a free one)', (v) => Number(v))
  .option('--data <dir>', 'data folder, kept between runs', '.pgbg')
  .option('--log-level <level>', 'pino log level', 'info')
  .addHelpText('after', '\nExample:\n  pgbg serve --embedded --port 54329\n')
  .action(async (o: { embedded: boolean; port?: number; data: string; logLevel: string }) => {
    const port = o.port ?? (process.env.PGPORT ? Number(process.env.PGPORT) : undefined);
    await serve({ embedded: o.embedded, data: o.data, logLevel: o.logLevel, ...(port ? { port } : {}) });
  });

program.parseAsync().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
