/**
 * Scale: 10,000 simulated devices (one firmware-sim Fleet in this process,
 * connection pacing 1,000/s) connected to a bridge running as its own process,
 * each reporting every 10 s of real time.
 *
 * Phases: the bridge starts (on a throwaway PostgreSQL by default, so the RSS
 * figure is the bridge's own), the devices are imported, one device alone
 * measures the idle bridge (the same-run reference), then the fleet connects
 * (the ramp: how long, how many failed), a warm-up lets the status burst of the
 * clock start and the first reporting round pass, and then consecutive
 * measurement windows each give PUBACK p50/p99 (QoS 1: acknowledged = durable
 * in the bridge's log) by send time, the bridge's peak RSS and CPU, the
 * bridge's and this load generator's event-loop delay. Figures are the median
 * of the windows with min/max. The rule state per device comes from the engine.
 *
 *   npx tsx bench/scale.ts [--devices 10000] [--windows 3] [--window-seconds 20]
 *     [--warmup-seconds 10] [--db postgres|pglite] [--profile DIR] [--node-options '...']
 *
 * --profile DIR writes CPU profiles of the bridge to DIR, one per phase: <pid>-0 startup,
 * import and reference, -1 the connect ramp, -2 the warm-up, -3 the windows, -4 shutdown.
 * Summarise one with `node bench/profile/top.mjs FILE` (add --blocks 10 for what held the
 * event loop 10 ms or more at a time). /metrics is scraped only between phases: a scrape
 * blocks the bridge, and inside a window it would show in the figures.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import mqtt from 'mqtt';
import { deriveSecret } from '../firmware-sim/credentials.js';
import { expandFleet, fleetFromFlags } from '../firmware-sim/fleet/spec.js';
import { FleetStream } from '../firmware-sim/fleet/stream.js';
import { Fleet } from '../firmware-sim/transport/fleet.js';
import { startBridgeProcess } from '../test/helpers/cli.js';
import { type PostgresServer, startPostgres } from '../test/helpers/postgres.js';
import { tempDir } from '../test/helpers/process.js';
import { type Figure, printTable, summarize, writeResults } from './lib.js';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2)
  args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1]!);
const DEVICES = Number(args.get('devices') ?? 10_000);
const WINDOWS = Number(args.get('windows') ?? 3);
const WINDOW_S = Number(args.get('window-seconds') ?? 20);
const WARMUP_S = Number(args.get('warmup-seconds') ?? 10);
const DB = args.get('db') ?? 'postgres';
const PROFILE = args.get('profile');
/** Extra NODE_OPTIONS for the bridge (e.g. --max-semi-space-size=64, or --import of a preload). */
const BRIDGE_NODE_OPTIONS = args.get('node-options') ?? '';
const CONNECT_RATE = 1_000;
const TAIL_S = 5;
const REFERENCE_ROUNDS = 3;
const REFERENCE_PUBLISHES = 300;
const SEED = 'scale';
const TOKEN = 'scale-bench-admin-token-0123456789';
/** Wall clock with sub-millisecond resolution, for the fleet's send and ack stamps. */
const wallNow = () => performance.timeOrigin + performance.now();

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return Number(line?.split(/\s+/)[1] ?? 0) / 1024;
}

/** CPU seconds (user + system) the process has used. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The kernel's count of connections dropped because a listen queue was full (machine-wide). */
function listenOverflows(): number {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n');
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const names = lines[i]!.split(/\s+/);
    const at = names.indexOf('ListenOverflows');
    if (names[0] === 'TcpExt:' && at > 0) return Number(lines[i + 1]!.split(/\s+/)[at]);
  }
  return Number.NaN;
}

interface Scrape {
  /** Event-loop delay since the previous scrape (prom-client resets it on each), ms. */
  loopP99: number;
  loopMax: number;
  /** Cumulative counts of the WAL commit histogram (append to durable), by bucket bound in ms. */
  walCommit: Map<number, number>;
  /** How long the bridge took to answer: rendering /metrics blocks its event loop too. */
  ms: number;
}

