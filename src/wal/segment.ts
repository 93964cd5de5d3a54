/** Sequential record reading from a segment file, shared by recovery (open) and read(). */
import type { FileHandle } from 'node:fs/promises';
import { decodeRecord } from './format.js';

// Large enough that a consumer batch of a thousand 200-byte records is one read() syscall.
const CHUNK_BYTES = 256 * 1024;
/** A sparse offset index entry every this many bytes bounds how far read() scans to find its first record. */
export const INDEX_STRIDE = 32 * 1024;

export interface Segment {
  firstLsn: number;
  /** firstLsn - 1 while the segment holds no record. */
  lastLsn: number;
  /** Durable bytes; appends beyond this are not yet fsynced and must not be read. */
  size: number;
  path: string;
  /** Sparse index: record idxLsn[i] starts at byte idxOff[i]; entry 0 is always (firstLsn, 0). */
  idxLsn: number[];
  idxOff: number[];
}

export function newSegment(path: string, firstLsn: number): Segment {
  return { firstLsn, lastLsn: firstLsn - 1, size: 0, path, idxLsn: [firstLsn], idxOff: [0] };
}

/** Offset and LSN of the indexed record at or before `lsn`. */
export function seek(segment: Segment, lsn: number): { offset: number; lsn: number } {
  const lsns = segment.idxLsn;
  let lo = 0;
  let hi = lsns.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (lsns[mid]! <= lsn) lo = mid;
    else hi = mid - 1;
  }
  return { offset: segment.idxOff[lo]!, lsn: lsns[lo]! };
}

export type Visit = (
  lsn: number,
  chunk: Buffer,
  payloadStart: number,
  end: number,
  offset: number,
) => boolean;

export interface WalkEnd {
  /** Offset just past the last good record visited. */
  offset: number;
  nextLsn: number;
  /** Why walking stopped before `limit`, when it was not the visitor's choice. */
  bad?: string;
}

/**
 * Visits records from `offset` (where record `lsn` starts) up to byte `limit`.
 * The chunk buffer is reused, so a visitor that keeps a payload must copy it.
 * The visitor returns false to stop after the current record.
 */
export async function walk(
  file: FileHandle,
  offset: number,
  lsn: number,
  limit: number,
  visit: Visit,
): Promise<WalkEnd> {
  let chunk = Buffer.allocUnsafe(0);
  let chunkStart = offset;
  let chunkLength = 0;
  while (offset < limit) {
    const rel = offset - chunkStart;
    const result = decodeRecord(chunk, rel, chunkLength, lsn);
    if (result.kind === 'record') {
      const keepGoing = visit(lsn, chunk, result.payloadStart, result.end, offset);
      offset += result.end - rel;
      lsn++;
      if (!keepGoing) return { offset, nextLsn: lsn };
      continue;
    }
    if (result.kind === 'bad') return { offset, nextLsn: lsn, bad: result.reason };
    if (offset + result.need > limit) {
      return { offset, nextLsn: lsn, bad: 'record runs past the end of the segment' };
    }
    const want = Math.min(limit - offset, Math.max(result.need, CHUNK_BYTES));
    if (chunk.length < want) chunk = Buffer.allocUnsafe(want);
    const got = await readFully(file, chunk, want, offset);
    if (got < result.need) return { offset, nextLsn: lsn, bad: 'file shorter than expected' };
    chunkStart = offset;
    chunkLength = got;
  }
  return { offset, nextLsn: lsn };
}

export async function readFully(
  file: FileHandle,
  target: Buffer,
  length: number,
  position: number,
): Promise<number> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await file.read(target, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}
