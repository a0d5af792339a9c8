/**
 * A job's result as the reader takes it: the same rows three ways (read one) —
 * DataRow messages as the worker sent them (for relaying), batches of text
 * values, or rows one by one.
 */
import type { PgbgError } from '../protocol/errors.js';
import { decodeDataRow, splitRowRun, type RowRun } from '../protocol/data-row.js';
import type { Job, RawRow } from './job.js';
import type { RawResult } from './types.js';

/** Most rows handed over per batch (the queue size bounds them too). */
const BATCH_ROWS = 4096;

export interface StreamHooks {
  /** Waits for `step` under the session's self-deadlock guard. */
  wait(step: () => Promise<void>): Promise<void>;
  /** The job's error, once it has ended with one. */
  failure(): PgbgError | undefined;
  /** The reader is done (all read, or gone): the session forgets the job. */
  done(): void;
}

/** The streams of a job whose columns are known. */
export function resultStreams(job: Job, hooks: StreamHooks): RawResult {
  // Rows leave in the batches they are buffered in: a relay pays one await per batch, not per row.
  async function* dataRows(): AsyncGenerator<RowRun[]> {
    try {
      while (true) {
        const rows = job.takeRows(BATCH_ROWS);
        if (rows.length > 0) {
          yield rows;
          continue;
        }
        if (job.ended) break;
        await hooks.wait(() => job.changed());
      }
      const error = hooks.failure();
      if (error) throw error;
    } finally {
      if (!job.ended) job.discard();
      hooks.done();
    }
  }
  const wire = dataRows();
  async function* batches(): AsyncGenerator<RawRow[]> {
    for await (const batch of wire) yield batch.flatMap((run) => splitRowRun(run).map(decodeDataRow));
  }
  const batched = batches();
  async function* rows(): AsyncGenerator<RawRow> {
    for await (const batch of batched) yield* batch;
  }
  return { fields: job.fields!, rows: rows(), batches: batched, dataRows: wire, commandTags: () => job.commandTags, notices: job.notices };
}
