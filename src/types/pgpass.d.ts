declare module 'pgpass/lib/helper.js' {
  interface PgpassEntry { host: string; port: string; database: string; user: string; password: string }
  interface ConnInfo { host: string; port: number | string; database: string; user: string }
  const helper: {
    parseLine(line: string): PgpassEntry | null;
    isValidEntry(entry: PgpassEntry): boolean;
    match(connInfo: ConnInfo, entry: PgpassEntry): boolean;
  };
  export default helper;
}

declare module 'async-exit-hook' {
  const exitHook: { unhookEvent(event: string): void };
  export default exitHook;
}
