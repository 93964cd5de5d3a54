/**
 * Ingest at QoS 1, end to end: a message is authenticated, validated, committed
 * to the fsynced log (the PUBACK waits for that), deduplicated, evaluated
 * against the shipped rules plus 100 extra rules on the same models and metrics
 * that never fire, and queued for InfluxDB (the sink drains the log into a real
 * influxd while the run goes on).
 *
 * Reference, measured in the same run with the same load: a bare Aedes broker
 * with an in-process consumer. The MQTT clients run in a separate process
 * (bench/load.ts), so the CPU-seconds per million messages are the broker
 * process's own, for both.
 *
 *   npx tsx bench/ingest.ts [--messages 60000] [--devices 20] [--runs 3] [--profile DIR]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { Aedes } from 'aedes';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/load.js';
import { silentLogger } from '../src/log/logger.js';
import { type Influxd, startInfluxd } from '../test/helpers/influxd.js';
import { tempDir } from '../test/helpers/process.js';
import { type Figure, printTable, progress, summarize, writeResults } from './lib.js';
import { type LoadPlan, spawnLoad } from './load.js';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2)
  args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1]!);
const MESSAGES = Number(args.get('messages') ?? 60_000);
const DEVICES = Number(args.get('devices') ?? 20);
const RUNS = Number(args.get('runs') ?? 3);
const PROFILE = args.get('profile');
/** Each device keeps this many QoS 1 messages in flight, like firmware with an outbox. */
const WINDOW = 100;
const EXTRA_RULES = 100;

interface Target {
  url: string;
  received(): number;
  credentials(i: number): { clientId: string; username?: string; password?: string };
  close(): Promise<void>;
}

interface Run {
  perSecond: number;
  cpuPerMillion: number;
}

async function drive(target: Target, label: string): Promise<Run> {
  const perDevice = Math.floor(MESSAGES / DEVICES);
  const total = perDevice * DEVICES;
  const plan: LoadPlan = {
    url: target.url,
    clients: Array.from({ length: DEVICES }, (_, i) => ({
      ...target.credentials(i),
      topic: `devices/bench-${i}/telemetry`,
    })),
    messagesPerClient: perDevice,
    qos: 1,
    window: WINDOW,
  };
  const load = spawnLoad(plan);
  try {
    await load.connected;
    const start0 = target.received();
    let session: Session | null = null;
    if (PROFILE) {
      session = new Session();
      session.connect();
      await session.post('Profiler.enable');
      await session.post('Profiler.start');
    }
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await load.go();
    const deadline = Date.now() + 60_000;
    while (target.received() - start0 < total && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 2));
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    if (session) {
      const { profile } = await session.post('Profiler.stop');
      mkdirSync(PROFILE!, { recursive: true });
      writeFileSync(join(PROFILE!, `${label}.cpuprofile`), JSON.stringify(profile));
      session.disconnect();
    }
    const got = target.received() - start0;
    if (got < total) throw new Error(`${label}: only ${got} of ${total} messages arrived`);
    return {
      perSecond: total / seconds,
      cpuPerMillion: ((cpu.user + cpu.system) / 1e6) * (1_000_000 / total),
    };
  } finally {
    load.kill();
  }
}

async function bareAedes(): Promise<Target> {
  const broker = await Aedes.createBroker();
  let count = 0;
  await new Promise<void>((resolve) =>
    broker.subscribe(
      'devices/+/telemetry',
      (_p, cb) => {
        count++;
        cb();
      },
      resolve,
    ),
  );
  const server: Server = createServer(broker.handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `mqtt://127.0.0.1:${port}`,
    received: () => count,
    credentials: (i) => ({ clientId: `bench-${i}` }),
    close: async () => {
      server.close();
      await new Promise<void>((r) => broker.close(() => r()));
    },
  };
}

