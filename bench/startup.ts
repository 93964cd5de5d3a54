/**
 * Start-up time to ready, with an existing data dir, on the path a user runs:
 * `node dist/src/cli.js start` (compiled JavaScript, no tsx), embedded PGlite
 * (the default, whose database lives in the data dir).
 *
 * The data dir is made once by the same build: 10,000 devices imported through
 * POST /api/v1/devices/import with 2,000 owners, telemetry in the write-ahead
 * log, tickets (and the fleet incident they add up to) opened by a fault rule;
 * then a graceful stop (SIGTERM, exit 0). Then RUNS starts, each measured from
 * just before spawn() to the first 200 from GET /readyz (polled every 5 ms),
 * and stopped gracefully. The bridge's own log times (pino `time`) give the
 * phases: spawn -> "database ready" (module loading + PGlite open and
 * migrations) -> "write-ahead log ready" (rules, guides, push, log replay,
 * 10,000 devices handed to the rule engine) -> "ready" (broker, HTTP).
 *
 * References, same run, interleaved with the measured starts so machine noise
 * falls on all alike: the same start with an EMPTY data dir, and a bare
 * `node -e ''` (spawn -> exit).
 *
 * dist/ is used when it is newer than every src/ file; otherwise the sources are
 * compiled (tsc -p tsconfig.build.json) into a temp dir first, so a stale or
 * missing build is never what is measured.
 *
 * With --profile (or when the budget is missed), one more start runs under
 * --cpu-prof and the CPU time up to ready is broken down by package / src dir.
 *
 *   npx tsx bench/startup.ts [--runs 5] [--devices 10000] [--profile]
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import mqtt from 'mqtt';
import { deriveOwnerSecret, deriveSecret } from '../firmware-sim/credentials.js';
import { provision } from '../firmware-sim/provision.js';
import { freePort } from '../test/helpers/net.js';
import { tempDir } from '../test/helpers/process.js';
import { type Figure, printTable, summarize, writeResults } from './lib.js';

const flags = process.argv.slice(2);
const flag = (name: string) => {
  const i = flags.indexOf(`--${name}`);
  return i >= 0 ? flags[i + 1] : undefined;
};
const RUNS = Number(flag('runs') ?? 5);
const DEVICES = Number(flag('devices') ?? 10_000);
const OWNERS = Math.max(1, Math.floor(DEVICES / 5));
const TELEMETRY = { devices: 200, messages: 50 };
const FAULTY = 50;
const PROFILE = flags.includes('--profile');
const BUDGET_MS = 3_000;
const SEED = 'startup';
const TOKEN = 'startup-bench-admin-token-0123456789';
const ROOT = process.cwd();

// ---------------------------------------------------------------- the build

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** The compiled CLI to run: dist/ when it is current, else a fresh tsc build in a temp dir. */
function compiledCli(): { cli: string; note: string; cleanup(): void } {
  const dist = join(ROOT, 'dist/src/cli.js');
  if (existsSync(dist) && statSync(dist).mtimeMs >= newestMtime(join(ROOT, 'src'))) {
    return { cli: dist, note: 'dist/', cleanup: () => undefined };
  }
  const base = mkdtempSync(join(tmpdir(), 'faultline-startup-build-'));
  // Beside the output: the package.json (ESM), node_modules and web/dist, as in the checkout.
  for (const name of ['package.json', 'node_modules', 'web']) symlinkSync(join(ROOT, name), join(base, name));
  console.error(
    `dist/ is ${existsSync(dist) ? 'older than src/' : 'missing'}: compiling src/ into ${base} (tsc)`,
  );
  const t0 = performance.now();
  const r = spawnSync(
    process.execPath,
    [
      join(ROOT, 'node_modules/typescript/bin/tsc'),
      '-p',
      'tsconfig.build.json',
      '--outDir',
      join(base, 'dist'),
    ],
    { cwd: ROOT, encoding: 'utf8' },
  );
  const cli = join(base, 'dist/src/cli.js');
  if (!existsSync(cli)) throw new Error(`tsc produced no ${cli}:\n${r.stdout}${r.stderr}`);
  if (r.status !== 0)
    console.error(`tsc reported errors (the output is used anyway):\n${r.stdout.slice(0, 2000)}`);
  console.error(`compiled in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return {
    cli,
    note: 'a fresh tsc build (dist/ was stale)',
    cleanup: () => rmSync(base, { recursive: true, force: true }),
  };
}

// ---------------------------------------------------------------- one start

interface Started {
  child: ChildProcess;
  httpPort: number;
  mqttPort: number;
  /** Wall time (ms since the epoch) just before spawn(). */
  spawnedAt: number;
  /** spawn -> first 200 from /readyz, ms. */
  readyMs: number;
  /** CPU time (user + system, every thread) the process had used when it was ready, ms. */
  cpuMs: number;
  /** Log line -> its `time` minus spawnedAt, ms (the first line of each message). */
  phases: Map<string, number>;
  output(): string;
  stop(): Promise<{ code: number | null; exitedAt: number }>;
}

const PHASES: Array<[string, RegExp]> = [
  ['database opened', /^database opened/],
  ['database ready', /^database ready/],
  ['rules loaded', /^loaded \d+ rules/],
  ['write-ahead log ready', /^write-ahead log ready/],
  ['MQTT listening', /^MQTT broker listening/],
  ['HTTP listening', /^HTTP API on/],
  ['ready', /^ready$/],
];

function readyz(port: number): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/readyz', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

async function start(cli: string, dataDir: string, nodeArgs: string[] = []): Promise<Started> {
  const [httpPort, mqttPort, wsPort] = [await freePort(), await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    FAULTLINE_DATA_DIR: dataDir,
    FAULTLINE_MQTT_HOST: '127.0.0.1',
    FAULTLINE_HTTP_HOST: '127.0.0.1',
    FAULTLINE_MQTT_PORT: String(mqttPort),
    FAULTLINE_HTTP_PORT: String(httpPort),
    FAULTLINE_WS_PORT: String(wsPort),
    FAULTLINE_ADMIN_TOKEN: TOKEN,
  };
  delete env.NODE_OPTIONS; // a tsx loader inherited from `npm run bench` is not the user's path
  const phases = new Map<string, number>();
  let out = '';
  let pending = '';
  const spawnedAt = Date.now();
  const t0 = performance.now();
  const child = spawn(process.execPath, [...nodeArgs, cli, 'start'], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<{ code: number | null; exitedAt: number }>((resolve) =>
    child.once('exit', (code) => resolve({ code, exitedAt: Date.now() })),
  );
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    pending += d.toString();
    let nl = pending.indexOf('\n');
    while (nl >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      nl = pending.indexOf('\n');
      try {
        const rec = JSON.parse(line) as { time?: string; msg?: string };
        const phase = PHASES.find(([, re]) => re.test(rec.msg ?? ''))?.[0];
        if (phase && rec.time && !phases.has(phase)) phases.set(phase, Date.parse(rec.time) - spawnedAt);
      } catch {
        // not a log record
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`bridge exited with ${child.exitCode} before ready:\n${out}`);
    if ((await readyz(httpPort)) === 200) break;
    if (performance.now() - t0 > 60_000) throw new Error(`bridge not ready after 60 s:\n${out}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const readyMs = performance.now() - t0;
  const cpuMs = cpuTicks(child.pid!) * 10;
  return {
    child,
    httpPort,
    mqttPort,
    spawnedAt,
    readyMs,
    cpuMs,
    phases,
    output: () => out,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const r = await exited;
      clearTimeout(timer);
      return r;
    },
  };
}

