/**
 * Binary encoding of a write-ahead-log record. The device's payload bytes are
 * stored as received (already validated), so accepting a message never
 * re-serialises it; replay parses them again.
 */
import type { RejectReason } from '../contract/index.js';

export const RECORD_KINDS = ['telemetry', 'faults', 'status', 'deadletter'] as const;
export type RecordKind = (typeof RECORD_KINDS)[number];

export interface IngestRecord {
  kind: RecordKind;
  deviceId: string;
  topic: string;
  receivedAt: number;
  /** Set for dead letters only. */
  reason: RejectReason | '';
  message: string;
  payload: Buffer;
}

const KIND_CODE: Record<RecordKind, number> = { telemetry: 1, faults: 2, status: 3, deadletter: 4 };
const CODE_KIND: Record<number, RecordKind> = { 1: 'telemetry', 2: 'faults', 3: 'status', 4: 'deadletter' };

export function encodeRecord(r: IngestRecord): Buffer {
  const id = Buffer.from(r.deviceId, 'utf8');
  const topic = Buffer.from(r.topic, 'utf8');
  const reason = Buffer.from(r.reason, 'utf8');
  const message = Buffer.from(r.message, 'utf8');
  const head = 1 + 8 + 2 + id.length + 2 + topic.length + 1 + reason.length + 2 + message.length;
  const out = Buffer.allocUnsafe(head + r.payload.length);
  let o = out.writeUInt8(KIND_CODE[r.kind], 0);
  o = out.writeDoubleLE(r.receivedAt, o);
  o = out.writeUInt16LE(id.length, o);
  o += id.copy(out, o);
  o = out.writeUInt16LE(topic.length, o);
  o += topic.copy(out, o);
  o = out.writeUInt8(reason.length, o);
  o += reason.copy(out, o);
  o = out.writeUInt16LE(message.length, o);
  o += message.copy(out, o);
  r.payload.copy(out, o);
  return out;
}

export function decodeRecord(buf: Buffer): IngestRecord {
  const kind = CODE_KIND[buf.readUInt8(0)];
  if (!kind) throw new Error(`unknown record kind ${buf.readUInt8(0)}`);
  let o = 1;
  const receivedAt = buf.readDoubleLE(o);
  o += 8;
  const idLen = buf.readUInt16LE(o);
  o += 2;
  const deviceId = buf.toString('utf8', o, o + idLen);
  o += idLen;
  const topicLen = buf.readUInt16LE(o);
  o += 2;
  const topic = buf.toString('utf8', o, o + topicLen);
  o += topicLen;
  const reasonLen = buf.readUInt8(o);
  o += 1;
  const reason = buf.toString('utf8', o, o + reasonLen) as RejectReason | '';
  o += reasonLen;
  const messageLen = buf.readUInt16LE(o);
  o += 2;
  const message = buf.toString('utf8', o, o + messageLen);
  o += messageLen;
  return { kind, deviceId, topic, receivedAt, reason, message, payload: buf.subarray(o) };
}