/** Rules on the metrics these devices send, with thresholds they never reach: evaluated, never fired. */
function extraRules(dir: string): string {
  const metrics = ['compressor_temp', 'compressor_freq', 'current'];
  const lines = ['apiVersion: faultline/v1', 'rules:'];
  for (let i = 0; i < EXTRA_RULES; i++) {
    const metric = metrics[i % metrics.length];
    lines.push(
      `  - id: extra-${i}`,
      `    title: "extra rule ${i} on {{device.id}}"`,
      '    severity: minor',
      '    scope: { models: "AC-*" }',
      `    when: { threshold: { metric: ${metric}, op: ">", value: ${1_000 + i} } }`,
      `    for: ${1 + (i % 10)}m`,
    );
  }
  const file = join(dir, 'extra.yaml');
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

async function faultline(influxd: Influxd): Promise<Target> {
  const dir = tempDir('bench-ingest');
  const extra = extraRules(dir.path);
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir: join(dir.path, 'data'),
      log: { level: 'silent' },
      mqtt: { host: '127.0.0.1', port: 0, wsPort: null, limits: { messagesPerSecond: 1e9, burst: 1e9 } },
      http: { host: '127.0.0.1', port: 0, adminToken: 'bench-admin-token-0123456789' },
      rules: { paths: ['rules', extra], watch: false },
      influx: { url: influxd.url, database: `bench_${Date.now()}` },
    },
  });
  const app = buildApp(config, { log: silentLogger() });
  const addresses = await app.start();
  const loaded = app.parts.rules.describe().rules.length;
  if (loaded !== 8 + EXTRA_RULES) throw new Error(`expected ${8 + EXTRA_RULES} rules, loaded ${loaded}`);
  let count = 0;
  // Counted after the rule engine's own listener has run for the message (listeners run in order).
  app.bus.on('telemetry.accepted', 'bench', (e) => {
    count += e.samples.length;
  });
  for (let i = 0; i < DEVICES; i++) {
    await app.parts.devices.add({
      id: `bench-${i}`,
      model: 'AC-9000',
      secret: `bench-secret-${i}-0123456789`,
    });
  }
  return {
    url: addresses.mqtt!.replace('localhost', '127.0.0.1'),
    received: () => count,
    credentials: (i) => ({
      clientId: `bench-${i}`,
      username: `bench-${i}`,
      password: `bench-secret-${i}-0123456789`,
    }),
    close: async () => {
      await app.stop();
      dir.remove();
    },
  };
}

async function main(): Promise<void> {
  const influxd = await startInfluxd();
  const fl: Run[] = [];
  const bare: Run[] = [];
  const steps = RUNS * 2;
  let step = 0;
  try {
    for (let run = 0; run < RUNS; run++) {
      // Interleave subject and reference so a noisy neighbour hits both alike.
      const b = await bareAedes();
      bare.push(await drive(b, `bare-${run}`));
      await b.close();
      progress('ingest runs', ++step, steps);
      const f = await faultline(influxd);
      fl.push(await drive(f, `faultline-${run}`));
      await f.close();
      progress('ingest runs', ++step, steps);
    }
  } finally {
    await influxd.stop();
  }
  const rate = summarize(fl.map((r) => r.perSecond));
  const bareRate = summarize(bare.map((r) => r.perSecond));
  const cpu = summarize(fl.map((r) => r.cpuPerMillion));
  const bareCpu = summarize(bare.map((r) => r.cpuPerMillion));
  const figures: Figure[] = [
    {
      name: 'QoS 1 ingest, end to end (log fsync, 108 rules, InfluxDB sink)',
      unit: 'msg/s',
      ...rate,
      reference: { name: 'bare aedes + in-process consumer', ...bareRate },
      ratio: rate.value / bareRate.value,
      target: '>= 40% of bare',
      met: rate.value / bareRate.value >= 0.4,
    },
    {
      name: 'CPU per 1M messages, bridge process',
      unit: 'CPU-s',
      ...cpu,
      reference: { name: 'bare aedes process', ...bareCpu },
      ratio: cpu.value / bareCpu.value,
      target: '<= 20 CPU-s',
      met: cpu.value <= 20,
    },
  ];
  printTable(
    `Ingest (${DEVICES} devices × ${WINDOW} in flight, ${MESSAGES} QoS 1 messages per run, ${RUNS} runs; clients in their own process)`,
    figures,
  );
  console.log(`results: ${writeResults('ingest', figures)}`);
}

await main();
