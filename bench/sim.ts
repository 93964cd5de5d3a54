/**
 * firmware-sim throughput: how fast the pure layer generates events, and how fast
 * the transport gets QoS 1 messages acknowledged by a bare in-process broker.
 * A load test of the bridge is only honest if the simulator is not the
 * bottleneck, so generation must stay well above the bridge's ingest rates.
 */
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { Aedes } from 'aedes';
import type { BenchReport } from '../firmware-sim/bench.js';
import { deriveSecret } from '../firmware-sim/credentials.js';
import { expandFleet, fleetFromFlags } from '../firmware-sim/fleet/spec.js';
import { FleetStream } from '../firmware-sim/fleet/stream.js';
import { Fleet } from '../firmware-sim/transport/fleet.js';
import { startBridgeProcess } from '../test/helpers/cli.js';
import { tempDir } from '../test/helpers/process.js';
import { type Figure, printTable, summarize, writeResults } from './lib.js';

const START = Date.parse('2026-07-01T00:00:00Z');
const RUNS = 3;
/** ThingsBoard's published single-node figure is 30k points/s; the generator should be several times that. */
const GENERATION_TARGET = 100_000;

function generationRate(model: string, devices: number, hours: number): number {
  const fleet = fleetFromFlags({ devices, model, seed: 'bench', faults: ['duplicates', 'malformed'] });
  const durationMs = hours * 3_600_000;
  const stream = new FleetStream(expandFleet(fleet, { durationMs }), {
    seed: 'bench',
    startMs: START,
    endMs: START + durationMs,
    qos: 1,
  });
  const t0 = performance.now();
  let n = 0;
  while (stream.shift()) n++;
  return n / ((performance.now() - t0) / 1000);
}

async function transportRate(devices: number): Promise<number> {
  const broker = await Aedes.createBroker();
  const server = createServer(broker.handle);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  try {
    const flags = fleetFromFlags({ devices, model: 'RV-200', seed: 'bench' });
    const durationMs = 10 * 60_000;
    const specs = expandFleet(flags, { durationMs });
    const fleet = new Fleet({
      brokerUrl: `mqtt://127.0.0.1:${port}`,
      source: new FleetStream(specs, { seed: 'bench', startMs: START, endMs: START + durationMs, qos: 1 }),
      deviceIds: specs.map((s) => s.id),
      secretFor: (id) => deriveSecret('bench', id),
      startMs: START,
      endMs: START + durationMs,
      speed: Number.POSITIVE_INFINITY,
      connectRate: 1_000,
    });
    await fleet.start();
    const summary = await fleet.finished;
    if (summary.acked !== summary.sent.total)
      throw new Error(`lost acknowledgements: ${JSON.stringify(summary)}`);
    return summary.acked / (summary.wallMs / 1000);
  } finally {
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

const figures: Figure[] = [];
for (const [model, devices, hours] of [
  ['AC-9000', 200, 2],
  ['RV-200', 200, 1],
] as const) {
  const rates = Array.from({ length: RUNS }, () => generationRate(model, devices, hours));
  const s = summarize(rates);
  figures.push({
    name: `generate ${model} x${devices}`,
    unit: 'events/s',
    ...s,
    target: `>= ${GENERATION_TARGET.toLocaleString('en-US')}`,
    met: s.value >= GENERATION_TARGET,
  });
}
const acked: number[] = [];
for (let i = 0; i < RUNS; i++) acked.push(await transportRate(200));
figures.push({ name: 'QoS 1 acked by Aedes, 200 devices', unit: 'msg/s', ...summarize(acked) });

/**
 * `firmware-sim bench`, the simulator's own end-to-end mode, run as the CLI a user runs, against a
 * bridge process: 200 units streaming at 400x device time, 10 of them overheating; each latency is
 * from sending the sample that made the rule fire to the ticket opening / the guide reaching the app.
 */
async function endToEnd(): Promise<BenchReport> {
  const dir = tempDir('bench-sim-e2e');
  const token = 'sim-bench-admin-token-0123456789';
  const bridge = await startBridgeProcess(dir.path, { FAULTLINE_ADMIN_TOKEN: token });
  try {
    const cli = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        'firmware-sim/cli.ts',
        'bench',
        ...['--devices', '200', '--faulty', '10', '--speed', '400', '--duration', '1h'],
        ...[
          '--broker',
          `mqtt://127.0.0.1:${bridge.mqttPort}`,
          '--api',
          `http://127.0.0.1:${bridge.httpPort}`,
        ],
        ...['--ws', `ws://127.0.0.1:${bridge.wsPort}`, '--token', token],
      ],
      { encoding: 'utf8', timeout: 120_000 },
    );
    if (cli.status !== 0)
      throw new Error(`firmware-sim bench exited ${cli.status}: ${cli.stderr}${cli.stdout}`);
    return JSON.parse(cli.stdout) as BenchReport;
  } finally {
    await bridge.server.stop();
    dir.remove();
  }
}

const e2e = await endToEnd();
const one = (v: number | null) => summarize([v ?? Number.NaN]);
figures.push(
  { name: 'firmware-sim bench: ingest, 200 units at 400x', unit: 'msg/s', ...one(e2e.ingestPerSecond) },
  {
    name: `firmware-sim bench: telemetry -> ticket p50 (p99 ${e2e.telemetryToTicketMs.p99} ms, n ${e2e.telemetryToTicketMs.n})`,
    unit: 'ms',
    ...one(e2e.telemetryToTicketMs.p50),
  },
  {
    name: `firmware-sim bench: telemetry -> guide on the app p50 (p99 ${e2e.telemetryToPushMs.p99} ms)`,
    unit: 'ms',
    ...one(e2e.telemetryToPushMs.p50),
  },
);

printTable('firmware-sim throughput', figures);
console.log(`\nwrote ${writeResults('sim', figures)}`);
if (figures.some((f) => f.met === false)) process.exitCode = 1;