/** One /metrics scrape per phase boundary (at 10k connections a scrape costs the bridge tens of ms). */
async function scrape(httpPort: number): Promise<Scrape> {
  const t0 = performance.now();
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const ms = performance.now() - t0;
  const gauge = (name: string) =>
    Number(text.match(new RegExp(`^faultline_process_${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm'))?.[1]) * 1000;
  const walCommit = new Map<number, number>();
  for (const m of text.matchAll(/^faultline_wal_commit_seconds_bucket\{le="([^"]+)"\} (\S+)$/gm)) {
    walCommit.set(m[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[1]) * 1000, Number(m[2]));
  }
  return {
    loopP99: gauge('nodejs_eventloop_lag_p99_seconds'),
    loopMax: gauge('nodejs_eventloop_lag_max_seconds'),
    walCommit,
    ms,
  };
}

/** The bucket bound under which 99 % of the commits between two scrapes fell. */
function bucketP99(before: Map<number, number>, after: Map<number, number>): number {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Number.POSITIVE_INFINITY) ?? 0) - (before.get(Number.POSITIVE_INFINITY) ?? 0);
  for (const le of bounds) {
    if ((after.get(le) ?? 0) - (before.get(le) ?? 0) >= 0.99 * total) return le;
  }
  return Number.NaN;
}

interface Window {
  latencies: number[];
  rssPeak: number;
  cpuPercent: number;
  genDelayP99: number;
  genDelayMax: number;
}

async function main(): Promise<void> {
  const dir = tempDir('bench-scale');
  let postgres: PostgresServer | null = null;
  if (DB === 'postgres') postgres = await startPostgres();
  else if (DB !== 'pglite') throw new Error(`--db must be postgres or pglite, got ${DB}`);
  const bridge = await startBridgeProcess(dir.path, {
    FAULTLINE_ADMIN_TOKEN: TOKEN,
    ...(postgres ? { FAULTLINE_DATABASE_URL: postgres.url } : {}),
    NODE_OPTIONS: [
      process.env.NODE_OPTIONS ?? '',
      BRIDGE_NODE_OPTIONS,
      PROFILE ? `--import ${join(process.cwd(), 'bench/profile/preload.mjs')}` : '',
    ].join(' '),
    ...(PROFILE ? { FAULTLINE_PROFILE_DIR: PROFILE } : {}),
  });
  const pid = bridge.server.pid;
  /** With --profile: the bridge writes the profile of the phase that ended and starts the next. */
  const cutProfile = () => {
    if (PROFILE) process.kill(pid, 'SIGUSR2');
  };
  const api = `http://127.0.0.1:${bridge.httpPort}/api/v1`;
  // The fleet runs on a little past the last window, so its shutdown (offline statuses, 10k
  // DISCONNECTs) never falls inside one.
  const runSeconds = WARMUP_S + WINDOWS * WINDOW_S + TAIL_S;
  try {
    const flags = fleetFromFlags({ devices: DEVICES, model: 'AC-9000', seed: SEED });
    const now = Date.now();
    const specs = expandFleet(flags, { durationMs: runSeconds * 1000 });
    const csv = ['id,model,firmware,owner_id,owner_locale,region,batch,secret'];
    for (const s of specs) csv.push(`${s.id},AC-9000,1.0.0,,,,,${deriveSecret(SEED, s.id)}`);
    const imported = await fetch(`${api}/devices/import`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'text/csv' },
      body: `${csv.join('\n')}\n`,
    });
    if (!imported.ok) throw new Error(`import failed: ${imported.status} ${await imported.text()}`);

    // Reference: one device alone on the idle bridge, a few rounds of sequential QoS 1 publishes.
    const lone = specs[0]!.id;
    const single = await mqtt.connectAsync(`mqtt://127.0.0.1:${bridge.mqttPort}`, {
      clientId: lone,
      username: lone,
      password: deriveSecret(SEED, lone),
      reconnectPeriod: 0,
    });
    const idleP99: number[] = [];
    const idleP50: number[] = [];
    for (let round = 0; round < REFERENCE_ROUNDS; round++) {
      const lat: number[] = [];
      for (let i = 0; i < REFERENCE_PUBLISHES; i++) {
        const t0 = performance.now();
        await single.publishAsync(
          `devices/${lone}/telemetry`,
          JSON.stringify({
            ts: Date.now(),
            seq: 1_000_000 + round * REFERENCE_PUBLISHES + i,
            metrics: { compressor_temp: 70 },
          }),
          { qos: 1 },
        );
        lat.push(performance.now() - t0);
      }
      lat.sort((a, b) => a - b);
      idleP99.push(percentile(lat, 99));
      idleP50.push(percentile(lat, 50));
    }
    await single.endAsync();
    await scrape(bridge.httpPort);
    const rssIdle = rssMb(pid);
    cutProfile(); // startup, import, reference

    const gen = monitorEventLoopDelay({ resolution: 10 });
    gen.enable();
    let measureFrom = Number.POSITIVE_INFINITY;
    const warmup: number[] = [];
    const windows: Window[] = Array.from({ length: WINDOWS }, () => ({
      latencies: [],
      rssPeak: 0,
      cpuPercent: 0,
      genDelayP99: 0,
      genDelayMax: 0,
    }));
    const fleet = new Fleet({
      brokerUrl: `mqtt://127.0.0.1:${bridge.mqttPort}`,
      source: new FleetStream(specs, { seed: SEED, startMs: now, endMs: now + runSeconds * 1000, qos: 1 }),
      deviceIds: specs.map((s) => s.id),
      secretFor: (id) => deriveSecret(SEED, id),
      startMs: now,
      endMs: now + runSeconds * 1000,
      speed: 1,
      connectRate: CONNECT_RATE,
      wallNow,
      hooks: {
        onAck: (_ev, sent, acked, err) => {
          if (err) return;
          if (sent < measureFrom) {
            warmup.push(acked - sent);
            return;
          }
          windows[Math.floor((sent - measureFrom) / (WINDOW_S * 1000))]?.latencies.push(acked - sent);
        },
      },
    });
    const progress = setInterval(() => {
      const s = fleet.stats;
      process.stderr.write(
        `  ${s.connects} connected, ${s.connectFailures} failed, ${s.acked} acked, ${s.inflight} in flight, bridge RSS ${rssMb(pid).toFixed(0)} MB\n`,
      );
    }, 5_000);
    const overflowsBefore = listenOverflows();
    gen.reset();
    const rampStart = performance.now();
    await fleet.start();
    const rampSeconds = (performance.now() - rampStart) / 1000;
    const rampFailures = fleet.stats.connectFailures;
    const connected = fleet.stats.connects;
    const rampOverflows = listenOverflows() - overflowsBefore;
    cutProfile(); // the connect ramp
    const rampGenDelay = { p99: gen.percentile(99) / 1e6, max: gen.max / 1e6 };
    const rampScrape = await scrape(bridge.httpPort);

    // Warm-up: every device's retained status goes out at clock start, then the first reports.
    // The scrape that opens the windows (it blocks the bridge) comes a second before the first one.
    await new Promise((r) => setTimeout(r, (WARMUP_S - 1) * 1000));
    const before = await scrape(bridge.httpPort);
    await new Promise((r) => setTimeout(r, 1000));
    measureFrom = wallNow();
    cutProfile(); // warm-up
    gen.reset();
    for (const w of windows) {
      const cpu0 = cpuSeconds(pid);
      const t0 = performance.now();
      w.rssPeak = rssMb(pid);
      const sampler = setInterval(() => {
        w.rssPeak = Math.max(w.rssPeak, rssMb(pid));
      }, 500);
      await new Promise((r) => setTimeout(r, WINDOW_S * 1000));
      clearInterval(sampler);
      w.cpuPercent = (100 * (cpuSeconds(pid) - cpu0)) / ((performance.now() - t0) / 1000);
      w.genDelayP99 = gen.percentile(99) / 1e6;
      w.genDelayMax = gen.max / 1e6;
      gen.reset();
      const sorted = [...w.latencies].sort((a, b) => a - b);
      process.stderr.write(
        `  window: ${sorted.length} PUBACKs, p50 ${percentile(sorted, 50).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms, ` +
          `generator loop p99/max ${w.genDelayP99.toFixed(0)}/${w.genDelayMax.toFixed(0)} ms, bridge CPU ${w.cpuPercent.toFixed(0)} %, RSS ${w.rssPeak.toFixed(0)} MB\n`,
      );
    }
    // Over all windows: scraping between them would block the bridge inside the next one.
    const after = await scrape(bridge.httpPort);
    cutProfile(); // the measurement windows
    const checkpointBytes = statSync(join(dir.path, 'pipeline.checkpoint.json')).size;
    const rules = (await (
      await fetch(`${api}/rules`, { headers: { authorization: `Bearer ${TOKEN}` } })
    ).json()) as {
      devices: number;
      stateBytes: number;
    };
    const summary = await fleet.finished;
    clearInterval(progress);
    gen.disable();

    for (const w of windows) w.latencies.sort((a, b) => a - b);
    warmup.sort((a, b) => a - b);
    const over = (f: (w: Window) => number) => summarize(windows.map(f));
    const p99 = over((w) => percentile(w.latencies, 99));
    const rss = over((w) => w.rssPeak);
    const perDevice = rules.devices > 0 ? rules.stateBytes / rules.devices : Number.NaN;
    const one = (v: number) => summarize([v]);
    const backend = DB === 'postgres' ? 'PostgreSQL' : 'PGlite (in the bridge process)';
    const figures: Figure[] = [
      {
        name: `PUBACK p99, ${DEVICES} devices reporting every 10 s`,
        unit: 'ms',
        ...p99,
        reference: { name: 'one device on the idle bridge, p99', ...summarize(idleP99) },
        ratio: p99.value / summarize(idleP99).value,
        target: '<= 20 ms',
        met: p99.value <= 20,
      },
      {
        name: 'PUBACK p50 under load',
        unit: 'ms',
        ...over((w) => percentile(w.latencies, 50)),
        reference: { name: 'one device on the idle bridge, p50', ...summarize(idleP50) },
      },
      { name: 'PUBACKs per window', unit: 'msgs', ...over((w) => w.latencies.length) },
      {
        name: 'devices connected',
        unit: 'devices',
        ...one(connected),
        target: `= ${DEVICES}`,
        met: connected === DEVICES,
      },
      { name: 'connect failures during the ramp', unit: 'devices', ...one(rampFailures) },
      {
        name: `connect ramp (paced ${CONNECT_RATE.toLocaleString('en-US')}/s)`,
        unit: 's',
        ...one(rampSeconds),
        target: `<= ${((1.2 * DEVICES) / CONNECT_RATE).toFixed(0)} s (pacing + 20 %)`,
        met: rampSeconds <= (1.2 * DEVICES) / CONNECT_RATE,
      },
      {
        name: 'listen queue overflows during the ramp (kernel, machine-wide)',
        unit: 'SYNs',
        ...one(rampOverflows),
      },
      { name: 'bridge event-loop delay p99 during the ramp', unit: 'ms', ...one(rampScrape.loopP99) },
      { name: 'load generator event-loop delay p99 during the ramp', unit: 'ms', ...one(rampGenDelay.p99) },
      { name: 'PUBACK p99 during the warm-up (status burst)', unit: 'ms', ...one(percentile(warmup, 99)) },
      {
        name: `bridge RSS, peak per window (${backend})`,
        unit: 'MB',
        ...rss,
        reference: { name: 'devices imported, before the fleet', ...one(rssIdle) },
        ...(DB === 'postgres' ? { target: '<= 600 MB', met: rss.value <= 600 } : {}),
      },
      { name: 'bridge CPU', unit: '%', ...over((w) => w.cpuPercent) },
      {
        name: 'WAL group commit p99, all windows (append to fsync done; histogram bucket bound)',
        unit: 'ms',
        ...one(bucketP99(before.walCommit, after.walCommit)),
      },
      { name: 'bridge event-loop delay p99, all windows', unit: 'ms', ...one(after.loopP99) },
      { name: 'bridge event-loop delay max, all windows', unit: 'ms', ...one(after.loopMax) },
      {
        name: `/metrics scrape time with ${DEVICES} connections (blocks the bridge)`,
        unit: 'ms',
        ...summarize([before.ms, after.ms]),
      },
      { name: 'load generator event-loop delay p99', unit: 'ms', ...over((w) => w.genDelayP99) },
      { name: 'load generator event-loop delay max', unit: 'ms', ...over((w) => w.genDelayMax) },
      { name: 'pipeline checkpoint (dedup + rule state) on disk', unit: 'MB', ...one(checkpointBytes / 1e6) },
      {
        name: 'rule state per device (engine estimate)',
        unit: 'B',
        ...one(perDevice),
        target: '<= 1 KB',
        met: perDevice <= 1024,
      },
      {
        name: 'rule state extrapolated to 100,000 devices',
        unit: 'MB',
        ...one((perDevice * 100_000) / 1e6),
      },
    ];
    if (summary.connectFailures > 0 || summary.failedDevices.length > 0) {
      console.error(
        `connect failures: ${summary.connectFailures}, failed devices: ${summary.failedDevices.length} (first: ${summary.failedDevices[0]?.error})`,
      );
    }
    printTable(
      `Scale (${DEVICES} devices on ${backend}; ${WINDOWS} windows of ${WINDOW_S} s after the ramp and ${WARMUP_S} s warm-up, QoS 1)`,
      figures,
    );
    console.log(`results: ${writeResults(DB === 'postgres' ? 'scale' : 'scale-pglite', figures)}`);
  } finally {
    await bridge.server.stop();
    await postgres?.stop();
    dir.remove();
  }
}

await main();
