/**
 * bench/results/chart.svg, written by hand (no plotting dependency): INSERT
 * jobs/s per path at 1 and 4 callers on a log scale (the paths span three
 * decades), large-result times, and the memory phase.
 */
import type { BenchResults } from './results.js';

const WIDTH = 820;
const LABEL_W = 300;
const PLOT_W = WIDTH - LABEL_W - 90;
const BAR_H = 13;
const COLORS = { one: '#4c78a8', four: '#f58518', time: '#54a24b', mem: '#b279a2', bound: '#9d9d9d' };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function num(x: number): string {
  if (x >= 100) return Math.round(x).toLocaleString('en-US');
  return x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

function tick(x: number): string {
  return Number.isInteger(x) ? x.toLocaleString('en-US') : String(Number(x.toPrecision(3)));
}

function text(x: number, y: number, s: string, attrs = ''): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${esc(s)}</text>`;
}

interface Bar {
  value: number;
  color: string;
  label: string;
}

interface Group {
  label: string;
  bars: Bar[];
}

/** One panel of grouped horizontal bars; returns its SVG and height. */
function panel(top: number, title: string, groups: Group[], scale: 'log' | 'linear', unit: string, legendItems: [string, string][] = []): { svg: string; height: number } {
  const values = groups.flatMap((g) => g.bars.map((b) => b.value)).filter((v) => v > 0 && Number.isFinite(v));
  const parts: string[] = [text(10, top + 16, title, 'font-weight="bold" font-size="14"')];
  if (legendItems.length > 0) parts.push(legend(top + 7, WIDTH - 200, legendItems));
  const plotTop = top + 28;
  const groupH = (n: number) => n * (BAR_H + 2) + 8;
  const height = 28 + groups.reduce((h, g) => h + groupH(g.bars.length), 0) + 22;
  if (values.length === 0) return { svg: parts.join('\n'), height };
  let x: (v: number) => number;
  const ticks: number[] = [];
  if (scale === 'log') {
    const lo = Math.floor(Math.log10(Math.min(...values)));
    const hi = Math.ceil(Math.log10(Math.max(...values)));
    const span = Math.max(1, hi - lo);
    x = (v) => LABEL_W + ((Math.log10(Math.max(v, 10 ** lo)) - lo) / span) * PLOT_W;
    for (let e = lo; e <= lo + span; e++) ticks.push(10 ** e);
  } else {
    const max = Math.max(...values) * 1.05;
    const step = 10 ** Math.floor(Math.log10(max));
    const nice = max / step > 5 ? step : step / 2;
    x = (v) => LABEL_W + (v / max) * PLOT_W;
    for (let t = 0; t <= max; t += nice) ticks.push(t);
  }
  const plotBottom = top + height - 22;
  for (const t of ticks) {
    const tx = x(t);
    parts.push(`<line x1="${tx.toFixed(1)}" y1="${plotTop - 4}" x2="${tx.toFixed(1)}" y2="${plotBottom}" stroke="#ddd"/>`);
    parts.push(text(tx, plotBottom + 14, `${tick(t)}${unit}`, 'text-anchor="middle" fill="#666" font-size="10"'));
  }
  let y = plotTop;
  for (const g of groups) {
    parts.push(text(LABEL_W - 8, y + (g.bars.length * (BAR_H + 2)) / 2 + 3, g.label, 'text-anchor="end"'));
    for (const b of g.bars) {
      const w = Math.max(1, x(b.value) - LABEL_W);
      parts.push(`<rect x="${LABEL_W}" y="${y.toFixed(1)}" width="${w.toFixed(1)}" height="${BAR_H}" fill="${b.color}"><title>${esc(`${b.label}: ${num(b.value)}${unit}`)}</title></rect>`);
      parts.push(text(LABEL_W + w + 4, y + BAR_H - 2, `${num(b.value)}${unit}`, 'font-size="10" fill="#333"'));
      y += BAR_H + 2;
    }
    y += 8;
  }
  return { svg: parts.join('\n'), height };
}

function legend(top: number, left: number, items: [string, string][]): string {
  let x = left;
  return items
    .map(([label, color]) => {
      const s = `<rect x="${x}" y="${top}" width="10" height="10" fill="${color}"/>${text(x + 14, top + 9, label, 'font-size="11"')}`;
      x += 24 + label.length * 6.5;
      return s;
    })
    .join('\n');
}

export function renderChart(r: BenchResults): string {
  const parts: string[] = [];
  let top = 28;
  const title = `pgbg benchmark (${r.mode}) — ${r.machine.cpus} CPUs, PostgreSQL ${r.machine.postgres}, Node ${r.machine.node}, ${r.startedAt.slice(0, 10)}`;
  parts.push(text(10, 20, title, 'font-size="13" fill="#333"'));

  const paths = [...new Set(r.latency.filter((f) => f.kind === 'insert').map((f) => f.path))];
  const jobs = paths.map((p) => {
    const of = (callers: number) => r.latency.find((f) => f.path === p && f.kind === 'insert' && f.callers === callers);
    const bars: Bar[] = [];
    const one = of(1);
    const four = of(4);
    if (one) bars.push({ value: one.jobsPerSec.median, color: COLORS.one, label: '1 caller' });
    if (four) bars.push({ value: four.jobsPerSec.median, color: COLORS.four, label: '4 callers' });
    return { label: (one ?? four)!.label, bars };
  });
  const p1 = panel(top, 'INSERT jobs/s (log scale; higher is better)', jobs, 'log', '', [['1 caller', COLORS.one], ['4 callers', COLORS.four]]);
  parts.push(p1.svg);
  top += p1.height + 16;

  if (r.large.length > 0) {
    const rows = r.large[0]!.rows.toLocaleString('en-US');
    const p2 = panel(
      top,
      `${rows} rows (int, md5 text) read to the end: seconds (lower is better)`,
      r.large.map((f) => ({ label: f.label, bars: [{ value: f.seconds.median, color: COLORS.time, label: 'seconds' }] })),
      'linear',
      ' s',
    );
    parts.push(p2.svg);
    top += p2.height + 16;
  }

  const m = r.memory;
  if (m) {
    const mb = (b: number) => b / (1024 * 1024);
    const p3 = panel(
      top,
      `pgbg server RSS, MB: ${m.jobs} unread jobs × ${Math.round(m.bytesPerJob / 1e6)} MB, ${m.queueBytes / 1024} kB queues`,
      [
        { label: 'baseline', bars: [{ value: mb(m.baseline), color: COLORS.mem, label: 'RSS' }] },
        { label: 'peak while unread', bars: [{ value: mb(m.peakUnread), color: COLORS.mem, label: 'RSS' }] },
        { label: 'peak while reading', bars: [{ value: mb(m.peakReading), color: COLORS.mem, label: 'RSS' }] },
        { label: 'after the jobs ended', bars: [{ value: mb(m.after), color: COLORS.mem, label: 'RSS' }] },
        { label: 'baseline + sum of queue sizes', bars: [{ value: mb(m.baseline + m.queueBound), color: COLORS.bound, label: 'bound' }] },
      ],
      'linear',
      '',
    );
    parts.push(p3.svg);
    top += p3.height + 16;
  }

  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${top}" viewBox="0 0 ${WIDTH} ${top}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
