import { afterEach, describe, expect, it } from 'vitest';
import type { DeadLetterStore } from '../../src/deadletters/store.js';
import { DbSink } from '../../src/ingest/db-sink.js';
import { encodeRecord } from '../../src/ingest/record.js';
import { silentLogger } from '../../src/log/logger.js';
import { Metrics } from '../../src/metrics/registry.js';
import type { DeviceRegistry } from '../../src/registry/devices.js';
import { WriteAheadLog } from '../../src/wal/index.js';
import { until } from '../helpers/net.js';
import { tempDir } from '../helpers/process.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.shift()!();
});

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** A registry whose presence writes finish only when the test says so. */
function slowRegistry() {
  const writes: Array<{ id: string; online: boolean; done: () => void }> = [];
  let released = false;
  const registry = {
    markSeen(id: string, online: boolean): Promise<void> {
      if (released) return Promise.resolve();
      const d = deferred();
      writes.push({ id, online, done: d.resolve });
      return d.promise;
    },
  };
  // Whatever a test leaves pending is written before the sink is stopped (cleanups run in order).
  cleanups.push(() => {
    released = true;
    for (const w of writes) w.done();
  });
  return { registry: registry as unknown as DeviceRegistry, writes };
}

async function setup(devices: DeviceRegistry, deadLetters: Partial<DeadLetterStore> = {}) {
  const dir = tempDir('db-sink');
  const wal = await WriteAheadLog.open({ dir: dir.path, groupCommitMs: 1 });
  const metrics = new Metrics();
  const sink = new DbSink({
    wal,
    devices,
    deadLetters: deadLetters as DeadLetterStore,
    metrics,
    log: silentLogger(),
  });
  cleanups.push(async () => {
    await sink.stop(0);
    await wal.close();
    metrics.close();
    dir.remove();
  });
  return { wal, sink };
}

function status(deviceId: string, state: 'online' | 'offline', at: number): Buffer {
  return encodeRecord({
    kind: 'status',
    deviceId,
    topic: `devices/${deviceId}/status`,
    receivedAt: at,
    reason: '',
    message: '',
    payload: Buffer.from(JSON.stringify({ state })),
  });
}

describe('database sink', () => {
  it('hands all presence updates of a log batch to the registry at once, and moves past them once written', async () => {
    const { registry, writes } = slowRegistry();
    const { wal, sink } = await setup(registry);
    for (let i = 0; i < 50; i++) await wal.append(status(`d-${i}`, 'online', 1_000 + i));
    sink.start();
    // All 50 are asked for before any is written, so the registry can send them as one statement.
    await until('50 presence writes under way', () => writes.length === 50);
    expect(sink.lag).toBe(50);
    for (const w of writes.slice(0, 49)) w.done();
    await Promise.resolve();
    expect(sink.lag).toBe(50); // not past a record whose write has not finished
    writes[49]!.done();
    await until('the cursor past the batch', () => sink.lag === 0);
    expect(writes.map((w) => w.id)).toEqual(Array.from({ length: 50 }, (_, i) => `d-${i}`));
  });

  it('stores a dead letter only after the presence updates logged before it are written', async () => {
    const { registry, writes } = slowRegistry();
    let written = 0;
    const stored: Array<{ topic: string; writtenBefore: number }> = [];
    const { wal, sink } = await setup(registry, {
      add: async (d) => {
        stored.push({ topic: d.topic, writtenBefore: written });
        return 'dl-1';
      },
    });
    await wal.append(status('a', 'online', 1));
    await wal.append(status('b', 'online', 2));
    await wal.append(
      encodeRecord({
        kind: 'deadletter',
        deviceId: 'a',
        topic: 'devices/a/telemetry',
        receivedAt: 3,
        reason: 'malformed_json',
        message: 'not JSON',
        payload: Buffer.from('{'),
      }),
    );
    sink.start();
    await until('2 presence writes under way', () => writes.length === 2);
    expect(stored).toEqual([]);
    for (const w of writes) {
      written++;
      w.done();
    }
    await until('the cursor past the dead letter', () => sink.lag === 0);
    expect(stored).toEqual([{ topic: 'devices/a/telemetry', writtenBefore: 2 }]);
  });
});
