/**
 * Ingest throughput: messages/s accepted by Faultline's embedded broker at QoS 0
 * and QoS 1 (authenticated, validated, written to the group-committed,
 * fsynced log, deduplicated and dispatched), beside a bare Aedes broker with an
 * in-process consumer measured in the same run with the same clients.
 * Also CPU-seconds per million messages for the Faultline path.
 *
 *   npx tsx bench/ingest.ts [--messages 20000] [--devices 20] [--runs 3]
 */
import { createServer, type Server } from 'node:net';
import { Aedes } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/load.js';
import { silentLogger } from '../src/log/logger.js';
import { tempDir } from '../test/helpers/process.js';
import { type Figure, printTable, progress, summarize, writeResults } from './lib.js';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2)
  args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1]!);
const MESSAGES = Number(args.get('messages') ?? 20_000);
const DEVICES = Number(args.get('devices') ?? 20);
const RUNS = Number(args.get('runs') ?? 3);
/** Each device keeps this many QoS 1 messages in flight, like firmware with an outbox. */
const WINDOW = 100;

interface Target {
  url: string;
  received(): number;
  credentials(i: number): { clientId: string; username?: string; password?: string };
  close(): Promise<void>;
}

function payload(seq: number): string {
  return JSON.stringify({
    ts: Date.now(),
    seq,
    metrics: { compressor_temp: 70 + (seq % 20), compressor_freq: 55, current: 6.2, mode: 'cool' },
  });
}

async function drive(target: Target, qos: 0 | 1): Promise<{ perSecond: number; cpuPerMillion: number }> {
  const clients: MqttClient[] = [];
  for (let i = 0; i < DEVICES; i++) {
    clients.push(await mqtt.connectAsync(target.url, { ...target.credentials(i), reconnectPeriod: 0 }));
  }
  const perDevice = Math.floor(MESSAGES / DEVICES);
  const total = perDevice * DEVICES;
  const start0 = target.received();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    clients.map(async (client, i) => {
      const topic = `devices/bench-${i}/telemetry`;
      let next = 0;
      const worker = async () => {
        while (next < perDevice) {
          const seq = ++next;
          if (qos === 1) await client.publishAsync(topic, payload(seq), { qos: 1 });
          else {
            client.publish(topic, payload(seq), { qos: 0 });
            // Yield now and then so QoS 0 is paced by the socket, not queued unboundedly in memory.
            if (seq % 200 === 0) await new Promise((r) => setImmediate(r));
          }
        }
      };
      await Promise.all(Array.from({ length: qos === 1 ? WINDOW : 1 }, worker));
    }),
  );
  const deadline = Date.now() + 60_000;
  while (target.received() - start0 < total && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 5));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const got = target.received() - start0;
  await Promise.all(clients.map((c) => c.endAsync()));
  if (got < total) throw new Error(`only ${got} of ${total} messages arrived`);
  return { perSecond: total / seconds, cpuPerMillion: ((cpu.user + cpu.system) / 1e6) * (1_000_000 / total) };
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

async function faultline(): Promise<Target> {
  const dir = tempDir('bench-ingest');
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir: dir.path,
      log: { level: 'silent' },
      mqtt: { host: '127.0.0.1', port: 0, wsPort: null, limits: { messagesPerSecond: 1e9, burst: 1e9 } },
      http: { host: '127.0.0.1', port: 0, adminToken: 'bench-admin-token-0123456789' },
    },
  });
  const app = buildApp(config, { log: silentLogger() });
  const addresses = await app.start();
  let count = 0;
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
  const samples: Record<string, number[]> = { bare0: [], bare1: [], fl0: [], fl1: [], cpu1: [] };
  const steps = RUNS * 4;
  let step = 0;
  for (let run = 0; run < RUNS; run++) {
    // Interleave subject and reference so a noisy neighbour hits both alike.
    for (const qos of [0, 1] as const) {
      const bare = await bareAedes();
      samples[`bare${qos}`]!.push((await drive(bare, qos)).perSecond);
      await bare.close();
      progress('ingest runs', ++step, steps);
      const fl = await faultline();
      const r = await drive(fl, qos);
      samples[`fl${qos}`]!.push(r.perSecond);
      if (qos === 1) samples.cpu1!.push(r.cpuPerMillion);
      await fl.close();
      progress('ingest runs', ++step, steps);
    }
  }
  const figures: Figure[] = [];
  for (const qos of [0, 1] as const) {
    const subject = summarize(samples[`fl${qos}`]!);
    const reference = summarize(samples[`bare${qos}`]!);
    const ratio = subject.value / reference.value;
    figures.push({
      name: `ingest QoS ${qos}`,
      unit: 'msg/s',
      ...subject,
      reference: { name: 'bare aedes + in-process consumer', ...reference },
      ratio,
      ...(qos === 1 ? { target: '>= 40% of bare', met: ratio >= 0.4 } : {}),
    });
  }
  const cpu = summarize(samples.cpu1!);
  figures.push({ name: 'CPU per 1M msgs, QoS 1 (bridge + clients, one process)', unit: 'CPU-s', ...cpu });
  printTable(`Ingest (${DEVICES} devices, ${MESSAGES} messages per run, ${RUNS} runs, fsync on)`, figures);
  console.log(`results: ${writeResults('ingest', figures)}`);
}

await main();
