/**
 * Files that hold secrets (server.json, the embedded PostgreSQL's password,
 * worker credentials) are trusted only when private: a regular file, not a
 * symbolic link, owned by the user pgbg runs as, with no group or other access
 * (0600 or 0400) — as libpq demands of ~/.pgpass. Anything else is refused
 * (42501) with the fix in the hint: a file another user can write or replace
 * could hand pgbg a secret of their choosing, one others can read gives the
 * secret away.
 *
 * The checks are made on the open file (O_NOFOLLOW, then fstat), so the file
 * read is the file checked. Files pgbg writes are created 0600 under a temporary
 * name and renamed into place: never readable by others, not even briefly, and
 * a symlink at the path is replaced, never followed.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fchmodSync, fstatSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { PgbgError, SqlState } from '../protocol/errors.js';

/** Reads a private file; `what` names it in errors (e.g. "credentials file"). Missing or unreadable: 22023. */
export function readPrivateFile(file: string, what = 'file'): string {
  const text = readPrivateFileIfExists(file, what);
  if (text === undefined) throw new PgbgError(SqlState.invalidParameterValue, `cannot read ${what} "${file}": ENOENT`);
  return text;
}

/** As readPrivateFile, but a file that does not exist reads as undefined. */
export function readPrivateFileIfExists(file: string, what = 'file'): string | undefined {
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO put in the file's place must not hang the open (it is refused below).
    fd = openSync(file, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') {
      throw new PgbgError(SqlState.insufficientPrivilege, `${what} "${file}" is a symbolic link: pgbg reads secrets only from a regular file`, {
        hint: `replace the link with the file itself, owned by uid ${ownUid() ?? 'of the server'} with mode 0600`,
      });
    }
    throw new PgbgError(SqlState.invalidParameterValue, `cannot read ${what} "${file}": ${code ?? 'error'}`);
  }
  try {
    checkPrivate(fd, file, what);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes `text` to `file`, created 0600: a new file under a random name
 * (O_CREAT | O_EXCL | O_NOFOLLOW, mode 0600 whatever the umask), synced, then
 * renamed over `file` — a reader sees the old content or the new, never a part,
 * and the file is never readable by others.
 */
export function writePrivateFile(file: string, text: string): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0), 0o600);
  try {
    try {
      fchmodSync(fd, 0o600); // the umask can only take bits away; this sets exactly 0600
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // already renamed or never created
    }
    throw err;
  }
}

function ownUid(): number | undefined {
  return typeof process.getuid === 'function' ? process.getuid() : undefined;
}

function checkPrivate(fd: number, file: string, what: string): void {
  const st = fstatSync(fd);
  if (!st.isFile()) {
    throw new PgbgError(SqlState.insufficientPrivilege, `${what} "${file}" is not a regular file`, {
      hint: 'give the path of a regular file, owned by the server\'s user with mode 0600',
    });
  }
  const uid = ownUid();
  // Root too: a file another user owns is one they can replace or make readable.
  if (uid !== undefined && st.uid !== uid) {
    throw new PgbgError(SqlState.insufficientPrivilege, `${what} "${file}" is owned by uid ${st.uid}, not by uid ${uid} (the user pgbg runs as)`, {
      hint: `chown ${uid} ${file} (as root), or run pgbg as the file's owner`,
    });
  }
  const mode = st.mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new PgbgError(SqlState.insufficientPrivilege, `${what} "${file}" has group or other access (mode ${mode.toString(8).padStart(4, '0')}): it holds secrets`, {
      hint: `chmod 600 ${file}`,
    });
  }
}
