/**
 * Summarises a .cpuprofile without a GUI.
 *
 *   node bench/profile/top.mjs FILE [--top 30] [--from S] [--to S] [--blocks MS]
 *
 * Default: self time per function and per file or package (idle included, so the share of
 * busy time is visible). --from/--to keep the samples between those seconds of the profile.
 * --blocks MS: the stretches of consecutive busy samples of at least MS milliseconds (what
 * holds the event loop that long delays every message meanwhile), grouped by the frame that
 * dominated each: the innermost one in src/, else in a package, else the sampled one.
 */
import { readFileSync } from 'node:fs';

const [file, ...rest] = process.argv.slice(2);
if (!file) {
  console.error('usage: node bench/profile/top.mjs FILE [--top N] [--from S] [--to S] [--blocks MS]');
  process.exit(2);
}
const opt = new Map();
for (let i = 0; i < rest.length; i += 2) opt.set(rest[i].replace(/^--/, ''), Number(rest[i + 1]));
const top = opt.get('top') ?? 30;
const from = (opt.get('from') ?? Number.NEGATIVE_INFINITY) * 1e6;
const to = (opt.get('to') ?? Number.POSITIVE_INFINITY) * 1e6;

const profile = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const where = (url) =>
  url
    .replace(/^file:\/\//, '')
    .replace(/.*node_modules\//, '')
    .replace(/.*?\/(src|bench|firmware-sim|test)\//, '$1/');
const label = (n) =>
  `${n.callFrame.functionName || '(anonymous)'} ${where(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
const isIdle = (n) => n.callFrame.functionName === '(idle)';

/** Each sample with its duration (the gap to the next one) and time since the profile start. */
function* samples() {
  let t = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i];
    if (t < from || t > to) continue;
    yield { node: byId.get(profile.samples[i]), at: t, us: profile.timeDeltas[i + 1] ?? 0 };
  }
}

function print(title, map, total) {
  console.log(`\n${title} (of ${(total / 1e6).toFixed(2)} s)`);
  for (const [k, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(
      `${(us / 1e3).toFixed(0).padStart(8)} ms ${((100 * us) / total).toFixed(1).padStart(5)} %  ${k}`,
    );
  }
}

const blocksMs = opt.get('blocks');
if (blocksMs === undefined) {
  const fn = new Map();
  const files = new Map();
  let total = 0;
  for (const { node, us } of samples()) {
    total += us;
    const k = label(node);
    fn.set(k, (fn.get(k) ?? 0) + us);
    const f = where(node.callFrame.url) || node.callFrame.functionName;
    files.set(f, (files.get(f) ?? 0) + us);
  }
  print('self time by function', fn, total);
  print('self time by file or package', files, total);
} else {
  const owners = new Map();
  const owner = (id) => {
    if (owners.has(id)) return owners.get(id);
    const chain = [];
    for (let c = id; c !== undefined; c = parent.get(c)) chain.push(byId.get(c));
    const pick =
      chain.find(
        (n) => /\/(src|firmware-sim)\//.test(n.callFrame.url) && !n.callFrame.url.includes('node_modules'),
      ) ??
      chain.find((n) => n.callFrame.url.includes('node_modules')) ??
      chain[0];
    owners.set(id, label(pick));
    return owners.get(id);
  };
  const runs = [];
  let run = null;
  let span = 0;
  for (const { node, at, us } of samples()) {
    span = at;
    if (isIdle(node)) {
      if (run) runs.push(run);
      run = null;
      continue;
    }
    run ??= { at, us: 0, by: new Map() };
    run.us += us;
    const k = owner(node.id);
    run.by.set(k, (run.by.get(k) ?? 0) + us);
  }
  if (run) runs.push(run);
  const long = runs.filter((r) => r.us >= blocksMs * 1000);
  const grouped = new Map();
  for (const r of long) {
    const k = [...r.by].sort((a, b) => b[1] - a[1])[0][0];
    const g = grouped.get(k) ?? { n: 0, us: 0, max: 0 };
    g.n++;
    g.us += r.us;
    g.max = Math.max(g.max, r.us);
    grouped.set(k, g);
  }
  console.log(
    `${long.length} busy stretches of >= ${blocksMs} ms in ${(span / 1e6).toFixed(0)} s, ` +
      `${(long.reduce((a, r) => a + r.us, 0) / 1e6).toFixed(2)} s in all; by what dominated them:`,
  );
  for (const [k, g] of [...grouped].sort((a, b) => b[1].us - a[1].us).slice(0, top)) {
    console.log(
      `${String(g.n).padStart(5)} x, ${(g.us / 1e3).toFixed(0).padStart(6)} ms, longest ${(g.max / 1e3).toFixed(0).padStart(4)} ms  ${k}`,
    );
  }
}
