/**
 * How the SQL API's wrappers raise an error again as pg_background would have
 * raised it: an error that comes back through dblink carries dblink's CONTEXT
 * (the connection's name, the wrapper's own SQL), which says nothing to the
 * caller and names a connection any code in the backend could then use.
 *
 * PL/pgSQL's RAISE cannot leave an option unset by passing NULL or '', and an
 * empty DETAIL or HINT still reaches the client (psql prints `DETAIL:` with
 * nothing after it), so each combination of present fields is its own RAISE.
 */

interface Field {
  /** The RAISE option. */
  option: string;
  /** The PL/pgSQL expression holding it. */
  value: string;
}

/**
 * A RAISE at `level` with `always` set, and each group of `optional` fields
 * set only where one of them is not empty: an IF tree with one RAISE per leaf.
 */
export function raiseWithPresentFields(level: string, always: Field[], optional: Field[][], indent = '  '): string {
  const leaf = (fields: Field[]) =>
    `RAISE ${level} USING ${fields.map((f) => `${f.option} = ${f.value}`).join(', ')};`;
  const tree = (chosen: Field[], rest: Field[][], pad: string): string => {
    const [group, ...others] = rest;
    if (!group) return `${pad}${leaf(chosen)}`;
    const present = group.map((f) => `COALESCE(${f.value}, '')`).join(' OPERATOR(pg_catalog.||) ');
    return [
      `${pad}IF ${present} OPERATOR(pg_catalog.<>) '' THEN`,
      tree([...chosen, ...group], others, `${pad}  `),
      `${pad}ELSE`,
      tree(chosen, others, `${pad}  `),
      `${pad}END IF;`,
    ].join('\n');
  };
  return tree(always, optional, indent);
}

// dblink passes on a remote error's SQLSTATE, message, detail, hint and context, not its object
// names (schema, table, column, constraint): those reach a 2.0 caller through error_info.
const DIAGNOSTICS = [
  ['e_state', 'RETURNED_SQLSTATE'], ['e_message', 'MESSAGE_TEXT'], ['e_detail', 'PG_EXCEPTION_DETAIL'], ['e_hint', 'PG_EXCEPTION_HINT'],
] as const;

/**
 * The statements of an exception handler that raise the caught error again with
 * its SQLSTATE, message, detail and hint, and none of its CONTEXT
 * (what the caller sees is the wrapper it called). Filled in for `@reraise@`.
 */
export const RERAISE_SQL = [
  'DECLARE',
  `  ${DIAGNOSTICS.map(([name]) => `${name} pg_catalog.text;`).join(' ')}`,
  'BEGIN',
  `  GET STACKED DIAGNOSTICS ${DIAGNOSTICS.map(([name, item]) => `${name} = ${item}`).join(', ')};`,
  raiseWithPresentFields('EXCEPTION',
    [{ option: 'ERRCODE', value: 'e_state' }, { option: 'MESSAGE', value: 'e_message' }],
    [
      [{ option: 'DETAIL', value: 'e_detail' }],
      [{ option: 'HINT', value: 'e_hint' }],
    ]),
  'END;',
].join('\n');
