/**
 * `npm run bench`: the whole suite, each bench in its own process (so one
 * bench's heap and timers do not colour the next). Prints one table of every
 * figure beside its same-run reference and writes bench/results/latest.json
 * with the machine, the date and, for each figure under a budget, whether it
 * met its target (and, where it missed, why: bench/budget.ts).
 *
 *   npm run bench                 # everything (about 7.5 minutes on 2 cores)
 *   npm run bench -- ingest scale # only benches whose file name starts so
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BENCHES, missedBecause } from './budget.js';
import { type Figure, machine, printTable } from './lib.js';

const here = join(process.cwd(), 'bench');
const resultsDir = join(here, 'results');
const only = process.argv.slice(2);
const chosen = BENCHES.filter((b) => only.length === 0 || only.some((o) => b.file.startsWith(o)));

const started = Date.now();
const failed: string[] = [];
const ran: Array<{ bench: string; seconds: number; ok: boolean }> = [];
for (const bench of chosen) {
  const name = bench.file.replace(/\.ts$/, '');
  console.log(`\n=== ${bench.file} (budget ${bench.maxSeconds} s)`);
  rmSync(join(resultsDir, `${name}.json`), { force: true });
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, bench.file), ...bench.args], {
    stdio: 'inherit',
    timeout: bench.maxSeconds * 2 * 1000,
  });
  const ok = r.status === 0 && existsSync(join(resultsDir, `${name}.json`));
  ran.push({ bench: name, seconds: (Date.now() - t0) / 1000, ok });
  if (!ok) failed.push(name);
}

interface Row extends Figure {
  bench: string;
  why?: string;
}
const rows: Row[] = [];
for (const { bench } of ran) {
  const file = join(resultsDir, `${bench}.json`);
  if (!existsSync(file)) continue;
  const result = JSON.parse(readFileSync(file, 'utf8')) as { figures: Figure[] };
  for (const f of result.figures) {
    const row: Row = { bench, ...f };
    if (f.target && f.met === false) row.why = missedBecause(f.name);
    rows.push(row);
  }
}

const wallSeconds = (Date.now() - started) / 1000;
printTable(
  `Faultline bench suite: ${rows.length} figures from ${ran.length} benches in ${wallSeconds.toFixed(0)} s`,
  rows.map((r) => ({ ...r, name: `${r.bench}: ${r.name}` })),
);
const budget = rows.filter((r) => r.target);
console.log(`\nBudget: ${budget.filter((r) => r.met).length} of ${budget.length} targets met`);
for (const r of budget.filter((r) => !r.met))
  console.log(`  MISSED ${r.bench}: ${r.name} (${r.target}): ${r.why}`);

const all = chosen.length === BENCHES.length;
const out = join(resultsDir, all ? 'latest.json' : 'partial.json');
writeFileSync(
  out,
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      machine: machine(),
      wallSeconds,
      benches: ran,
      budget: budget.map((r) => ({
        figure: `${r.bench}: ${r.name}`,
        target: r.target,
        value: r.value,
        unit: r.unit,
        met: r.met,
        ...(r.why ? { why: r.why } : {}),
      })),
      figures: rows,
      failed,
    },
    null,
    2,
  )}\n`,
);
console.log(`\nwrote ${out}`);
if (failed.length > 0) {
  console.error(`failed: ${failed.join(', ')}`);
  process.exit(1);
}
