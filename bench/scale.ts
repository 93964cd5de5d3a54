/**
 * Scale: 10,000 simulated devices (one firmware-sim Fleet in this process,
 * connection pacing 1,000/s) connected to a bridge running as its own process,
 * each reporting every 10 s of real time. Reports the PUBACK latency (QoS 1:
 * acknowledged = durable in the bridge's log) p50/p99 under that load, the
 * bridge's RSS, and the rule state the engine holds per device.
 * Reference measured in the same run: PUBACK latency of one idle device on the
 * same bridge before the fleet connects.
 *
 *   npx tsx bench/scale.ts [--devices 10000] [--seconds 60]
 */
import { readFileSync } from 'node:fs';
import mqtt from 'mqtt';
import { deriveSecret } from '../firmware-sim/credentials.js';
import { expandFleet, fleetFromFlags } from '../firmware-sim/fleet/spec.js';
import { FleetStream } from '../firmware-sim/fleet/stream.js';
import { Fleet } from '../firmware-sim/transport/fleet.js';
import { startBridgeProcess } from '../test/helpers/cli.js';
import { tempDir } from '../test/helpers/process.js';
import { type Figure, printTable, summarize, writeResults } from './lib.js';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2)
  args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1]!);
const DEVICES = Number(args.get('devices') ?? 10_000);
const SECONDS = Number(args.get('seconds') ?? 60);
const SEED = 'scale';
const TOKEN = 'scale-bench-admin-token-0123456789';

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return Number(line?.split(/\s+/)[1] ?? 0) / 1024;
}

async function main(): Promise<void> {
  const dir = tempDir('bench-scale');
  const bridge = await startBridgeProcess(dir.path, { FAULTLINE_ADMIN_TOKEN: TOKEN });
  const api = `http://127.0.0.1:${bridge.httpPort}/api/v1`;
  try {
    const flags = fleetFromFlags({ devices: DEVICES, model: 'AC-9000', seed: SEED });
    const now = Date.now();
    const specs = expandFleet(flags, { durationMs: SECONDS * 1000 });
    const csv = ['id,model,firmware,owner_id,owner_locale,region,batch,secret'];
    for (const s of specs) csv.push(`${s.id},AC-9000,1.0.0,,,,,${deriveSecret(SEED, s.id)}`);
    const imported = await fetch(`${api}/devices/import`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'text/csv' },
      body: `${csv.join('\n')}\n`,
    });
    if (!imported.ok) throw new Error(`import failed: ${imported.status} ${await imported.text()}`);

    // Reference: one device alone on the idle bridge.
    const idleLatencies: number[] = [];
    const lone = specs[0]!.id;
    const single = await mqtt.connectAsync(`mqtt://127.0.0.1:${bridge.mqttPort}`, {
      clientId: lone,
      username: lone,
      password: deriveSecret(SEED, lone),
      reconnectPeriod: 0,
    });
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      await single.publishAsync(
        `devices/${lone}/telemetry`,
        JSON.stringify({ ts: Date.now(), seq: 1_000_000 + i, metrics: { compressor_temp: 70 } }),
        { qos: 1 },
      );
      idleLatencies.push(performance.now() - t0);
    }
    await single.endAsync();
    const rssIdle = rssMb(bridge.server.pid);

    const latencies: number[] = [];
    const fleet = new Fleet({
      brokerUrl: `mqtt://127.0.0.1:${bridge.mqttPort}`,
      source: new FleetStream(specs, { seed: SEED, startMs: now, endMs: now + SECONDS * 1000, qos: 1 }),
      deviceIds: specs.map((s) => s.id),
      secretFor: (id) => deriveSecret(SEED, id),
      startMs: now,
      endMs: now + SECONDS * 1000,
      speed: 1,
      connectRate: 1_000,
      hooks: {
        onAck: (_ev, sent, acked, err) => {
          if (!err) latencies.push(acked - sent);
        },
      },
    });
    const t0 = performance.now();
    await fleet.start();
    const connectSeconds = (performance.now() - t0) / 1000;
    let peakRss = rssIdle;
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, rssMb(bridge.server.pid));
    }, 1000);
    const summary = await fleet.finished;
    clearInterval(sampler);
    const rules = (await (
      await fetch(`${api}/rules`, { headers: { authorization: `Bearer ${TOKEN}` } })
    ).json()) as {
      devices: number;
      stateBytes: number;
    };
    latencies.sort((a, b) => a - b);
    idleLatencies.sort((a, b) => a - b);
    const perDevice = rules.devices > 0 ? rules.stateBytes / rules.devices : Number.NaN;
    const one = (v: number) => summarize([v]);
    const figures: Figure[] = [
      {
        name: `PUBACK p99, ${DEVICES} devices reporting every 10 s`,
        unit: 'ms',
        ...one(percentile(latencies, 99)),
        reference: { name: 'one device on the idle bridge, p99', ...one(percentile(idleLatencies, 99)) },
        target: '<= 20 ms',
        met: percentile(latencies, 99) <= 20,
      },
      { name: 'PUBACK p50 under load', unit: 'ms', ...one(percentile(latencies, 50)) },
      { name: `devices connected (paced 1,000/s) in`, unit: 's', ...one(connectSeconds) },
      { name: 'messages acknowledged', unit: 'msgs', ...one(summary.acked) },
      {
        name: 'bridge RSS, peak (PGlite included)',
        unit: 'MB',
        ...one(peakRss),
        reference: { name: 'before the fleet', ...one(rssIdle) },
      },
      {
        name: 'rule state per device (engine estimate)',
        unit: 'B',
        ...one(perDevice),
        target: '<= 1 KB',
        met: perDevice <= 1024,
      },
      { name: 'rule state extrapolated to 100,000 devices', unit: 'MB', ...one((perDevice * 100_000) / 1e6) },
    ];
    if (summary.connectFailures > 0 || summary.failedDevices.length > 0) {
      console.error(
        `connect failures: ${summary.connectFailures}, failed devices: ${summary.failedDevices.length}`,
      );
    }
    printTable(`Scale (${DEVICES} devices, ${SECONDS} s of real time, QoS 1)`, figures);
    console.log(`results: ${writeResults('scale', figures)}`);
  } finally {
    await bridge.server.stop();
    dir.remove();
  }
}

await main();
