/**
 * Runs rules over recorded history with a virtual clock: the same engine, fed
 * samples in order and ticked exactly at its own deadlines, so a backtest or a
 * `rules test` case sees what production would have emitted, timers included.
 */
import type { MetricValue } from '../contract/index.js';
import type { LoadedRule } from './compile.js';
import { RuleEngine } from './engine.js';
import type { EngineDevice, RuleEvent, RuleObserver } from './types.js';

export interface ReplayTelemetry {
  deviceId: string;
  ts: number;
  seq?: number;
  metrics: Record<string, MetricValue>;
  /** Server time it arrived; default ts (a device with an exact clock and no delay). */
  receivedAt?: number;
}

export interface ReplayFault {
  deviceId: string;
  ts: number;
  seq?: number;
  code: string;
  detail?: string;
  receivedAt?: number;
}

export type ReplayItem = ReplayTelemetry | ReplayFault;

export interface ReplayOptions {
  /** Keep the clock running (timers fire) until this server time. */
  until?: number;
  /** Server time the clock starts at; default the earliest registration or item. */
  start?: number;
  staleAfterMs?: number;
  lateAfterMs?: number;
  observer?: RuleObserver;
  /** Called with the engine after the run, for inspection. */
  inspect?: (engine: RuleEngine) => void;
}

function isFault(item: ReplayItem): item is ReplayFault {
  return 'code' in item;
}

/**
 * Replays items in the given order. Consecutive items of one device and kind with
 * the same explicit receivedAt arrive as one batch (an offline buffer upload).
 */
export function replayHistory(
  rules: LoadedRule[],
  devices: EngineDevice[],
  samplesInOrder: ReplayItem[],
  opts: ReplayOptions = {},
): RuleEvent[] {
  const events: RuleEvent[] = [];
  const arrival = (i: ReplayItem) => i.receivedAt ?? i.ts;
  const starts = [
    ...devices.map((d) => d.registeredAt).filter((t): t is number => t !== undefined),
    ...samplesInOrder.slice(0, 1).map(arrival),
  ];
  let now = opts.start ?? (starts.length > 0 ? Math.min(...starts) : 0);
  const engine = new RuleEngine({
    rules,
    now: () => now,
    emit: (e) => events.push(e),
    observer: opts.observer,
    staleAfterMs: opts.staleAfterMs,
    lateAfterMs: opts.lateAfterMs,
  });
  const byId = new Map<string, EngineDevice>();
  for (const d of devices) {
    byId.set(d.id, d);
    engine.registerDevice(d);
  }
  const advanceTo = (t: number) => {
    for (let d = engine.nextDeadline(); d !== null && d <= t; d = engine.nextDeadline()) {
      now = Math.max(now, d);
      engine.tick(now);
    }
    now = Math.max(now, t);
    engine.tick(now);
  };
  let seq = 0;
  for (let i = 0; i < samplesInOrder.length; ) {
    const first = samplesInOrder[i] as ReplayItem;
    const fault = isFault(first);
    let j = i + 1;
    if (first.receivedAt !== undefined) {
      while (j < samplesInOrder.length) {
        const next = samplesInOrder[j] as ReplayItem;
        if (
          next.deviceId !== first.deviceId ||
          isFault(next) !== fault ||
          next.receivedAt !== first.receivedAt
        )
          break;
        j++;
      }
    }
    const batch = samplesInOrder.slice(i, j);
    i = j;
    const at = arrival(first);
    advanceTo(at);
    let device = byId.get(first.deviceId);
    if (!device) {
      device = {
        id: first.deviceId,
        model: 'unknown',
        firmware: null,
        region: null,
        batch: null,
        ownerId: null,
        ownerLocale: null,
      };
      byId.set(device.id, device);
    }
    if (fault) {
      engine.ingestFaults(
        device,
        (batch as ReplayFault[]).map((f) => ({
          ts: f.ts,
          seq: f.seq ?? seq++,
          code: f.code,
          detail: f.detail,
        })),
        at,
      );
    } else {
      engine.ingestTelemetry(
        device,
        (batch as ReplayTelemetry[]).map((s) => ({ ts: s.ts, seq: s.seq ?? seq++, metrics: s.metrics })),
        at,
      );
    }
  }
  if (opts.until !== undefined) advanceTo(opts.until);
  opts.inspect?.(engine);
  return events;
}
