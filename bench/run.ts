/**
 * `npm run bench`: runs every bench under bench/ in its own process (so one
 * bench's heap and timers do not colour the next), then gathers their figures
 * into bench/results/latest.json.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { machine } from './lib.js';

const here = join(process.cwd(), 'bench');
const only = process.argv.slice(2);
const benches = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && !['lib.ts', 'run.ts'].includes(f))
  .filter((f) => only.length === 0 || only.some((o) => f.startsWith(o)))
  .sort();

const failed: string[] = [];
for (const file of benches) {
  console.log(`\n=== ${file}`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, file)], {
    stdio: 'inherit',
    timeout: 300_000,
  });
  if (r.status !== 0) failed.push(file);
}

const resultsDir = join(here, 'results');
const all: Record<string, unknown> = {};
if (existsSync(resultsDir)) {
  for (const f of readdirSync(resultsDir).filter((f) => f.endsWith('.json') && f !== 'latest.json')) {
    all[f.replace(/\.json$/, '')] = JSON.parse(readFileSync(join(resultsDir, f), 'utf8'));
  }
}
writeFileSync(
  join(resultsDir, 'latest.json'),
  `${JSON.stringify({ date: new Date().toISOString(), machine: machine(), benches: all, failed }, null, 2)}\n`,
);
console.log(`\nwrote bench/results/latest.json (${Object.keys(all).length} benches)`);
if (failed.length > 0) {
  console.error(`failed: ${failed.join(', ')}`);
  process.exit(1);
}
