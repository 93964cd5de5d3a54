/**
 * On-disk layout of write-ahead-log segments.
 *
 * A segment is a plain sequence of records, no file header:
 *   crc32 u32le | length u32le | lsn f64le | payload (length bytes)
 * The CRC covers length, LSN and payload, so a torn or zero-filled header is
 * caught as surely as a torn payload. LSNs are doubles because JS numbers are
 * exact to 2^53, far beyond any log's lifetime, and reading a double is cheaper
 * than a BigInt.
 */
import zlib from 'node:zlib';

export const HEADER_BYTES = 16;
export const SEGMENT_SUFFIX = '.seg';
const SEGMENT_NAME = /^(\d{20})\.seg$/;

/** Segment files are named by their first LSN, zero-padded so that a plain sort is LSN order. */
export function segmentName(firstLsn: number): string {
  return `${String(firstLsn).padStart(20, '0')}${SEGMENT_SUFFIX}`;
}

export function parseSegmentName(name: string): number | undefined {
  const match = SEGMENT_NAME.exec(name);
  return match ? Number(match[1]) : undefined;
}

// zlib.crc32 arrived in Node 20.15; engines says >=20, so older 20.x gets a table version (slower, same values).
const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;
let table: Uint32Array | undefined;
function tableCrc32(data: Uint8Array): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

export const crc32: (data: Uint8Array) => number =
  typeof native === 'function' ? (data) => native(data) : tableCrc32;

/** Writes one record at `offset` of `target`; returns the offset after it. */
export function encodeRecord(target: Buffer, offset: number, lsn: number, payload: Uint8Array): number {
  const end = offset + HEADER_BYTES + payload.length;
  target.writeUInt32LE(payload.length, offset + 4);
  target.writeDoubleLE(lsn, offset + 8);
  target.set(payload, offset + HEADER_BYTES);
  target.writeUInt32LE(crc32(target.subarray(offset + 4, end)), offset);
  return end;
}

export type DecodeResult =
  | { kind: 'record'; lsn: number; payloadStart: number; end: number }
  /** Not enough bytes in `source` to tell; `need` is the total record size when the header was readable. */
  | { kind: 'short'; need: number }
  | { kind: 'bad'; reason: string };

/**
 * Decodes the record at `offset` of `source`, whose valid bytes end at `limit`.
 * `expectedLsn` makes a stale record (valid CRC, wrong position) count as bad.
 */
export function decodeRecord(
  source: Buffer,
  offset: number,
  limit: number,
  expectedLsn: number,
): DecodeResult {
  if (limit - offset < HEADER_BYTES) return { kind: 'short', need: HEADER_BYTES };
  const length = source.readUInt32LE(offset + 4);
  const end = offset + HEADER_BYTES + length;
  if (end > limit) return { kind: 'short', need: HEADER_BYTES + length };
  const crc = source.readUInt32LE(offset);
  if (crc32(source.subarray(offset + 4, end)) !== crc) return { kind: 'bad', reason: 'crc mismatch' };
  const lsn = source.readDoubleLE(offset + 8);
  if (lsn !== expectedLsn) return { kind: 'bad', reason: `lsn ${lsn} where ${expectedLsn} was expected` };
  return { kind: 'record', lsn, payloadStart: offset + HEADER_BYTES, end };
}
