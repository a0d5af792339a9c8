/**
 * One background job: its state machine, its bounded result buffer and the
 * things the launcher can observe (progress, notices, timings).
 *
 * The buffer holds raw text-format rows, bounded by the job's queue size. When
 * it is full the job asks its worker to stop reading the socket (`onFull`), so
 * the worker backend blocks on its own write and waits; it resumes
 * (`onDrain`) when the reader has taken half of it.
 */
import type { ServerMessageFields } from './errors.js';
import { PgbgError } from './errors.js';
import { encodeDataRow, type DataRow } from './data-row.js';

export type JobState = 'starting' | 'running' | 'stopped' | 'canceled' | 'error';

export interface FieldInfo {
  name: string;
  /** PostgreSQL type OID of the column. */
  dataTypeID: number;
  dataTypeSize: number;
  dataTypeModifier: number;
  tableID: number;
  columnID: number;
}

/** A row's values in text format (null for NULL): what the library hands out. */
export type RawRow = (string | null)[];

export interface Notice extends ServerMessageFields {
  message: string;
}

export interface Progress {
  /** 0..100, or -1 before any report. */
  pct: number;
  message: string | null;
  at: Date | null;
}

/** The column a row-less statement's command tag is returned in. */
export const COMMAND_TAG_FIELD: FieldInfo = {
  name: 'command',
  dataTypeID: 25,
  dataTypeSize: -1,
  dataTypeModifier: -1,
  tableID: 0,
  columnID: 0,
};

const MAX_KEPT_NOTICES = 1000;

interface Waiter {
  resolve(): void;
}

export class Job {
  state: JobState = 'starting';
  pid = 0;
  readonly launchedAt = new Date();
  startedAt: Date | undefined;
  endedAt: Date | undefined;
  error: PgbgError | undefined;
  /** Result columns of the last statement, known once its RowDescription arrived. */
  fields: FieldInfo[] | undefined;
  commandTags: string[] = [];
  progress: Progress = { pct: -1, message: null, at: null };
  readonly notices: Notice[] = [];
  /** Rows relayed to the buffer so far (the reader may have taken some). */
  rowsReceived = 0;
  cancelRequested = false;
  /** True once nobody will read the rows (submitted, detached, canceled, session closed). */
  discarding: boolean;
  consumed = false;

  #rows: DataRow[] = [];
  #head = 0;
  #bufferedBytes = 0;
  #paused = false;
  #waiters: Waiter[] = [];
  #ended = false;
  onFull: () => void = () => undefined;
  onDrain: () => void = () => undefined;
  onNotice: ((n: Notice) => void) | undefined;
  onFirstRow: (() => void) | undefined;

  constructor(
    readonly sql: string,
    readonly queueSize: number,
    readonly resultsDisabled: boolean,
  ) {
    this.discarding = resultsDisabled;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** True while the worker is held back because the buffer is full. */
  get stalled(): boolean {
    return this.#paused;
  }

  get bufferedBytes(): number {
    return this.#bufferedBytes;
  }

  get bufferedRows(): number {
    return this.#rows.length - this.#head;
  }

  markRunning(pid: number): void {
    this.pid = pid;
    this.state = 'running';
    this.startedAt = new Date();
    this.#wake();
  }

  setFields(fields: FieldInfo[]): void {
    this.fields = fields;
    this.#wake();
  }

  pushRow(row: DataRow): void {
    if (++this.rowsReceived === 1) this.onFirstRow?.();
    if (this.discarding) return;
    this.#rows.push(row);
    this.#bufferedBytes += row.length;
    if (!this.#paused && this.#bufferedBytes >= this.queueSize) {
      this.#paused = true;
      this.onFull();
    }
    this.#wake();
  }

  setCommandTags(tags: string[]): void {
    this.commandTags = tags;
    if (!this.fields) {
      this.fields = [COMMAND_TAG_FIELD];
      if (!this.discarding) for (const tag of tags) this.#rows.push(encodeDataRow([tag]));
    }
  }

  addNotice(notice: Notice): void {
    if (this.notices.length >= MAX_KEPT_NOTICES) this.notices.shift();
    this.notices.push(notice);
    this.onNotice?.(notice);
    this.#wake();
  }

  setProgress(pct: number, message: string | null): void {
    this.progress = { pct: Math.min(100, Math.max(0, Math.trunc(pct))), message, at: new Date() };
  }

  /** Final transition; later calls are ignored (the first outcome wins). */
  finish(state: 'stopped' | 'canceled' | 'error', error?: PgbgError): void {
    if (this.#ended) return;
    this.#ended = true;
    this.state = state;
    this.error = error;
    this.endedAt = new Date();
    this.#resumeIfPaused();
    this.#wake();
  }

  /** Drop buffered rows and every later one; the worker is never held back again. */
  discard(): void {
    this.discarding = true;
    this.#rows = [];
    this.#head = 0;
    this.#bufferedBytes = 0;
    this.#resumeIfPaused();
    this.#wake();
  }

  /** Takes every row buffered right now (at most `max`); empty when none is. */
  takeRows(max: number): DataRow[] {
    const end = Math.min(this.#rows.length, this.#head + max);
    if (end <= this.#head) return [];
    const rows = this.#rows.slice(this.#head, end);
    for (const row of rows) this.#bufferedBytes -= row.length;
    if (end === this.#rows.length) {
      this.#rows = [];
      this.#head = 0;
    } else {
      this.#head = end;
      if (this.#head > 1024 && this.#head * 2 > this.#rows.length) {
        this.#rows = this.#rows.slice(this.#head);
        this.#head = 0;
      }
    }
    if (this.#paused && this.#bufferedBytes <= this.queueSize / 2) this.#resumeIfPaused();
    return rows;
  }

  /** Takes the next buffered row, or undefined when none is buffered right now. */
  takeRow(): DataRow | undefined {
    if (this.#head >= this.#rows.length) return undefined;
    const row = this.#rows[this.#head]!;
    this.#rows[this.#head] = undefined as unknown as DataRow;
    this.#head++;
    this.#bufferedBytes -= row.length;
    if (this.#head > 1024 && this.#head * 2 > this.#rows.length) {
      this.#rows = this.#rows.slice(this.#head);
      this.#head = 0;
    }
    if (this.#paused && this.#bufferedBytes <= this.queueSize / 2) this.#resumeIfPaused();
    return row;
  }

  /** Resolves when something changed: a row, a state transition, fields, a notice. */
  changed(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push({ resolve }));
  }

  /** Resolves once the job has ended. */
  async untilEnded(): Promise<void> {
    while (!this.#ended) await this.changed();
  }

  #resumeIfPaused(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.onDrain();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.resolve();
  }
}

