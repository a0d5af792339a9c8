/**
 * Turns the protocol messages of one simple Query into the job's result:
 * only the last statement's rows; command tags of trailing row-less
 * statements; rows of earlier statements dropped as they arrive (never
 * buffered), which is possible because the parser told us how many statements
 * there are. Statements we prepended (the worker setup) are skipped.
 *
 * Pure: no sockets, no timers — the worker connection feeds it.
 */
import type { RowRun } from '../protocol/data-row.js';
import type { FieldInfo } from '../protocol/messages.js';
import type { ResultSink } from '../workers/worker.js';
import type { Job } from './job.js';

export class ResultTracker implements ResultSink {
  #index = 0;
  #currentHasRows = false;
  #pendingTags: string[] = [];

  /**
   * @param skipStatements statements at the start of the query that are ours, not the user's
   * @param userStatements how many statements the user's SQL has, or undefined when unknown
   */
  constructor(
    private readonly job: Job,
    private readonly skipStatements: number,
    private readonly userStatements: number | undefined,
  ) {}

  get #userIndex(): number {
    return this.#index - this.skipStatements;
  }

  /** Whether the statement now running is the user's last one (when unknown, each may be). */
  get #isLast(): boolean {
    const i = this.#userIndex;
    if (i < 0) return false;
    return this.userStatements === undefined || i >= this.userStatements - 1;
  }

  rowDescription(fields: FieldInfo[]): void {
    this.job.markBegun();
    this.#currentHasRows = true;
    if (this.#userIndex < 0) return;
    this.#pendingTags = [];
    if (this.#isLast) this.job.setFields(fields);
  }

  /** One DataRow message, or a run of `count` of them. */
  dataRow(run: RowRun, count = 1): void {
    if (this.#isLast) this.job.pushRow(run, count);
  }

  commandComplete(tag: string): void {
    this.job.markBegun();
    const isUser = this.#userIndex >= 0;
    if (isUser && !this.#currentHasRows) this.#pendingTags.push(tag);
    if (isUser && this.#isLast) {
      if (this.#currentHasRows) this.job.commandTags = [tag];
      else this.job.setCommandTags(this.#pendingTags);
    }
    this.#index++;
    this.#currentHasRows = false;
  }

  /** An empty query string: no statements, no rows, no tags. */
  emptyQuery(): void {
    if (this.#userIndex >= 0) this.job.setCommandTags([]);
  }
}
