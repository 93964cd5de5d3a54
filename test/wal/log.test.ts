import { appendFile, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HEADER_BYTES } from '../../src/wal/format.js';
import { WalClosedError, WalCorruptionError, WriteAheadLog } from '../../src/wal/index.js';
import { until } from '../helpers/net.js';
import { startProcess, tempDir } from '../helpers/process.js';
import { payloadFor } from './fixtures/payload.js';

const repoRoot = resolve(import.meta.dirname, '../..');

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function scratch(): string {
  const dir = tempDir('wal');
  cleanups.push(() => dir.remove());
  return dir.path;
}

/** Opens a log that is closed after the test unless the test closed it already. */
async function openLog(options: Parameters<typeof WriteAheadLog.open>[0]): Promise<WriteAheadLog> {
  const wal = await WriteAheadLog.open(options);
  cleanups.push(() => wal.close());
  return wal;
}

async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.endsWith('.seg')).sort();
}

async function flipByte(path: string, offset: number): Promise<void> {
  const bytes = await readFile(path);
  bytes[offset] = bytes[offset]! ^ 0xff;
  await writeFile(path, bytes);
}

async function readAll(wal: WriteAheadLog, from = 0): Promise<Array<{ lsn: number; payload: Buffer }>> {
  return wal.read(from, 1_000_000);
}

describe('WriteAheadLog: append and read', () => {
  it('reads back what was appended, in order, with LSNs from 1', async () => {
    const wal = await openLog({ dir: scratch() });
    expect(wal.lastLsn).toBe(0);
    const lsns = await Promise.all([1, 2, 3].map((i) => wal.append(payloadFor(i))));
    expect(lsns).toEqual([1, 2, 3]);
    expect(wal.lastLsn).toBe(3);
    const records = await readAll(wal);
    expect(records.map((r) => r.lsn)).toEqual([1, 2, 3]);
    records.forEach((r, i) => {
      expect(r.payload.equals(payloadFor(i + 1))).toBe(true);
    });
    expect(wal.bytes).toBe(records.reduce((sum, r) => sum + HEADER_BYTES + r.payload.length, 0));
  });

  it('continues LSNs after a reopen and keeps the earlier records', async () => {
    const dir = scratch();
    const first = await WriteAheadLog.open({ dir });
    await first.appendMany([payloadFor(1), payloadFor(2)]);
    await first.close();

    const second = await openLog({ dir });
    expect(second.lastLsn).toBe(2);
    expect(await second.append(payloadFor(3))).toBe(3);
    expect((await readAll(second)).map((r) => r.payload.toString('latin1'))).toEqual(
      [1, 2, 3].map((i) => payloadFor(i).toString('latin1')),
    );
  });

  it('reads from any position, across segments, at most maxRecords at a time', async () => {
    const wal = await openLog({ dir: scratch(), segmentBytes: 512 });
    for (let i = 1; i <= 60; i++) await wal.append(payloadFor(i));
    expect(wal.stats().segments).toBeGreaterThan(5);

    const page = await wal.read(17, 10);
    expect(page.map((r) => r.lsn)).toEqual([18, 19, 20, 21, 22, 23, 24, 25, 26, 27]);
    expect(page.every((r) => r.payload.equals(payloadFor(r.lsn)))).toBe(true);

    const seen: number[] = [];
    for (let from = 0; ; ) {
      const batch = await wal.read(from, 7);
      if (batch.length === 0) break;
      seen.push(...batch.map((r) => r.lsn));
      from = batch[batch.length - 1]!.lsn;
    }
    expect(seen).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    expect(await wal.read(60, 5)).toEqual([]);
  });

  it('serves recent records from memory and older ones from disk, the same bytes either way', async () => {
    const dir = scratch();
    const wal = await WriteAheadLog.open({ dir, segmentBytes: 4 * 1024 * 1024 });
    // 10 MB: more than the in-memory tail holds, so the first records must come from the segments.
    const big = (i: number) => Buffer.concat([payloadFor(i), Buffer.alloc(1024, i % 251)]);
    for (let i = 0; i < 10; i++) {
      await wal.appendMany(Array.from({ length: 1_000 }, (_, k) => big(i * 1_000 + k + 1)));
    }
    const live: Array<{ lsn: number; payload: Buffer }> = [];
    for (let from = 0; ; ) {
      const page = await wal.read(from, 777);
      if (page.length === 0) break;
      live.push(...page);
      from = page[page.length - 1]!.lsn;
    }
    expect(live.map((r) => r.lsn)).toEqual(Array.from({ length: 10_000 }, (_, i) => i + 1));
    expect(live.every((r) => r.payload.equals(big(r.lsn)))).toBe(true);
    await wal.close();
    const reopened = await openLog({ dir });
    const fromDisk = await reopened.read(0, 20_000);
    expect(fromDisk.length).toBe(10_000);
    expect(fromDisk.every((r, i) => r.payload.equals(live[i]!.payload))).toBe(true);
  });

  it('finds records deep inside a large segment through the sparse index', async () => {
    const dir = scratch();
    const wal = await WriteAheadLog.open({ dir });
    const payloads = Array.from({ length: 3000 }, (_, i) => payloadFor(i + 1));
    await wal.appendMany(payloads);
    for (const from of [0, 1, 999, 2500, 2999]) {
      const [record] = await wal.read(from, 1);
      expect(record?.lsn).toBe(from + 1);
      expect(record?.payload.equals(payloadFor(from + 1))).toBe(true);
    }
    await wal.close();
    // The index is rebuilt by the scan on open.
    const reopened = await openLog({ dir });
    const [record] = await reopened.read(2222, 1);
    expect(record?.payload.equals(payloadFor(2223))).toBe(true);
  });
});