/** utime + stime of a process, in clock ticks (1/100 s). */
function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return Number.NaN;
  }
}

/** spawn -> exit of a bare `node -e ''`: what any Node process costs before it runs a line. */
function bareNode(): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore', env: { PATH: process.env.PATH } });
    child.once('error', reject);
    child.once('exit', () => resolve(performance.now() - t0));
  });
}

// ---------------------------------------------------------------- the data dir

async function populate(cli: string, dataDir: string): Promise<string> {
  const b = await start(cli, dataDir);
  const apiUrl = `http://127.0.0.1:${b.httpPort}`;
  try {
    const ids = Array.from({ length: DEVICES }, (_, i) => `st-${String(i).padStart(6, '0')}`);
    const ownerOf = (i: number) => `st-owner-${String(i % OWNERS).padStart(6, '0')}`;
    const result = await provision({
      apiUrl,
      token: TOKEN,
      chunkSize: 10_000,
      devices: ids.map((id, i) => ({
        id,
        model: i % 3 === 0 ? 'RV-200' : 'AC-9000',
        firmware: '1.0.0',
        ownerId: ownerOf(i),
        ownerLocale: 'en',
        region: `region-${i % 7}`,
        batch: `B${i % 40}`,
        secret: deriveSecret(SEED, id),
      })),
      owners: Array.from({ length: OWNERS }, (_, i) => ({
        id: ownerOf(i),
        locale: 'en',
        secret: deriveOwnerSecret(SEED, ownerOf(i)),
        quietHours: 'off',
      })),
    });
    if (result.failed.length > 0) throw new Error(`provisioning: ${result.failed[0]!.message}`);

    // Telemetry into the write-ahead log (and rule state), then faults that open tickets.
    const acIds = ids.filter((_, i) => i % 3 !== 0);
    const connect = (id: string) =>
      mqtt.connectAsync(`mqtt://127.0.0.1:${b.mqttPort}`, {
        clientId: id,
        username: id,
        password: deriveSecret(SEED, id),
        reconnectPeriod: 0,
      });
    let seq = 0;
    await Promise.all(
      acIds.slice(0, TELEMETRY.devices).map(async (id, k) => {
        const c = await connect(id);
        for (let m = 0; m < TELEMETRY.messages; m++) {
          const ts = Date.now();
          await c.publishAsync(
            `devices/${id}/telemetry`,
            JSON.stringify({
              ts,
              seq: seq++,
              metrics: { compressor_temp: 70 + (m % 5), compressor_freq: 48, fan_rpm: 900, mode: 'cool' },
            }),
            { qos: 1 },
          );
        }
        if (k < FAULTY) {
          const ts = Date.now();
          await c.publishAsync(
            `devices/${id}/faults`,
            JSON.stringify({
              batch: [0, 1, 2].map((j) => ({ ts: ts - 2 + j, seq: 1_000_000 + j, code: 'E05' })),
            }),
            { qos: 1 },
          );
        }
        await c.endAsync();
      }),
    );
    // Every ticket in the database before the stop.
    let tickets = 0;
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
      const list = (await (
        await fetch(`${apiUrl}/api/v1/tickets?limit=100`, { headers: { authorization: `Bearer ${TOKEN}` } })
      ).json()) as { items: unknown[] };
      tickets = list.items.length;
      if (tickets >= FAULTY) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const stopped = await b.stop();
    if (stopped.code !== 0)
      throw new Error(`the populating bridge stopped with ${stopped.code}:\n${b.output()}`);
    const walBytes = dirBytes(join(dataDir, 'wal'));
    const dbBytes = dirBytes(join(dataDir, 'db'));
    return (
      `${DEVICES.toLocaleString('en-US')} devices, ${OWNERS.toLocaleString('en-US')} owners, ` +
      `${(TELEMETRY.devices * TELEMETRY.messages).toLocaleString('en-US')} telemetry messages, ${tickets} tickets; ` +
      `db ${(dbBytes / 1e6).toFixed(1)} MB, wal ${(walBytes / 1e6).toFixed(1)} MB`
    );
  } catch (err) {
    await b.stop();
    throw err;
  }
}

