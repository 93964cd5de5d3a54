/**
 * Points InfluxDB refused for what they are (a 4xx other than auth or a missing
 * database): kept in `<dataDir>/influx-quarantine/<ts>.lp` with a JSON sidecar
 * holding the server's answer, so nothing is lost and nothing blocks the batches
 * behind them. After fixing the cause (for a field type conflict: drop or rename
 * the field), an operator can send a file again with
 *   curl --data-binary @<file>.lp 'http://influx:8086/write?db=faultline&precision=ms'
 * The file is synced before the sink's cursor moves past its points.
 */
import { mkdir, open, rename } from 'node:fs/promises';
import { join } from 'node:path';

export interface QuarantineEntry {
  /** The refused lines as sent: line protocol, newline-separated. */
  body: Buffer;
  points: number;
  status: number;
  message: string;
  target: string;
  /** WAL positions the lines came from, for tracing back to the device messages. */
  lsnRange: [number, number];
}

export class Quarantine {
  private seq = 0;

  constructor(readonly dir: string) {}

  /** Writes the points and their sidecar; resolves with the .lp path once both are durable. */
  async put(entry: QuarantineEntry): Promise<string> {
    await mkdir(this.dir, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const base = `${stamp}-${process.pid}-${String(++this.seq).padStart(4, '0')}`;
    const lp = join(this.dir, `${base}.lp`);
    await writeSynced(lp, Buffer.concat([entry.body, Buffer.from('\n')]));
    const sidecar = {
      status: entry.status,
      message: entry.message,
      points: entry.points,
      target: entry.target,
      lsnRange: entry.lsnRange,
      quarantinedAt: new Date().toISOString(),
      precision: 'ms',
    };
    await writeSynced(join(this.dir, `${base}.json`), `${JSON.stringify(sidecar, null, 2)}\n`);
    const dir = await open(this.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    return lp;
  }
}

async function writeSynced(path: string, content: string | Buffer): Promise<void> {
  const temp = `${path}.tmp`;
  const file = await open(temp, 'w');
  try {
    await file.writeFile(content);
    await file.datasync();
  } finally {
    await file.close();
  }
  await rename(temp, path);
}
