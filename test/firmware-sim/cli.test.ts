/** The command line: a real process stopped by a signal, and record -> replay with remapped ids. */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { lastWill } from '../../src/contract/index.js';
import { until } from '../helpers/net.js';
import { tempDir } from '../helpers/process.js';
import { startBroker, type TestBroker } from './helpers/aedes.js';
import { runSim } from './helpers/run-sim.js';

const CLI = join(process.cwd(), 'firmware-sim/cli.ts');

let broker: TestBroker;
let dir: ReturnType<typeof tempDir>;
beforeEach(async () => {
  broker = await startBroker();
  dir = tempDir('fsim');
});
afterEach(async () => {
  await broker.close();
  dir.remove();
});

const isWill = (payload: string) => payload === lastWill('x').payload;
const fromDevices = (prefix: string) =>
  broker.received.filter((r) => r.clientId?.startsWith(prefix) && !isWill(r.payload));

/** Runs the program in this process, with its own stdout/stderr and signal source. */
async function runInProcess(args: string[], env: NodeJS.ProcessEnv = {}) {
  const { code, out, err } = await runSim(args, env);
  return { code, stdout: out, stderr: err };
}

describe('firmware-sim run (process)', { timeout: 120_000 }, () => {
  it('stops on SIGINT: flushes, prints the summary, exits 0; the broker has everything it sent', async () => {
    broker.ackDelayMs = 2;
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        CLI,
        'run',
        '--devices',
        '8',
        '--model',
        'RV-200',
        '--speed',
        '200',
        '--broker',
        broker.url,
        '--json',
        '--progress-interval',
        '100ms',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    try {
      await until('telemetry flowing', () => fromDevices('dev-').length > 300, 60_000);
      await until('a progress line', () => stderr.includes('progress:'), 30_000);
      child.kill('SIGINT');
      const code = await exited;
      expect(code, stderr).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    const summary = JSON.parse(stdout) as {
      stoppedBy: string;
      sent: { total: number };
      acked: number;
      unacked: number;
      publishErrors: number;
      seed: string;
    };
    expect(summary).toMatchObject({ stoppedBy: 'stop', unacked: 0, publishErrors: 0, seed: '1' });
    expect(summary.acked).toBe(summary.sent.total);
    expect(fromDevices('dev-')).toHaveLength(summary.sent.total);
    expect(stderr).toMatch(/progress: device \+\d\d:\d\d:\d\d \| online 8\/8 \| sent \S+ \(\S+\/s\)/);
    expect(stderr).toContain('SIGINT: stopping');
    await until('all disconnected', () => broker.broker.connectedClients === 0, 30_000);
  });
});

describe('record and replay', { timeout: 120_000 }, () => {
  it('replays a recording with remapped ids: same payloads, same topics under the new ids', async () => {
    const record = join(dir.path, 'run.jsonl');
    const run = await runInProcess([
      'run',
      '--devices',
      '4',
      '--model',
      'AC-9000',
      '--seed',
      'rec',
      '--fault',
      'offline=1,at=3m,for=5m',
      '--fault',
      'malformed=1,rate=0.05',
      '--fault',
      'duplicates=1,rate=0.05',
      '--duration',
      '20m',
      '--speed',
      '2400',
      '--start',
      '2026-03-01T00:00:00Z',
      '--broker',
      broker.url,
      '--record',
      record,
      '--no-progress',
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/finished after/);
    const original = fromDevices('dev-');
    expect(original.length).toBeGreaterThan(400);

    const lines = readFileSync(record, 'utf8').trim().split('\n');
    expect(JSON.parse(lines[0]!)).toMatchObject({
      type: 'header',
      seed: 'rec',
      startMs: Date.parse('2026-03-01T00:00:00Z'),
    });
    expect(lines.slice(1).every((l) => typeof JSON.parse(l).wallOffsetMs === 'number')).toBe(true);

    const replay = await runInProcess([
      'replay',
      record,
      '--remap',
      'dev-(.*)=lab-$1',
      '--speed',
      'max',
      '--broker',
      broker.url,
      '--no-progress',
      '--json',
    ]);
    expect(replay.code, replay.stderr).toBe(0);
    expect(JSON.parse(replay.stdout)).toMatchObject({
      connects: 5,
      drops: 1,
      connectFailures: 0,
      unacked: 0,
    });

    const replayed = fromDevices('lab-');
    const key = (
      r: { topic: string; payload: string; qos: number; retain: boolean },
      from: string,
      to: string,
    ) => [r.topic.replace(`/${from}`, `/${to}`), r.payload, r.qos, r.retain].join(' ');
    // Shutdown statuses are each run's own; everything before them must match, device by device, in order.
    for (const n of ['00001', '00002', '00003', '00004']) {
      const a = original.filter((r) => r.clientId === `dev-ac9000-${n}`).slice(0, -1);
      const b = replayed.filter((r) => r.clientId === `lab-ac9000-${n}`).slice(0, -1);
      expect(b.map((r) => key(r, 'lab-', 'dev-'))).toEqual(a.map((r) => key(r, 'dev-', 'dev-')));
      expect(b.every((r) => r.topic.startsWith(`devices/lab-ac9000-${n}/`))).toBe(true);
    }
    expect(
      broker.received.filter((r) => isWill(r.payload)).map((r) => r.topic.split('/')[1]!.slice(0, 4)),
    ).toEqual(['dev-', 'lab-']);
    // The replay authenticated with secrets derived for the new ids.
    expect(
      broker.connects.filter((c) => c.clientId.startsWith('lab-')).every((c) => c.username === c.clientId),
    ).toBe(true);
  });
});

describe('firmware-sim generate', { timeout: 120_000 }, () => {
  it('writes the same bytes for the same flags and different ones for another seed', async () => {
    const args = (seed: string, out: string) => [
      'generate',
      '--devices',
      '3',
      '--model',
      'RV-200',
      '--seed',
      seed,
      '--fault',
      'brush-jam=1,at=5m',
      '--duration',
      '30m',
      '--start',
      '2026-05-01T08:00:00Z',
      '--out',
      join(dir.path, out),
    ];
    await runInProcess(args('g', 'a.jsonl'));
    await runInProcess(args('g', 'b.jsonl'));
    await runInProcess(args('h', 'c.jsonl'));
    const a = readFileSync(join(dir.path, 'a.jsonl'));
    expect(a.length).toBeGreaterThan(100_000);
    expect(a.equals(readFileSync(join(dir.path, 'b.jsonl')))).toBe(true);
    expect(a.equals(readFileSync(join(dir.path, 'c.jsonl')))).toBe(false);
  });

  it('refuses ambiguous or incomplete input with a message', async () => {
    await expect(runInProcess(['generate', '--duration', '1h'])).rejects.toThrow(
      /--fleet FILE or --devices N/,
    );
    await expect(
      runInProcess([
        'generate',
        '--fleet',
        'firmware-sim/fleets/demo.yaml',
        '--devices',
        '2',
        '--duration',
        '1h',
      ]),
    ).rejects.toThrow(/either --fleet or --devices/);
    await expect(runInProcess(['run', '--devices', '1', '--speed', 'fast'])).rejects.toThrow(/speed must be/);
  });
});