function dirBytes(dir: string): number {
  if (!existsSync(dir)) return 0;
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? dirBytes(path) : statSync(path).size;
  }
  return total;
}

// ---------------------------------------------------------------- the profile

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string }; children?: number[] }>;
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Where a frame's code lives: a package, a src/ dir, a node built-in, or V8's own buckets. */
function bucketOf(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  const path = url.replace(/^file:\/\//, '');
  const nm = path.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = path.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (path.startsWith('node:'))
    return path.startsWith('node:internal/modules') ? 'node: module loader' : 'node: other built-ins';
  const src = path.indexOf('/dist/src/');
  if (src >= 0) {
    const parts = path.slice(src + '/dist/'.length).split('/');
    return parts.length > 2 ? `${parts[0]}/${parts[1]}` : parts.join('/');
  }
  return relative(ROOT, path);
}

async function profileStart(cli: string, dataDir: string): Promise<void> {
  const profDir = mkdtempSync(join(tmpdir(), 'faultline-startup-prof-'));
  try {
    const b = await start(cli, dataDir, ['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
    const readyAt = b.spawnedAt + b.readyMs;
    const { exitedAt } = await b.stop();
    const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error('no .cpuprofile written');
    const prof = JSON.parse(readFileSync(join(profDir, file), 'utf8')) as CpuProfile;
    // The profile ends at exit; ready was (exit - ready) before that.
    const cut = prof.endTime - (exitedAt - readyAt) * 1000;
    const nodes = new Map(prof.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const plumbing = new Set(['node: module loader', 'node: other built-ins', '(native)', '(program)']);
    /** The sample's time goes to the innermost frame of a package or src/ dir (WebAssembly: PGlite's). */
    const owner = (id: number): string => {
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        const f = nodes.get(at)!.callFrame;
        if (f.url.startsWith('wasm:')) return '@electric-sql/pglite (WebAssembly Postgres)';
        const b = bucketOf(f.url, f.functionName);
        if (f.url && !plumbing.has(b)) return b;
      }
      const f = nodes.get(id)!.callFrame;
      return bucketOf(f.url, f.functionName);
    };
    const self = new Map<string, number>();
    const owned = new Map<string, number>();
    const byFn = new Map<string, number>();
    // Per phase of the log (spawn -> "database opened" -> ...): which code the time went to.
    const bounds = PHASES.map(([name]) => [name, b.phases.get(name) ?? Number.POSITIVE_INFINITY] as const);
    const perPhase = new Map<string, Map<string, number>>(bounds.map(([name]) => [name, new Map()]));
    const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
    let t = prof.startTime;
    let total = 0;
    for (let i = 0; i < prof.samples.length; i++) {
      t += prof.timeDeltas[i]!;
      if (t > cut) break;
      const dt = prof.timeDeltas[i + 1] ?? 0;
      const id = prof.samples[i]!;
      const n = nodes.get(id)!;
      const bucket = bucketOf(n.callFrame.url, n.callFrame.functionName);
      const o = owner(id);
      add(self, bucket, dt);
      add(owned, o, dt);
      add(byFn, `${n.callFrame.functionName || '(anonymous)'} ${bucket}`, dt);
      const sinceSpawn = exitedAt - (prof.endTime - t) / 1000 - b.spawnedAt;
      const phase = bounds.find(([, end]) => sinceSpawn <= end)?.[0] ?? 'ready';
      add(perPhase.get(phase)!, o, dt);
      total += dt;
    }
    const show = (m: Map<string, number>, k: number, indent = '  ') =>
      [...m.entries()]
        .sort((x, y) => y[1] - x[1])
        .slice(0, k)
        .map(([name, us]) => `${indent}${(us / 1000).toFixed(0).padStart(6)} ms  ${name}`)
        .join('\n');
    console.log(
      `\nCPU profile of one start (existing data dir), spawn -> ready ${b.readyMs.toFixed(0)} ms, ` +
        `profiled ${(total / 1000).toFixed(0)} ms (before the profiler starts, Node's own boot is not in it)`,
    );
    const profilerFrom = exitedAt - (prof.endTime - prof.startTime) / 1000 - b.spawnedAt;
    console.log(
      `by phase of the log (wall ms of the phase, profiled ms in it, and the code that profiled time went to); ` +
        `the profiler started ${profilerFrom.toFixed(0)} ms after spawn:`,
    );
    let previous = 0;
    for (const [name, end] of bounds) {
      const inPhase = [...perPhase.get(name)!.values()].reduce((x, y) => x + y, 0) / 1000;
      console.log(`  -> ${name}: ${(end - previous).toFixed(0)} ms wall, ${inPhase.toFixed(0)} ms profiled`);
      console.log(show(perPhase.get(name)!, 6, '    '));
      previous = end;
    }
    console.log(
      `whole start, by the package or src/ dir whose code ran (Node built-ins and natives go to their caller; ` +
        `module loader = reading and compiling modules; "(idle)" = waiting on I/O or timers):\n${show(owned, 16)}`,
    );
    console.log(`top functions by self time:\n${show(byFn, 12)}`);
    if (PROFILE) {
      const kept = join(tmpdir(), `faultline-startup-${Date.now()}.cpuprofile`);
      writeFileSync(kept, readFileSync(join(profDir, file)));
      console.log(`profile kept for Chrome DevTools / speedscope: ${kept}`);
    }
  } finally {
    rmSync(profDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const build = compiledCli();
  const data = tempDir('bench-startup');
  try {
    const content = await populate(build.cli, data.path);
    console.log(`data dir: ${content}`);
    const existing: number[] = [];
    const existingCpu: number[] = [];
    const empty: number[] = [];
    const bare: number[] = [];
    const phases: Array<Map<string, number>> = [];
    for (let i = 0; i < RUNS; i++) {
      bare.push(await bareNode());
      const fresh = mkdtempSync(join(tmpdir(), 'faultline-startup-empty-'));
      try {
        const e = await start(build.cli, fresh);
        empty.push(e.readyMs);
        await e.stop();
      } finally {
        rmSync(fresh, { recursive: true, force: true });
      }
      const s = await start(build.cli, data.path);
      existing.push(s.readyMs);
      existingCpu.push(s.cpuMs);
      phases.push(s.phases);
      const stopped = await s.stop();
      if (stopped.code !== 0) throw new Error(`stop exited with ${stopped.code}:\n${s.output()}`);
      console.log(
        `run ${i + 1}: existing ${s.readyMs.toFixed(0)} ms (cpu ${s.cpuMs} ms), empty ${empty[i]!.toFixed(0)} ms, bare node ${bare[i]!.toFixed(0)} ms`,
      );
    }
    // Phase lengths (from the bridge's own log times), median over the runs.
    const at = (name: string) => summarize(phases.map((p) => p.get(name) ?? Number.NaN)).value;
    let previous = 0;
    const steps: string[] = [];
    for (const [name] of PHASES) {
      const t = at(name);
      steps.push(`${name} +${(t - previous).toFixed(0)}`);
      previous = t;
    }
    console.log(
      `phases, existing data dir (median ms each, from the bridge's log times): spawn -> ${steps.join(' -> ')}`,
    );

    const ex = summarize(existing);
    const em = summarize(empty);
    const ba = summarize(bare);
    const figures: Figure[] = [
      {
        name: `start-up to ready (/readyz 200), existing data dir (${DEVICES.toLocaleString('en-US')} devices), PGlite, node cli.js start from ${build.note}`,
        unit: 'ms',
        ...ex,
        reference: { name: 'empty data dir', ...em },
        ratio: ex.value / em.value,
        target: `<= ${BUDGET_MS} ms`,
        met: ex.value <= BUDGET_MS,
      },
      {
        name: 'start-up to ready, empty data dir (PGlite created, migrations run)',
        unit: 'ms',
        ...em,
        reference: { name: "bare `node -e ''` spawn -> exit", ...ba },
        ratio: em.value / ba.value,
      },
      {
        name: 'CPU time (user+sys) of the bridge up to ready, existing data dir',
        unit: 'ms',
        ...summarize(existingCpu),
      },
      {
        name: 'spawn -> "database ready" log time (modules loaded, PGlite opened), existing data dir',
        unit: 'ms',
        ...summarize(phases.map((p) => p.get('database ready') ?? Number.NaN)),
        reference: { name: "bare `node -e ''`", ...ba },
        ratio: at('database ready') / ba.value,
      },
    ];
    printTable(`Start-up (${RUNS} starts each, interleaved; data dir: ${content})`, figures);
    console.log(`results: ${writeResults('startup', figures)}`);
    if (PROFILE || ex.value > BUDGET_MS) await profileStart(build.cli, data.path);
  } finally {
    data.remove();
    build.cleanup();
  }
}

await main();
