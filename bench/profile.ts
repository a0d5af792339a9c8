/**
 * Summarizes a V8 .cpuprofile (from BENCH_SERVER_CPU_PROF=<dir> npm run bench):
 * the functions with the most self time, and self time per file / package.
 *   node --import tsx bench/profile.ts <file.cpuprofile> [top]
 */
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
}

/** `node_modules/<pkg>` or the repository-relative file; V8's own frames keep their name. */
function owner(url: string, name: string): string {
  if (!url) return `(${name || 'native'})`;
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!;
  if (url.startsWith('node:')) return url;
  const src = /\/((?:src|bench|test)\/.*)$/.exec(url);
  return src ? src[1]! : url;
}

async function main(): Promise<void> {
  const [file, topArg] = process.argv.slice(2);
  if (!file) throw new Error('usage: bench/profile.ts <file.cpuprofile> [top]');
  const top = Number(topArg ?? 25);
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const totalHits = profile.nodes.reduce((n, x) => n + (x.hitCount ?? 0), 0);
  const msPerHit = (profile.endTime - profile.startTime) / 1000 / Math.max(1, totalHits);
  const byFunction = new Map<string, number>();
  const byOwner = new Map<string, number>();
  const parentOf = new Map<number, ProfileNode>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parentOf.set(c, n);
  const keyOf = (n: ProfileNode) => {
    const { functionName, url, lineNumber } = n.callFrame;
    // Code transformed on load (tsx) reports every function on line 1: a line number only when it means something.
    return `${functionName || '(anonymous)'}  ${owner(url, functionName)}${url && lineNumber > 0 ? `:${lineNumber + 1}` : ''}`;
  };
  // A native function's self time means little without who called it: keep the nearest application callers.
  const callers = new Map<string, Map<string, number>>();
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0;
    if (hits === 0) continue;
    const key = keyOf(n);
    const where = owner(n.callFrame.url, n.callFrame.functionName);
    byFunction.set(key, (byFunction.get(key) ?? 0) + hits);
    byOwner.set(where, (byOwner.get(where) ?? 0) + hits);
    const chain: string[] = [];
    for (let p = parentOf.get(n.id); p && chain.length < 2; p = parentOf.get(p.id)) {
      // Node's own stream plumbing says little: name the application frames above it.
      if (p.callFrame.url && !p.callFrame.url.startsWith('node:')) chain.push(keyOf(p).replace(/\s+/g, ' '));
    }
    const perKey = callers.get(key) ?? new Map<string, number>();
    const path = chain.join(' < ') || '(root)';
    perKey.set(path, (perKey.get(path) ?? 0) + hits);
    callers.set(key, perKey);
  }
  const idle = [...byFunction].filter(([k]) => k.startsWith('(idle)')).reduce((n, [, v]) => n + v, 0);
  const busy = totalHits - idle;
  const pct = (h: number) => `${((100 * h) / Math.max(1, busy)).toFixed(1).padStart(5)}%`;
  const lines = [
    `${file}: ${((profile.endTime - profile.startTime) / 1e6).toFixed(1)} s profiled, ${((busy * msPerHit) / 1000).toFixed(1)} s on CPU (percentages of CPU time)`,
    '',
    'self time by function:',
    ...[...byFunction].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, h]) => `  ${pct(h)}  ${k}`),
    '',
    'callers of the five hottest functions:',
    ...[...byFunction]
      .filter(([k]) => !k.startsWith('(idle)') && !k.startsWith('(garbage') && !k.startsWith('(program'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .flatMap(([k]) => [
        `  ${k}`,
        ...[...(callers.get(k) ?? new Map<string, number>())].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([c, h]) => `    ${pct(h)}  < ${c}`),
      ]),
    '',
    'self time by file / package:',
    ...[...byOwner].filter(([k]) => k !== '((idle))').sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, h]) => `  ${pct(h)}  ${k}`),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
