/** Shared helpers for benches: medians, a table, and results files. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';

export interface Figure {
  name: string;
  unit: string;
  /** Median of the runs. */
  value: number;
  min: number;
  max: number;
  reference?: { name: string; value: number; min: number; max: number };
  /** value / reference.value */
  ratio?: number;
  target?: string;
  met?: boolean;
}

export function summarize(samples: number[]): { value: number; min: number; max: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const value = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { value, min: sorted[0]!, max: sorted[sorted.length - 1]! };
}

export function printTable(title: string, figures: Figure[]): void {
  const rows = figures.map((f) => [
    f.name,
    `${fmt(f.value)} ${f.unit}`,
    `${fmt(f.min)}–${fmt(f.max)}`,
    f.reference ? `${f.reference.name}: ${fmt(f.reference.value)}` : '',
    f.ratio === undefined ? '' : `${(f.ratio * 100).toFixed(0)}%`,
    f.target ? `${f.target} ${f.met ? 'met' : 'MISSED'}` : '',
  ]);
  const head = ['figure', 'median', 'min–max', 'reference (same run)', 'ratio', 'target'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(`\n${title}`);
  console.log(line(head));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
}

function fmt(n: number): string {
  if (n >= 1000) return Math.round(n).toLocaleString('en-US');
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

export function writeResults(name: string, figures: Figure[]): string {
  const dir = join(process.cwd(), 'bench/results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ bench: name, date: new Date().toISOString(), machine: machine(), figures }, null, 2)}\n`,
  );
  return file;
}

export function machine(): { cores: number; cpu: string; node: string; platform: string } {
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    platform: process.platform,
  };
}

/** A one-line progress bar on stderr for long runs (plain lines when not a TTY). */
export function progress(label: string, done: number, total: number): void {
  const width = 30;
  const filled = Math.round((done / total) * width);
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${label}`;
  if (process.stderr.isTTY) process.stderr.write(`\r${bar}${done === total ? '\n' : ''}`);
  else if (done === total || done === 1) process.stderr.write(`${bar}\n`);
}
