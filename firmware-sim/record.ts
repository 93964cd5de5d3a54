/**
 * Stream files (JSON Lines): what `generate` writes, what `run --record` writes
 * and what `replay` reads. The first line is a header; every other line is one
 * event (see StreamLine).
 */
import { once } from 'node:events';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { fromStreamLine, type SimEvent, toStreamLine } from './fleet/events.js';

export const STREAM_FORMAT_VERSION = 1;

export interface StreamHeader {
  type: 'header';
  version: number;
  tool: 'firmware-sim';
  seed?: string;
  startMs?: number;
  endMs?: number;
  speed?: number | 'max';
  createdAt: string;
  /** Registry fields (no secrets), so a recording can be provisioned under new ids. */
  devices?: Array<{
    id: string;
    model: string;
    firmware: string;
    ownerId: string;
    ownerLocale: string;
    region: string;
    batch: string;
  }>;
}

export class StreamWriter {
  private readonly out: NodeJS.WritableStream;
  private readonly ownsStream: boolean;
  private failed: Error | undefined;

  constructor(
    target: string | NodeJS.WritableStream,
    header: Omit<StreamHeader, 'type' | 'version' | 'tool'>,
  ) {
    this.ownsStream = typeof target === 'string';
    this.out = typeof target === 'string' ? createWriteStream(target) : target;
    this.out.on('error', (err: Error) => {
      this.failed = err;
    });
    const full: StreamHeader = {
      type: 'header',
      version: STREAM_FORMAT_VERSION,
      tool: 'firmware-sim',
      ...header,
    };
    this.out.write(`${JSON.stringify(full)}\n`);
  }

  /** Returns false when the OS buffer is full; callers that produce fast should await drain(). */
  write(ev: SimEvent, wallOffsetMs?: number): boolean {
    if (this.failed) throw this.failed;
    return this.out.write(`${toStreamLine(ev, wallOffsetMs)}\n`);
  }

  async drain(): Promise<void> {
    await once(this.out, 'drain');
  }

  async close(): Promise<void> {
    if (this.failed) throw this.failed;
    if (!this.ownsStream) return;
    const out = this.out as unknown as WriteStream;
    await new Promise<void>((resolve, reject) => {
      out.end((err?: Error | null) => (err ? reject(err) : resolve()));
    });
  }
}

export interface StreamEntry {
  ev: SimEvent;
  wallOffsetMs: number | undefined;
  tags: string[] | undefined;
}

export async function readStreamFile(
  path: string,
): Promise<{ header: StreamHeader | undefined; entries: StreamEntry[] }> {
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Number.POSITIVE_INFINITY });
  let header: StreamHeader | undefined;
  const entries: StreamEntry[] = [];
  let lineNo = 0;
  for await (const line of lines) {
    lineNo++;
    if (line.trim() === '') continue;
    if (lineNo === 1 && line.includes('"type":"header"')) {
      header = JSON.parse(line) as StreamHeader;
      if (header.version !== STREAM_FORMAT_VERSION) {
        throw new Error(
          `${path}: stream format version ${header.version}, this firmware-sim reads ${STREAM_FORMAT_VERSION}`,
        );
      }
      continue;
    }
    let ev: SimEvent;
    try {
      ev = fromStreamLine(line, lineNo);
    } catch (err) {
      throw new Error(`${path}: ${(err as Error).message}`);
    }
    const raw = JSON.parse(line) as { wallOffsetMs?: unknown };
    entries.push({
      ev,
      wallOffsetMs: typeof raw.wallOffsetMs === 'number' ? raw.wallOffsetMs : undefined,
      tags: ev.type === 'publish' ? ev.tags : undefined,
    });
  }
  return { header, entries };
}
