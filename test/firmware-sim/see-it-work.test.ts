/**
 * The README's "See it work" sequence, as a newcomer types it: a bridge started
 * with nothing configured (it generates its admin token into the data dir), 100
 * simulated devices provisioned, the owner's app waiting, a run with one
 * overheating unit: one ticket opens and the guide reaches the owner's app.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, until } from '../helpers/net.js';
import { type Server, startProcess, tempDir } from '../helpers/process.js';
import { runSim } from './helpers/run-sim.js';

let server: Server;
let dir: ReturnType<typeof tempDir>;
let env: NodeJS.ProcessEnv;

/** A shell with no Faultline settings: the bridge must generate its own admin token. */
function newcomerEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FAULTLINE_')));
}

beforeAll(async () => {
  dir = tempDir('see-it-work');
  const [mqttPort, httpPort, wsPort] = [await freePort(), await freePort(), await freePort()];
  const ports = {
    FAULTLINE_MQTT_PORT: String(mqttPort),
    FAULTLINE_HTTP_PORT: String(httpPort),
    FAULTLINE_WS_PORT: String(wsPort),
  };
  const dataDir = join(dir.path, '.faultline-data');
  server = startProcess(process.execPath, ['--import', 'tsx', join(process.cwd(), 'src/cli.ts'), 'start'], {
    env: { ...newcomerEnv(), ...ports, FAULTLINE_DATA_DIR: dataDir },
  });
  await until(
    'bridge ready',
    () => server.output().includes('"msg":"ready"') || server.child.exitCode !== null,
    110_000,
  );
  if (server.child.exitCode !== null) throw new Error(`bridge exited:\n${server.output()}`);
  // export FAULTLINE_ADMIN_TOKEN=$(cat .faultline-data/admin-token)
  env = { ...ports, FAULTLINE_ADMIN_TOKEN: readFileSync(join(dataDir, 'admin-token'), 'utf8').trim() };
}, 120_000);
afterAll(async () => {
  await server?.stop();
  dir?.remove();
});

const sim = (args: string[]) => runSim(args, env);

describe('README: See it work', { timeout: 180_000 }, () => {
  it('100 devices, one overheats: one ticket, and the guide reaches the owner app', async () => {
    const fleet = join(process.cwd(), 'firmware-sim/fleets/see-it-work.yaml');
    const creds = join(dir.path, 'sim-creds.json');
    const provisioned = await sim(['provision', '--fleet', fleet, '--out', creds]);
    expect(provisioned.code, provisioned.err).toBe(0);
    expect(provisioned.out).toMatch(
      /provisioned 100 device\(s\) via CSV import: 100 created.*100 owner\(s\) \(100 new/,
    );

    const ownerApp = sim([
      'owner-app',
      '--owner',
      'sim-owner-00001',
      '--credentials',
      creds,
      '--count',
      '1',
      '--timeout',
      '120s',
    ]);
    // Started beside the run, as with `&` in a shell: a guide sent before the app subscribed
    // still arrives, because the app asks for what it missed (a sync receipt) once subscribed.
    const run = await sim(['run', '--fleet', fleet, '--credentials', creds, '--no-progress']);
    expect(run.code, run.out + run.err).toBe(0);
    expect(run.out).toContain('devices   100: connects 100, failed 0');

    const app = await ownerApp;
    expect(app.code, app.err).toBe(0);
    expect(app.out).toMatch(
      /^guide n-\S+: CAUTION "[^"]+" device sim-hot-ac-00001 ticket \d+ \(zh-CN, guide ac-compressor-overheat\)\n$/,
    );

    const res = await fetch(`http://127.0.0.1:${env.FAULTLINE_HTTP_PORT}/api/v1/tickets`, {
      headers: { Authorization: `Bearer ${env.FAULTLINE_ADMIN_TOKEN}` },
    });
    const tickets = ((await res.json()) as { items: Array<{ ruleId: string; device: { id: string } }> })
      .items;
    expect(tickets.map((t) => [t.ruleId, t.device.id])).toEqual([
      ['ac-compressor-overheat', 'sim-hot-ac-00001'],
    ]);
  });
});
