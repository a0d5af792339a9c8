/**
 * What a worker's backend says about a result besides its rows, as pgbg keeps
 * it: the columns (a RowDescription's fields) and the notices and warnings it
 * raises (NoticeResponse).
 */
import type { ServerMessageFields } from './errors.js';

export interface FieldInfo {
  name: string;
  /** PostgreSQL type OID of the column. */
  dataTypeID: number;
  dataTypeSize: number;
  dataTypeModifier: number;
  tableID: number;
  columnID: number;
}

export interface Notice extends ServerMessageFields {
  message: string;
}
