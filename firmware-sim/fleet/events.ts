/**
 * What the pure generation layer produces and the transport consumes: a stream of
 * device-time-stamped events. The same shape is written by `generate`, recorded
 * by `run --record` and read by `replay`.
 */

export interface ConnectEvent {
  type: 'connect';
  /** Device time at which it happens, ms since the epoch. */
  at: number;
  deviceId: string;
}

/** Connection lost without a DISCONNECT, so the broker publishes the last will. */
export interface DropEvent {
  type: 'drop';
  at: number;
  deviceId: string;
}

export interface PublishEvent {
  type: 'publish';
  at: number;
  deviceId: string;
  topic: string;
  /** Exactly the bytes to send (as UTF-8); deliberately invalid when tagged malformed. */
  payload: string;
  qos: 0 | 1;
  retain: boolean;
  /** Injected anomalies and other facts a test or scenario may want: duplicate, malformed:<how>, batch... */
  tags?: string[];
}

export type SimEvent = ConnectEvent | DropEvent | PublishEvent;

/** Anything that yields events in non-decreasing `at` order. */
export interface EventSource {
  peek(): SimEvent | undefined;
  shift(): SimEvent | undefined;
}

/** One line of a stream file (generate output, recording, replay input). */
export interface StreamLine {
  type: SimEvent['type'];
  deviceTime: number;
  /** Wall-clock ms since the run started; absent in generated (never sent) streams. */
  wallOffsetMs?: number;
  deviceId: string;
  topic?: string;
  payload?: string;
  qos?: 0 | 1;
  retain?: boolean;
  tags?: string[];
}

/** Fixed key order, so equal streams serialise to equal bytes. */
export function toStreamLine(ev: SimEvent, wallOffsetMs?: number): string {
  const line: StreamLine = {
    type: ev.type,
    deviceTime: ev.at,
    ...(wallOffsetMs !== undefined ? { wallOffsetMs } : {}),
    deviceId: ev.deviceId,
  };
  if (ev.type === 'publish') {
    line.topic = ev.topic;
    line.qos = ev.qos;
    line.retain = ev.retain;
    line.payload = ev.payload;
    if (ev.tags && ev.tags.length > 0) line.tags = ev.tags;
  }
  return JSON.stringify(line);
}

export function fromStreamLine(text: string, lineNo: number): SimEvent {
  let raw: StreamLine;
  try {
    raw = JSON.parse(text) as StreamLine;
  } catch {
    throw new Error(`line ${lineNo}: not JSON`);
  }
  if (typeof raw.deviceTime !== 'number' || typeof raw.deviceId !== 'string') {
    throw new Error(`line ${lineNo}: deviceTime and deviceId are required`);
  }
  if (raw.type === 'connect' || raw.type === 'drop')
    return { type: raw.type, at: raw.deviceTime, deviceId: raw.deviceId };
  if (raw.type === 'publish') {
    if (typeof raw.topic !== 'string' || typeof raw.payload !== 'string') {
      throw new Error(`line ${lineNo}: a publish needs topic and payload`);
    }
    const ev: PublishEvent = {
      type: 'publish',
      at: raw.deviceTime,
      deviceId: raw.deviceId,
      topic: raw.topic,
      payload: raw.payload,
      qos: raw.qos === 0 ? 0 : 1,
      retain: raw.retain === true,
    };
    if (Array.isArray(raw.tags)) ev.tags = raw.tags;
    return ev;
  }
  throw new Error(`line ${lineNo}: unknown type ${String((raw as { type?: unknown }).type)}`);
}
