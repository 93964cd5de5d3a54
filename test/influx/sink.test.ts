/**
 * The sink against a real write-ahead log and a writer the test controls: how
 * records map to batches and requests, and that the cursor only moves over what
 * was confirmed, whatever the writer does.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DeviceInfo } from '../../src/events/types.js';
import { Lines } from '../../src/influx/lines.js';
import { Quarantine } from '../../src/influx/quarantine.js';
import { InfluxSink, type InfluxSinkOptions } from '../../src/influx/sink.js';
import type { InfluxWriter, WriteResult } from '../../src/influx/writer.js';
import { encodeRecord, type IngestRecord } from '../../src/ingest/record.js';
import { silentLogger } from '../../src/log/logger.js';
import { Metrics } from '../../src/metrics/registry.js';
import { WriteAheadLog } from '../../src/wal/index.js';
import { until } from '../helpers/net.js';
import { tempDir } from '../helpers/process.js';

const T0 = Date.UTC(2025, 7, 1);
let dir: ReturnType<typeof tempDir>;
let wal: WriteAheadLog;
let metrics: Metrics;
let sink: InfluxSink | null = null;

beforeEach(async () => {
  dir = tempDir('sink');
  wal = await WriteAheadLog.open({ dir: `${dir.path}/wal`, fsync: false });
  metrics = new Metrics();
});

afterEach(async () => {
  await sink?.stop(0);
  sink = null;
  await wal.close();
  metrics.close();
  dir.remove();
});

const device = (id: string): DeviceInfo => ({
  id,
  model: 'AC-9000',
  firmware: null,
  ownerId: null,
  ownerLocale: null,
  region: null,
  batch: null,
});

function record(kind: IngestRecord['kind'], body: unknown, deviceId = 'sk-1'): Buffer {
  return encodeRecord({
    kind,
    deviceId,
    topic: `devices/${deviceId}/${kind}`,
    receivedAt: T0,
    reason: kind === 'deadletter' ? 'malformed_json' : '',
    message: '',
    payload: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
  });
}

function samples(from: number, n: number) {
  return Array.from({ length: n }, (_, i) => ({
    ts: T0 + (from + i) * 1000,
    seq: from + i,
    metrics: { t: from + i },
  }));
}

function start(writer: InfluxWriter, options: Partial<InfluxSinkOptions> = {}): InfluxSink {
  sink = new InfluxSink({
    wal,
    writer,
    quarantine: new Quarantine(`${dir.path}/quarantine`),
    deviceInfo: async (id) => device(id),
    metrics,
    log: silentLogger(),
    batchSize: 3,
    flushIntervalMs: 10,
    maxInFlight: 2,
    maxRetryDelayMs: 20,
    writeStatus: true,
    ...options,
  });
  sink.start();
  return sink;
}

/** A writer that records every request and answers 204 unless told otherwise. */
function recordingWriter(
  answer: (lines: readonly string[], n: number) => WriteResult | Promise<WriteResult> = () => ({
    kind: 'ok',
    status: 204,
  }),
) {
  const requests: string[][] = [];
  const writer: InfluxWriter = {
    target: 'test',
    async write(body, points) {
      const lines = body.toString('utf8').split('\n');
      expect(lines).toHaveLength(points);
      requests.push(lines);
      return answer(lines, requests.length);
    },
  };
  return { writer, requests };
}

const timestampOf = (line: string) => Number(line.slice(line.lastIndexOf(' ') + 1));

describe('InfluxDB sink', () => {
  it('splits a large record over batches and confirms it only when its last point is in', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const { writer, requests } = recordingWriter(async (_lines, n) => {
      // The last piece of the record waits: the record is not done before it is.
      if (n === 4) await held;
      return { kind: 'ok', status: 204 };
    });
    const [lsn] = await wal.appendMany([record('telemetry', { batch: samples(1, 10) })]);
    const s = start(writer);
    await until('four requests', () => requests.length === 4);
    expect(requests.map((r) => r.length)).toEqual([3, 3, 3, 1]);
    expect(requests.flat().map(timestampOf)).toEqual(samples(1, 10).map((x) => x.ts));
    expect(s.position).toBeLessThan(lsn!);
    release();
    await until('the record to be confirmed', () => s.position === lsn);
  });

  it('moves over dead letters and leaves out status when told to, without a request', async () => {
    const { writer, requests } = recordingWriter();
    const lsns = await wal.appendMany([
      record('deadletter', '{not json'),
      record('status', { state: 'online' }),
      record('deadletter', 'also not json'),
    ]);
    const s = start(writer, { writeStatus: false });
    await until('the cursor past them', () => s.position === lsns[2]);
    expect(requests).toEqual([]);
  });

  it('sends a batch again when something unexpected throws, and loses nothing', async () => {
    let thrown = 0;
    const { writer, requests } = recordingWriter((_lines, n) => {
      if (n === 2) {
        thrown++;
        throw new Error('a bug in the writer');
      }
      return { kind: 'ok', status: 204 };
    });
    const lsns = await wal.appendMany([
      record('telemetry', { batch: samples(1, 3) }),
      record('telemetry', { batch: samples(4, 3) }),
      record('faults', { ts: T0, seq: 99, code: 'E05' }),
    ]);
    const s = start(writer);
    await until('everything confirmed', () => s.position === lsns[2]);
    expect(thrown).toBe(1);
    const sent = new Set(requests.flat());
    expect(sent.size).toBe(7);
    expect([...sent].filter((l) => l.startsWith('faults,device=sk-1,model=AC-9000 code="E05"'))).toHaveLength(
      1,
    );
  });

  it('stops at once during an outage and keeps its position for the next start', async () => {
    const { writer, requests } = recordingWriter(() => ({
      kind: 'retry',
      reason: 'network',
      status: null,
      message: 'ECONNREFUSED',
    }));
    await wal.appendMany([record('telemetry', { batch: samples(1, 2) })]);
    const s = start(writer);
    await until('a retry', () => requests.length >= 2);
    expect(s.failing).toBe(true);
    await s.stop();
    sink = null;
    expect(s.position).toBe(0);
    expect(wal.stats().cursors.influx).toBe(0);
  });
});

describe('Lines', () => {
  it('keeps the lines as one body, growing as needed, and slices any run of them without a copy', () => {
    const lines = new Lines(8);
    const text = [
      'telemetry,device=a t=1 1',
      'faults,device=a code="E05",detail="華氏\nline" 2',
      'status,device=a state="online" 3',
    ];
    for (const t of text) lines.push(t);
    expect(lines.count).toBe(3);
    expect(lines.body().toString('utf8')).toBe(text.join('\n'));
    expect(lines.body(1, 2).toString('utf8')).toBe(text[1]);
    expect(lines.body(1, 3).toString('utf8')).toBe(`${text[1]}\n${text[2]}`);
    expect(lines.body(2, 2).length).toBe(0);
    expect([0, 1, 2].map((i) => String.fromCharCode(lines.initial(i)))).toEqual(['t', 'f', 's']);
  });
});
