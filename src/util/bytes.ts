/** Text cut to a size in UTF-8 bytes, as PostgreSQL limits its names and messages. */

/** At most `max` UTF-8 bytes of `text`, cut on a character boundary. */
export function cutBytes(text: string, max: number): string {
  if (Buffer.byteLength(text) <= max) return text;
  let out = '';
  let used = 0;
  for (const ch of text) {
    const n = Buffer.byteLength(ch);
    if (used + n > max) break;
    out += ch;
    used += n;
  }
  return out;
}
