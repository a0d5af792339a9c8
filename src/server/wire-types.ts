/**
 * What the wire server and the handler that answers its queries agree on:
 * the handler, the connection it is called for, and the results it returns.
 * Their own module, so the server's parts (wire.ts, wire-client.ts,
 * wire-query.ts) and handlers import them without importing each other.
 */

export interface WireField {
  name: string;
  typeOid: number;
}

export interface WireResult {
  /** Omitted → no RowDescription (a command without a result set). */
  fields?: WireField[];
  /** Text-format values, one array per row, as many values as `fields`. */
  rows?: Iterable<(string | null)[]> | AsyncIterable<(string | null)[]>;
  /**
   * Instead of `rows`: complete DataRow messages, in batches, sent as they are
   * (a worker's rows relayed without decoding). They must match `fields`.
   */
  dataRows?: AsyncIterable<Buffer[]>;
  /** e.g. 'SELECT 3', 'INSERT 0 1'. */
  commandTag: string;
  /** Called once the result went out whole — not when the query was canceled or the client left first. */
  onSent?: () => void;
}

/** WireConnection = what a handler sees of one client connection (a WireClient). */
export interface WireConnection {
  /** Also the process id the client sees (BackendKeyData, PQbackendPID). */
  readonly id: number;
  readonly user: string;
  readonly database: string;
  readonly remoteAddress: string;
  /** Send a NoticeResponse now (fields as PostgreSQL names them: severity, code, message, detail, hint, where...). */
  notice(fields: { severity?: string; code?: string; message: string; detail?: string; hint?: string; where?: string }): void;
  /** Arbitrary per-connection state for the handler. */
  state: Map<string, unknown>;
}

export interface WireHandler {
  /**
   * Called once per Query message with its whole text (possibly several
   * statements; the handler splits if it wants to). Return one result per
   * statement. Throw an error with a SQLSTATE `code` (e.g. PgbgError) to send
   * an ErrorResponse with all its fields; any other error is logged and the
   * client gets XX000 'internal error'. `signal` aborts on CancelRequest (reason:
   * a 57014 PgbgError) and when the client goes away.
   */
  query(sql: string, conn: WireConnection, signal: AbortSignal): Promise<WireResult | WireResult[]>;
  /** Called exactly once per authenticated connection, after its last query settled. */
  onClose?(conn: WireConnection): void;
}
