/**
 * The shipped scenarios against a real bridge (in-process, WebSocket listener on):
 * each provisions its fleet and owners, runs its faults, and checks the tickets
 * through the API and the guides through an owner's app.
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BenchReport } from '../../firmware-sim/bench.js';
import type { ScenarioReport } from '../../firmware-sim/scenario.js';
import { ADMIN_TOKEN, startBridge, type TestBridge } from '../helpers/bridge.js';
import { tempDir } from '../helpers/process.js';
import { runSim } from './helpers/run-sim.js';

let bridge: TestBridge;

beforeAll(async () => {
  bridge = await startBridge();
}, 120_000);
afterAll(async () => {
  await bridge?.stop();
});

const sim = (args: string[]) => runSim(args, { FAULTLINE_ADMIN_TOKEN: ADMIN_TOKEN });

const target = () => ['--broker', bridge.mqttUrl, '--api', bridge.addresses.http!, '--ws', bridge.wsUrl];
const SCENARIOS = join(process.cwd(), 'firmware-sim/scenarios');

describe('scenarios against the bridge', { timeout: 240_000 }, () => {
  it.each(readdirSync(SCENARIOS).filter((f) => f.endsWith('.yaml')))('%s passes', async (file) => {
    const res = await sim(['scenario', join(SCENARIOS, file), ...target(), '--json']);
    const report = JSON.parse(res.out) as ScenarioReport;
    expect(report.pass, `${JSON.stringify(report.results, null, 2)}\n${res.err}`).toBe(true);
    expect(res.code).toBe(0);
    expect(report.results.length).toBeGreaterThan(0);
    expect(report.run.connectFailures).toBe(0);
  });

  it('bench: every overheating unit gets a ticket and a guide, and each latency is measured', async () => {
    const args = ['--devices', '20', '--faulty', '3', '--speed', '400', '--duration', '1h'];
    const res = await sim(['bench', ...args, ...target()]);
    expect(res.code, res.out + res.err).toBe(0);
    const report = JSON.parse(res.out) as BenchReport;
    expect(report).toMatchObject({
      devices: 20,
      faulty: 3,
      missing: { tickets: 0, guides: 0 },
      run: { connectFailures: 0, unacked: 0, publishErrors: 0 },
    });
    expect(report.acked).toBe(report.sent);
    for (const p of [report.telemetryToTicketMs, report.telemetryToPushMs]) {
      expect(p.n).toBe(3);
      expect(typeof p.p50).toBe('number');
      expect(typeof p.p99).toBe('number');
    }
    expect(report.brokerAckMs.n).toBe(report.acked);
  });

  it('fails, saying what it saw, when an expectation does not hold', async () => {
    const dir = tempDir('scenario');
    try {
      const file = join(dir.path, 'healthy.yaml');
      writeFileSync(
        file,
        [
          'name: healthy-units-stall',
          'fleet: { seed: sc-neg, idPrefix: sc-neg-, groups: [{ model: AC-9000, count: 2 }] }',
          'duration: 20m',
          'speed: 400',
          'settle: 1s',
          'expect:',
          '  - tickets: { rule: ac-fan-stall, device: sc-neg-ac9000-00001, count: 1 }',
          '  - tickets: { rule: ac-fan-stall, count: 0 }',
        ].join('\n'),
      );
      const res = await sim(['scenario', file, ...target()]);
      expect(res.code).toBe(1);
      expect(res.out).toContain('scenario healthy-units-stall: FAIL');
      expect(res.out).toMatch(
        /FAIL {6}1 ticket\(s\) for ac-fan-stall, on sc-neg-ac9000-00001\n {12}seen: no ticket/,
      );
      expect(res.out).toMatch(/pass {6}0 ticket\(s\) for ac-fan-stall, on the fleet/);
    } finally {
      dir.remove();
    }
  });
});