describe('WriteAheadLog: group commit', () => {
  it('makes 1,000 concurrent appends durable with far fewer fsyncs', async () => {
    const wal = await openLog({ dir: scratch(), groupCommitMs: 2 });
    const lsns = await Promise.all(Array.from({ length: 1000 }, (_, i) => wal.append(payloadFor(i))));
    expect(new Set(lsns).size).toBe(1000);
    expect(Math.min(...lsns)).toBe(1);
    expect(Math.max(...lsns)).toBe(1000);
    const { syncs, appends } = wal.stats();
    expect(appends).toBe(1000);
    expect(syncs).toBeGreaterThan(0);
    expect(syncs).toBeLessThanOrEqual(10);
  });

  it('with groupCommitMs 0 still batches whatever arrives during a sync', async () => {
    const wal = await openLog({ dir: scratch(), groupCommitMs: 0 });
    // 100 writers appending one after another: each sync gathers the writers that finished the previous one.
    await Promise.all(
      Array.from({ length: 100 }, async (_, w) => {
        for (let i = 0; i < 10; i++) await wal.append(payloadFor(w * 10 + i));
      }),
    );
    const { syncs, appends } = wal.stats();
    expect(appends).toBe(1000);
    expect(syncs).toBeLessThan(100);
  });

  it('commits appendMany as one group and resolves with consecutive LSNs', async () => {
    const wal = await openLog({ dir: scratch() });
    await wal.append(payloadFor(0));
    const before = wal.stats().syncs;
    const lsns = await wal.appendMany(Array.from({ length: 500 }, (_, i) => payloadFor(i)));
    expect(lsns).toEqual(Array.from({ length: 500 }, (_, i) => i + 2));
    expect(wal.stats().syncs - before).toBe(1);
    expect(await wal.appendMany([])).toEqual([]);
  });

  it('reports each durable group', async () => {
    const wal = await openLog({ dir: scratch() });
    const groups: Array<{ firstLsn: number; lastLsn: number; records: number }> = [];
    wal.on('commit', ({ firstLsn, lastLsn, records }) => groups.push({ firstLsn, lastLsn, records }));
    await wal.appendMany([payloadFor(1), payloadFor(2)]);
    expect(groups).toEqual([{ firstLsn: 1, lastLsn: 2, records: 2 }]);
  });
});

