/**
 * Write-ahead-log throughput: 1,000 appends of 200 bytes kept in flight (as a
 * busy broker would), against what the disk gives when the same bytes are
 * written in groups of the same size with writeSync + fdatasyncSync and no
 * event loop in the way. Run: npx tsx bench/wal.ts [seconds per case and round]
 */
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { encodeRecord, HEADER_BYTES } from '../src/wal/format.js';
import { WriteAheadLog } from '../src/wal/index.js';
import { type Figure, writeResults } from './lib.js';

const SECONDS = Number(process.argv[2] ?? 0.5);
const ROUNDS = 3;
const IN_FLIGHT = 1000;
const PAYLOAD_BYTES = 200;

interface Row {
  case: string;
  'appends/s': number;
  'fsyncs/s': number;
  'records/group': number;
  'commit ms mean': string;
  'commit ms p99': string;
}

async function walCase(
  label: string,
  groupCommitMs: number,
  fsync: boolean,
  seconds = SECONDS,
): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), 'faultline-bench-wal-'));
  try {
    const wal = await WriteAheadLog.open({ dir, groupCommitMs, fsync });
    const latencies: number[] = [];
    let groups = 0;
    let records = 0;
    wal.on('commit', (info) => {
      latencies.push(info.durableMs);
      groups++;
      records += info.records;
    });
    const payload = Buffer.alloc(PAYLOAD_BYTES, 0x61);
    const started = performance.now();
    const deadline = started + seconds * 1000;
    let appended = 0;
    const worker = async (): Promise<void> => {
      while (performance.now() < deadline) {
        await wal.append(payload);
        appended++;
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    const elapsed = (performance.now() - started) / 1000;
    const syncs = wal.stats().syncs;
    await wal.close();
    latencies.sort((a, b) => a - b);
    const mean = latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length);
    return {
      case: label,
      'appends/s': Math.round(appended / elapsed),
      'fsyncs/s': Math.round(syncs / elapsed),
      'records/group': Math.round(records / Math.max(1, groups)),
      'commit ms mean': mean.toFixed(2),
      'commit ms p99': (latencies[Math.floor(latencies.length * 0.99)] ?? 0).toFixed(2),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The same bytes, the same group size, straight system calls: the ceiling the disk sets. */
function rawCase(groupSize: number): Row {
  const dir = mkdtempSync(join(tmpdir(), 'faultline-bench-raw-'));
  const fd = openSync(join(dir, 'raw.seg'), 'w');
  try {
    const payload = Buffer.alloc(PAYLOAD_BYTES, 0x61);
    const group = Buffer.allocUnsafe(groupSize * (HEADER_BYTES + PAYLOAD_BYTES));
    let lsn = 0;
    let groups = 0;
    const started = performance.now();
    const deadline = started + SECONDS * 1000;
    const latencies: number[] = [];
    while (performance.now() < deadline) {
      const t0 = performance.now();
      let offset = 0;
      for (let i = 0; i < groupSize; i++) offset = encodeRecord(group, offset, ++lsn, payload);
      writeSync(fd, group, 0, offset);
      fdatasyncSync(fd);
      latencies.push(performance.now() - t0);
      groups++;
    }
    const elapsed = (performance.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    const mean = latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length);
    return {
      case: 'reference: writeSync+fdatasyncSync',
      'appends/s': Math.round(lsn / elapsed),
      'fsyncs/s': Math.round(groups / elapsed),
      'records/group': groupSize,
      'commit ms mean': mean.toFixed(2),
      'commit ms p99': (latencies[Math.floor(latencies.length * 0.99)] ?? 0).toFixed(2),
    };
  } finally {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The row with the median appends/s: other work on the machine shows up as outliers, not as the figure. */
function median(samples: Row[]): Row {
  const sorted = [...samples].sort((a, b) => a['appends/s'] - b['appends/s']);
  return sorted[Math.floor(sorted.length / 2)]!;
}

// Unreported warm-up, so that the first case does not also measure JIT compilation.
await walCase('warm-up', 2, true, 0.3);
// Rounds interleave the cases so that a burst of outside load hits all of them alike.
const samples: Row[][] = [[], [], [], []];
for (let round = 0; round < ROUNDS; round++) {
  const target = await walCase('wal, group commit 2 ms', 2, true);
  samples[0]!.push(target);
  samples[1]!.push(rawCase(target['records/group']));
  samples[2]!.push(await walCase('wal, group commit 0 ms', 0, true));
  samples[3]!.push(await walCase('wal, 2 ms, fsync off (CPU ceiling)', 2, false));
}
console.log(
  `${IN_FLIGHT} appends of ${PAYLOAD_BYTES} B in flight; median of ${ROUNDS} rounds of ${SECONDS} s per case; dir ${tmpdir()}`,
);
console.table(samples.map(median));

const rate = (i: number) => samples[i]!.map((r) => r['appends/s']);
const stats = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return { value: sorted[Math.floor(sorted.length / 2)]!, min: sorted[0]!, max: sorted[sorted.length - 1]! };
};
const reference = { name: 'raw writeSync + fdatasyncSync, same groups', ...stats(rate(1)) };
const figures: Figure[] = [
  {
    name: 'durable appends, group commit 2 ms',
    unit: 'appends/s',
    ...stats(rate(0)),
    reference,
    ratio: stats(rate(0)).value / reference.value,
  },
  { name: 'durable appends, group commit 0 ms', unit: 'appends/s', ...stats(rate(2)), reference },
  { name: 'appends, fsync off (CPU ceiling)', unit: 'appends/s', ...stats(rate(3)) },
];
console.log(`results: ${writeResults('wal', figures)}`);
