/**
 * Replay of a stream file under new device ids: `--remap 'dev-(.*)=lab-$1'` maps
 * every id (topics, the event's device, and the id wherever it appears in a
 * payload), so a recording can be played into the same bridge again without
 * colliding with the devices it came from.
 */
import { DEVICE_ID_PATTERN, parseDeviceTopic } from '../src/contract/index.js';
import type { SimEvent } from './fleet/events.js';
import type { StreamEntry } from './record.js';

export interface Remap {
  pattern: RegExp;
  replacement: string;
  source: string;
}

/**
 * `REGEX=REPLACEMENT`, split at the last "=" (a regex may contain "=", as in
 * lookaheads; an id replacement may not). The regex must match the whole id.
 */
export function parseRemap(text: string): Remap {
  const eq = text.lastIndexOf('=');
  if (eq <= 0)
    throw new Error(`invalid --remap "${text}": expected REGEX=REPLACEMENT, e.g. 'dev-(.*)=lab-$1'`);
  const source = text.slice(0, eq);
  let pattern: RegExp;
  try {
    pattern = new RegExp(`^(?:${source})$`);
  } catch (err) {
    throw new Error(`invalid --remap "${text}": ${(err as Error).message}`);
  }
  return { pattern, replacement: text.slice(eq + 1), source: text };
}

/** The first remap whose regex matches the id wins; ids no remap matches stay as they are. */
export function remapId(id: string, remaps: readonly Remap[]): string {
  for (const r of remaps) {
    if (r.pattern.test(id)) {
      const mapped = id.replace(r.pattern, r.replacement);
      if (!DEVICE_ID_PATTERN.test(mapped))
        throw new Error(`--remap ${r.source} turns ${id} into "${mapped}", not a valid device id`);
      return mapped;
    }
  }
  return id;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Replaces whole-id occurrences only, so dev-1 inside dev-10 is left alone. */
function replaceId(text: string, from: string, to: string): string {
  if (!text.includes(from)) return text;
  const re = new RegExp(`(?<![A-Za-z0-9_.:-])${escapeRegExp(from)}(?![A-Za-z0-9_.:-])`, 'g');
  return text.replace(re, to);
}

export function remapEvent(ev: SimEvent, to: string): SimEvent {
  const from = ev.deviceId;
  if (from === to) return ev;
  if (ev.type !== 'publish') return { ...ev, deviceId: to };
  const parsed = parseDeviceTopic(ev.topic);
  const topic =
    parsed && parsed.deviceId === from ? `devices/${to}/${parsed.kind}` : replaceId(ev.topic, from, to);
  // Ids are made of characters JSON never escapes, so a textual replacement is exact, malformed payloads included.
  return { ...ev, deviceId: to, topic, payload: replaceId(ev.payload, from, to) };
}

export interface ReplayPlan {
  events: SimEvent[];
  deviceIds: string[];
  startMs: number;
  idMap: Map<string, string>;
}

/**
 * Remaps a recording and sets each event's schedule time: its device time, or
 * with timing 'wall' the wall offset at which it was originally sent. The
 * statuses a run publishes at shutdown are left out: the replay's own stop sends them.
 */
export function planReplay(
  entries: readonly StreamEntry[],
  remaps: readonly Remap[],
  timing: 'device' | 'wall',
): ReplayPlan {
  const idMap = new Map<string, string>();
  const events: SimEvent[] = [];
  const first = entries[0]?.ev.at ?? 0;
  let last = Number.NEGATIVE_INFINITY;
  for (const entry of entries) {
    if (entry.tags?.includes('shutdown')) continue;
    const from = entry.ev.deviceId;
    let to = idMap.get(from);
    if (to === undefined) {
      to = remapId(from, remaps);
      idMap.set(from, to);
    }
    let ev = remapEvent(entry.ev, to);
    if (timing === 'wall') {
      if (entry.wallOffsetMs === undefined)
        throw new Error('--timing wall needs a recording made by run --record');
      ev = { ...ev, at: first + entry.wallOffsetMs };
    }
    // The transport releases events in order; a recording's order is kept even if times tie or dip.
    if (ev.at < last) ev = { ...ev, at: last };
    last = ev.at;
    events.push(ev);
  }
  return { events, deviceIds: [...new Set(idMap.values())], startMs: events[0]?.at ?? first, idMap };
}
