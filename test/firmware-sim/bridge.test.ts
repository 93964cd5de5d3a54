/**
 * The simulator against the real bridge process: it provisions through the HTTP
 * API, connects with those credentials, and the bridge accepts every well-formed
 * message and refuses exactly the ones the simulator corrupted on purpose.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetSummary } from '../../firmware-sim/transport/fleet.js';
import { freePort, until } from '../helpers/net.js';
import { type Server, startProcess, tempDir } from '../helpers/process.js';
import { runSim } from './helpers/run-sim.js';

interface Bridge {
  server: Server;
  env: NodeJS.ProcessEnv;
  httpPort: number;
}

let bridge: Bridge;
let dir: ReturnType<typeof tempDir>;

/**
 * A `faultline start` process on free ports. Like test/helpers/cli.ts, but with a
 * start-up allowance for a machine busy with other suites (PGlite start-up is slow).
 */
async function startBridge(dataDir: string): Promise<Bridge> {
  const [mqttPort, httpPort, wsPort] = [await freePort(), await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    FAULTLINE_DATA_DIR: dataDir,
    FAULTLINE_MQTT_HOST: '127.0.0.1',
    FAULTLINE_HTTP_HOST: '127.0.0.1',
    FAULTLINE_MQTT_PORT: String(mqttPort),
    FAULTLINE_HTTP_PORT: String(httpPort),
    FAULTLINE_WS_PORT: String(wsPort),
    FAULTLINE_ADMIN_TOKEN: 'firmware-sim-e2e-admin-token',
  };
  const server = startProcess(
    process.execPath,
    ['--import', 'tsx', join(process.cwd(), 'src/cli.ts'), 'start'],
    { env },
  );
  await until(
    'bridge ready',
    () => server.output().includes('"msg":"ready"') || server.child.exitCode !== null,
    110_000,
  );
  if (server.child.exitCode !== null)
    throw new Error(`bridge exited with ${server.child.exitCode}:\n${server.output()}`);
  return { server, env, httpPort };
}

beforeAll(async () => {
  dir = tempDir('fsim-bridge');
  bridge = await startBridge(join(dir.path, 'data'));
}, 120_000);
afterAll(async () => {
  await bridge?.server.stop();
  dir?.remove();
});

const sim = (args: string[]) => runSim(args, bridge.env);

async function metrics(): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${bridge.httpPort}/metrics`)).text();
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(faultline_messages_(?:accepted|rejected)_total\{[^}]*\}) (\S+)$/.exec(line);
    if (m) values.set(m[1]!, Number(m[2]));
  }
  return values;
}

describe('firmware-sim against the bridge', { timeout: 120_000 }, () => {
  it('provisions, runs, and sees only its deliberate corruptions and duplicates refused', async () => {
    const creds = join(dir.path, 'creds.json');
    // Corrupted and duplicated messages on different devices, so each refusal has one possible reason.
    const fleetFile = join(dir.path, 'fleet.yaml');
    writeFileSync(
      fleetFile,
      [
        'seed: e2e',
        'groups:',
        '  - { model: RV-200, count: 3, idPrefix: bad-, faults: { malformed: { rate: 0.03 } } }',
        '  - { model: RV-200, count: 3, idPrefix: dup-, faults: { duplicates: { rate: 0.03 }, offline: { count: 1, at: 5m, for: 8m } } }',
      ].join('\n'),
    );
    const fleet = ['--fleet', fleetFile];
    const provisioned = await sim(['provision', ...fleet, '--out', creds]);
    expect(provisioned.out, provisioned.err).toContain(': 6 created, 0 already registered, 0 failed');

    const run = await sim([
      'run',
      ...fleet,
      '--duration',
      '20m',
      // 40 msg/s per device: inside the bridge's default per-device rate limit.
      '--speed',
      '200',
      '--credentials',
      creds,
      '--no-progress',
      '--json',
    ]);
    expect(run.code).toBe(0);
    const summary = JSON.parse(run.out) as FleetSummary;
    expect(summary).toMatchObject({
      connectFailures: 0,
      publishErrors: 0,
      unacked: 0,
      drops: 1,
      reconnects: 1,
    });
    expect(summary.injected.malformed).toBeGreaterThan(10);
    expect(summary.injected.duplicates).toBeGreaterThan(10);

    const m = await metrics();
    const rejected = (reason: string) => m.get(`faultline_messages_rejected_total{reason="${reason}"}`) ?? 0;
    expect(rejected('malformed_json') + rejected('schema_violation')).toBe(summary.injected.malformed);
    expect(rejected('duplicate')).toBe(summary.injected.duplicates);
    const otherReasons = [...m.entries()].filter(
      ([k, v]) => k.includes('rejected') && v > 0 && !/malformed_json|schema_violation|duplicate/.test(k),
    );
    expect(otherReasons).toEqual([]);
    const accepted = [...m.entries()].filter(([k]) => k.includes('accepted')).reduce((a, [, v]) => a + v, 0);
    expect(accepted).toBeGreaterThanOrEqual(
      summary.sent.total - summary.injected.malformed - summary.injected.duplicates,
    );

    // Every device said goodbye: none is left online in the registry.
    const online = async () => {
      const res = await fetch(`http://127.0.0.1:${bridge.httpPort}/api/v1/stats/devices`, {
        headers: { Authorization: `Bearer ${bridge.env.FAULTLINE_ADMIN_TOKEN}` },
      });
      return ((await res.json()) as { online: number }).online;
    };
    await until('no device online', async () => (await online()) === 0, 15_000);
  });
});