describe('WriteAheadLog: torn tail', () => {
  async function logWithFive(dir: string): Promise<void> {
    const wal = await WriteAheadLog.open({ dir });
    for (let i = 1; i <= 5; i++) await wal.append(payloadFor(i));
    await wal.close();
  }

  async function expectFourThenSix(dir: string): Promise<void> {
    const wal = await openLog({ dir });
    expect(wal.lastLsn).toBe(4);
    expect(wal.recovery.truncatedBytes).toBeGreaterThan(0);
    expect(await wal.append(payloadFor(66))).toBe(5);
    const records = await readAll(wal);
    expect(records.map((r) => r.lsn)).toEqual([1, 2, 3, 4, 5]);
    expect(records.slice(0, 4).every((r) => r.payload.equals(payloadFor(r.lsn)))).toBe(true);
    expect(records[4]!.payload.equals(payloadFor(66))).toBe(true);
  }

  it('cuts garbage after the last record and keeps every record', async () => {
    const dir = scratch();
    await logWithFive(dir);
    const [segment] = await segmentFiles(dir);
    const intact = (await stat(join(dir, segment!))).size;
    await appendFile(join(dir, segment!), Buffer.from('half a record that never got its fsync'));

    const wal = await openLog({ dir });
    expect(wal.lastLsn).toBe(5);
    expect(wal.recovery.truncatedBytes).toBe(38);
    expect((await stat(join(dir, segment!))).size).toBe(intact);
    expect(await wal.append(payloadFor(6))).toBe(6);
    const records = await readAll(wal);
    expect(records.map((r) => r.lsn)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(records.every((r) => r.payload.equals(payloadFor(r.lsn)))).toBe(true);
  });

  it('drops a last record whose bytes were cut short', async () => {
    const dir = scratch();
    await logWithFive(dir);
    const [segment] = await segmentFiles(dir);
    const path = join(dir, segment!);
    await truncate(path, (await stat(path)).size - 3);
    await expectFourThenSix(dir);
  });

  it('drops a last record cut inside its header', async () => {
    const dir = scratch();
    await logWithFive(dir);
    const [segment] = await segmentFiles(dir);
    const path = join(dir, segment!);
    const lastRecordBytes = HEADER_BYTES + payloadFor(5).length;
    await truncate(path, (await stat(path)).size - lastRecordBytes + 6);
    await expectFourThenSix(dir);
  });

  it('drops a last record whose payload does not match its CRC', async () => {
    const dir = scratch();
    await logWithFive(dir);
    const [segment] = await segmentFiles(dir);
    const path = join(dir, segment!);
    await flipByte(path, (await stat(path)).size - 1);
    await expectFourThenSix(dir);
  });

  it('cuts a tail of never-written (zeroed) blocks, as a power loss leaves', async () => {
    const dir = scratch();
    await logWithFive(dir);
    const [segment] = await segmentFiles(dir);
    await appendFile(join(dir, segment!), Buffer.alloc(4096));
    const wal = await openLog({ dir });
    expect(wal.lastLsn).toBe(5);
    expect(wal.recovery.truncatedBytes).toBe(4096);
    expect(await wal.append(payloadFor(6))).toBe(6);
  });

  it('refuses to open when a sealed segment is damaged, rather than losing acknowledged records', async () => {
    const dir = scratch();
    const wal = await WriteAheadLog.open({ dir, segmentBytes: 1024 });
    for (let i = 1; i <= 20; i++) await wal.append(Buffer.alloc(300, i));
    await wal.close();
    const segments = await segmentFiles(dir);
    expect(segments.length).toBeGreaterThan(2);
    await flipByte(join(dir, segments[0]!), HEADER_BYTES + 2);
    await expect(WriteAheadLog.open({ dir })).rejects.toBeInstanceOf(WalCorruptionError);
  });

  it('refuses to open when a record with intact records behind it is damaged in the newest segment', async () => {
    const dir = scratch();
    await logWithFive(dir);
    const [segment] = await segmentFiles(dir);
    // Inside record 2's payload: records 3 to 5 behind it are intact, so this is not a torn tail.
    await flipByte(join(dir, segment!), HEADER_BYTES + payloadFor(1).length + HEADER_BYTES + 3);
    await expect(WriteAheadLog.open({ dir })).rejects.toThrow(/intact records follow/);
  });

  it('keeps every LSN a killed writer reported durable, with its exact payload', async () => {
    const dir = scratch();
    const child = startProcess(
      process.execPath,
      ['--import', 'tsx', join(repoRoot, 'test/wal/fixtures/crash-writer.ts'), dir],
      { cwd: repoRoot },
    );
    cleanups.push(async () => {
      await child.stop('SIGKILL');
    });
    const reported = (): Array<[number, number]> =>
      child
        .output()
        .split('\n')
        .slice(0, -1) // the last piece may be a line still being written
        .filter((line) => /^\d+ \d+$/.test(line))
        .map((line) => line.split(' ').map(Number) as [number, number]);
    await until('the writer to report 300 durable records', () => reported().length >= 300, 20_000);
    await child.stop('SIGKILL');
    expect(child.child.signalCode, child.output().slice(-2000)).toBe('SIGKILL');

    const durable = reported();
    const wal = await openLog({ dir, segmentBytes: 64 * 1024 });
    const byLsn = new Map((await readAll(wal)).map((r) => [r.lsn, r.payload]));
    expect(byLsn.size).toBe(wal.lastLsn);
    for (const [lsn, i] of durable) {
      expect(byLsn.get(lsn)?.equals(payloadFor(i)), `lsn ${lsn} (record ${i})`).toBe(true);
    }
    const next = await wal.append(payloadFor(1));
    expect(next).toBe(wal.lastLsn);
    expect(next).toBeGreaterThan(Math.max(...durable.map(([lsn]) => lsn)));
  });
});

describe('WriteAheadLog: cursors and segment deletion', () => {
  it('keeps a committed position across a reopen and ignores lower commits', async () => {
    const dir = scratch();
    const wal = await WriteAheadLog.open({ dir });
    await wal.appendMany([1, 2, 3, 4].map(payloadFor));
    const rules = wal.cursor('rules');
    expect(rules.position).toBe(0);
    expect(wal.cursor('rules')).toBe(rules);
    rules.commit(3);
    rules.commit(2);
    expect(rules.position).toBe(3);
    await rules.flush();
    expect(await readFile(join(dir, 'cursors', 'rules'), 'utf8')).toBe('3\n');
    rules.commit(4);
    await wal.close();

    const reopened = await openLog({ dir });
    expect(reopened.cursor('rules').position).toBe(4);
    expect(reopened.stats().cursors).toEqual({ rules: 4 });
  });

  it('persists commits on its own shortly after, without flush or close', async () => {
    const dir = scratch();
    const wal = await openLog({ dir });
    await wal.appendMany([1, 2].map(payloadFor));
    wal.cursor('spool').commit(2);
    await until('the cursor file to hold 2', async () => {
      const text = await readFile(join(dir, 'cursors', 'spool'), 'utf8');
      return text === '2\n';
    });
  });

  it('clamps a commit beyond the durable end, so it cannot skip future records', async () => {
    const wal = await openLog({ dir: scratch() });
    await wal.append(payloadFor(1));
    const cursor = wal.cursor('eager');
    cursor.commit(50);
    expect(cursor.position).toBe(1);
  });

  it('rejects cursor names that are not plain file names', async () => {
    const wal = await openLog({ dir: scratch() });
    expect(() => wal.cursor('../escape')).toThrow(RangeError);
    expect(() => wal.cursor('.hidden')).toThrow(RangeError);
  });

  it('deletes a segment only once every cursor has passed it, never the active one', async () => {
    const dir = scratch();
    // Each 50-byte record (66 on disk) fills a 100-byte segment, so record n lives alone in a segment.
    const wal = await openLog({ dir, segmentBytes: 100 });
    const payload = Buffer.alloc(50, 7);
    for (let i = 0; i < 10; i++) await wal.append(payload);
    expect(await segmentFiles(dir)).toHaveLength(10);

    const a = wal.cursor('a');
    const b = wal.cursor('b');
    a.commit(5);
    await a.flush();
    expect(await segmentFiles(dir)).toHaveLength(10);

    b.commit(3);
    await b.flush();
    expect(await segmentFiles(dir)).toHaveLength(7);
    expect(wal.stats().segments).toBe(7);
    expect((await wal.read(0, 100)).map((r) => r.lsn)).toEqual([4, 5, 6, 7, 8, 9, 10]);
    expect(wal.bytes).toBe(7 * 66);

    // A newcomer cannot see deleted records, so it starts before the oldest retained one.
    const late = wal.cursor('late');
    expect(late.position).toBe(3);
    late.commit(10);
    a.commit(10);
    b.commit(10);
    await late.flush();
    expect(await segmentFiles(dir)).toHaveLength(1);
    expect(wal.lastLsn).toBe(10);
    expect((await wal.read(9, 10)).map((r) => r.lsn)).toEqual([10]);
  });

  it('keeps every segment while no cursor exists', async () => {
    const dir = scratch();
    const wal = await openLog({ dir, segmentBytes: 100 });
    for (let i = 0; i < 6; i++) await wal.append(Buffer.alloc(50, 1));
    await wal.close();
    const reopened = await openLog({ dir, segmentBytes: 100 });
    await reopened.append(Buffer.alloc(50, 1));
    expect(await segmentFiles(dir)).toHaveLength(7);
    expect((await readAll(reopened)).map((r) => r.lsn)).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('after a reopen, continues from the retained segments and starts new cursors there', async () => {
    const dir = scratch();
    const wal = await WriteAheadLog.open({ dir, segmentBytes: 100 });
    for (let i = 0; i < 6; i++) await wal.append(Buffer.alloc(50, i));
    const only = wal.cursor('only');
    only.commit(4);
    await only.flush();
    await wal.close();

    const reopened = await openLog({ dir, segmentBytes: 100 });
    expect(reopened.lastLsn).toBe(6);
    expect(reopened.cursor('fresh').position).toBe(4);
    expect((await readAll(reopened)).map((r) => r.lsn)).toEqual([5, 6]);
    expect(await reopened.append(Buffer.alloc(50, 9))).toBe(7);
  });

  it('stops holding back deletion once a cursor is dropped', async () => {
    const dir = scratch();
    const wal = await openLog({ dir, segmentBytes: 100 });
    for (let i = 0; i < 4; i++) await wal.append(Buffer.alloc(50, i));
    const live = wal.cursor('live');
    wal.cursor('abandoned');
    live.commit(4);
    await live.flush();
    expect(await segmentFiles(dir)).toHaveLength(4);
    await wal.dropCursor('abandoned');
    expect(await segmentFiles(dir)).toHaveLength(1);
    expect(await readdir(join(dir, 'cursors'))).toEqual(['live']);
  });
});

describe('WriteAheadLog: full', () => {
  it('turns full at maxBytes and back once consumers let segments go', async () => {
    const dir = scratch();
    const wal = await openLog({ dir, segmentBytes: 100, maxBytes: 300 });
    const changes: boolean[] = [];
    wal.on('full', (full) => changes.push(full));
    const consumer = wal.cursor('consumer');
    for (let i = 0; i < 4; i++) await wal.append(Buffer.alloc(50, i));
    expect(wal.bytes).toBe(4 * 66);
    expect(wal.full).toBe(false);
    await wal.append(Buffer.alloc(50, 4));
    expect(wal.full).toBe(true);
    // Full is the caller's signal to stop accepting; the log itself still takes records.
    expect(await wal.append(Buffer.alloc(50, 5))).toBe(6);
    expect(changes).toEqual([true]);

    consumer.commit(5);
    await consumer.flush();
    expect(wal.full).toBe(false);
    expect(wal.bytes).toBe(66);
    expect(changes).toEqual([true, false]);
  });
});

describe('WriteAheadLog: close', () => {
  it('makes pending appends durable, then refuses new work', async () => {
    const dir = scratch();
    const wal = await WriteAheadLog.open({ dir, groupCommitMs: 50 });
    const pending = Array.from({ length: 20 }, (_, i) => wal.append(payloadFor(i + 1)));
    await wal.close();
    expect(await Promise.all(pending)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    await expect(wal.append(payloadFor(21))).rejects.toBeInstanceOf(WalClosedError);
    await expect(wal.read(0, 1)).rejects.toBeInstanceOf(WalClosedError);

    const reopened = await openLog({ dir });
    expect(reopened.lastLsn).toBe(20);
  });

  it('refuses a second open of the same directory in one process', async () => {
    const dir = scratch();
    await openLog({ dir });
    await expect(WriteAheadLog.open({ dir })).rejects.toThrow(/already open/);
  });
});
