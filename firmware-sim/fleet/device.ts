/**
 * One simulated device as a pure event generator: model physics, firmware
 * behaviour (seq numbers, fault codes, buffering while offline) and injected
 * faults, in device time. No clocks, sockets or I/O: the same spec and seed give
 * the same events, byte for byte, which is what record/replay and the tests rely on.
 */
import {
  type FaultEvent,
  MAX_BATCH_ITEMS,
  type StatusPayload,
  type TelemetrySample,
  topics,
} from '../../src/contract/index.js';
import { type FaultBehaviour, type FaultDefinition, getFault } from '../faults/catalogue.js';
import { getModel } from '../models/index.js';
import type { DeviceModel, Effects, RaisedCode } from '../models/types.js';
import { Rng } from '../rng.js';
import type { EventSource, PublishEvent, SimEvent } from './events.js';
import type { DeviceSpec } from './spec.js';

export interface GenerateOptions {
  seed: string;
  /** Device time at which the fleet boots, ms since the epoch. */
  startMs: number;
  /** Events at or after this device time are not generated; undefined runs forever. */
  endMs?: number | undefined;
  /** QoS of telemetry and fault messages; status is always QoS 1, retained, like the will it replaces. */
  qos: 0 | 1;
  /**
   * Largest batch payload, bytes. The bridge refuses MQTT packets above its
   * mqtt.limits.maxPacketBytes (256 KiB by default), so an upload after a long
   * outage is split well below that.
   */
  maxBatchBytes?: number;
}

const DEFAULT_MAX_BATCH_BYTES = 200_000;

interface ActiveFault {
  def: FaultDefinition;
  params: Record<string, unknown>;
  startMs: number;
  endMs: number;
  behaviour: FaultBehaviour;
  lastElapsedMs: number;
}

export const MALFORMED_VARIANTS = [
  'truncated',
  'trailing-garbage',
  'nan-literal',
  'ts-seconds',
  'bad-name',
  'negative-seq',
  'unknown-field',
] as const;

export class DeviceSim implements EventSource {
  readonly spec: DeviceSpec;
  private readonly model: DeviceModel;
  private readonly state: unknown;
  private readonly physics: Rng;
  private readonly wire: Rng;
  private readonly faults: ActiveFault[];
  private readonly opts: Required<Omit<GenerateOptions, 'endMs'>> & { endMs: number };
  /** Pending events in (at, insertion) order. */
  private readonly queue: SimEvent[] = [];
  private seq = 0;
  private booted = false;
  private tickIndex = 0;
  private readonly tick0: number;
  private nextTickAt: number;
  private lastTickAt: number;
  private offlineBuffer: { telemetry: TelemetrySample[]; faults: FaultEvent[] } | null = null;
  /** Message-level faults active in the current tick. */
  private readonly wireFaults = { offline: false, silent: false, malformed: 0, duplicates: 0, outOfOrder: 0 };
  private readonly topics: { telemetry: string; faults: string; status: string };

  constructor(spec: DeviceSpec, opts: GenerateOptions) {
    this.spec = spec;
    this.model = getModel(spec.model);
    this.opts = {
      seed: opts.seed,
      startMs: opts.startMs,
      endMs: opts.endMs ?? Number.POSITIVE_INFINITY,
      qos: opts.qos,
      maxBatchBytes: opts.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES,
    };
    this.topics = {
      telemetry: topics.telemetry(spec.id),
      faults: topics.faults(spec.id),
      status: topics.status(spec.id),
    };
    this.physics = Rng.for(opts.seed, spec.id, 'physics');
    this.wire = Rng.for(opts.seed, spec.id, 'wire');
    this.state = this.model.init(this.physics, opts.startMs);
    // Devices boot together but report on their own phase, as a real fleet does.
    this.tick0 =
      opts.startMs + Math.floor(Rng.for(opts.seed, spec.id, 'phase').next() * this.model.reportIntervalMs);
    this.nextTickAt = this.tick0;
    this.lastTickAt = this.tick0 - this.model.reportIntervalMs;
    this.faults = spec.faults.map((f, i) => {
      const def = getFault(f.name);
      const startMs = opts.startMs + f.atMs;
      return {
        def,
        params: f.params,
        startMs,
        endMs: f.forMs === undefined ? Number.POSITIVE_INFINITY : startMs + f.forMs,
        behaviour: def.build(f.params, {
          family: this.model.family,
          rng: Rng.for(opts.seed, spec.id, `fault:${f.name}:${i}`),
        }),
        lastElapsedMs: Number.NEGATIVE_INFINITY,
      };
    });
  }

  peek(): SimEvent | undefined {
    this.fill();
    return this.queue[0];
  }

  shift(): SimEvent | undefined {
    this.fill();
    return this.queue.shift();
  }

  /** Runs ticks until the queue head cannot be preceded by anything a later tick produces. */
  private fill(): void {
    if (!this.booted) this.boot();
    for (;;) {
      const head = this.queue[0];
      if (head !== undefined && head.at < this.nextTickAt) return;
      if (this.nextTickAt >= this.opts.endMs) {
        // Nothing more will be generated: drop what would fall after the end.
        while (this.queue.length > 0 && this.queue[this.queue.length - 1]!.at >= this.opts.endMs)
          this.queue.pop();
        return;
      }
      this.tick(this.nextTickAt);
    }
  }

  private boot(): void {
    this.booted = true;
    const at = this.opts.startMs;
    if (at >= this.opts.endMs) return;
    this.push({ type: 'connect', at, deviceId: this.spec.id });
    this.pushStatus(at, this.clockAt(at));
  }

  private tick(t: number): void {
    const dt = t - this.lastTickAt;
    this.lastTickAt = t;
    this.tickIndex++;
    const interval = this.model.reportIntervalMs;
    // Report jitter within ±1 % of the interval that does not accumulate, like a firmware timer.
    const jitter = Math.round(this.physics.uniform(-0.01, 0.01) * interval);
    this.nextTickAt = Math.max(t + 1, this.tick0 + this.tickIndex * interval + jitter);

    // Hot path (every device, every report): plain loops, no per-tick closures.
    const w = this.wireFaults;
    w.offline = false;
    w.silent = false;
    w.malformed = 0;
    w.duplicates = 0;
    w.outOfOrder = 0;
    const effectList: Effects[] = [];
    const active: ActiveFault[] = [];
    for (const f of this.faults) {
      if (t < f.startMs || t >= f.endMs) continue;
      active.push(f);
      const rate = typeof f.params.rate === 'number' ? f.params.rate : 0;
      switch (f.def.name) {
        case 'offline':
          w.offline = true;
          break;
        case 'silent':
          w.silent = true;
          break;
        case 'malformed':
          w.malformed = Math.max(w.malformed, rate);
          break;
        case 'duplicates':
          w.duplicates = Math.max(w.duplicates, rate);
          break;
        case 'out-of-order':
          w.outOfOrder = Math.max(w.outOfOrder, rate);
          break;
      }
      if (f.behaviour.effects) effectList.push(f.behaviour.effects(t - f.startMs));
    }
    const effects = effectList.length === 0 ? NO_EFFECTS : mergeEffects(effectList);
    const step = this.model.step(this.state, t, dt, effects, this.physics);
    const codes: RaisedCode[] = step.codes;
    for (const f of active) {
      const elapsed = t - f.startMs;
      if (f.behaviour.codes) codes.push(...f.behaviour.codes(Math.max(0, f.lastElapsedMs), elapsed + 1));
      f.lastElapsedMs = elapsed + 1;
      const hover = f.behaviour.hover?.(elapsed, this.physics);
      if (hover && hover.metric in step.metrics)
        step.metrics[hover.metric] = Math.round(hover.value * 10) / 10;
    }

    const ts = this.clockAt(t);
    if (w.offline && !this.offlineBuffer) {
      this.push({ type: 'drop', at: t, deviceId: this.spec.id });
      this.offlineBuffer = { telemetry: [], faults: [] };
    } else if (!w.offline && this.offlineBuffer) {
      this.reconnect(t, ts);
    }

    // A hung reporting task: physics goes on, nothing is measured or sent, seq stands still.
    if (w.silent) return;

    const sample: TelemetrySample = { ts, seq: this.seq++, metrics: step.metrics };
    const events: FaultEvent[] = [];
    for (const c of codes) {
      const e: FaultEvent = { ts, seq: this.seq++, code: c.code };
      if (c.detail !== undefined) e.detail = c.detail;
      events.push(e);
    }

    if (this.offlineBuffer) {
      this.offlineBuffer.telemetry.push(sample);
      this.offlineBuffer.faults.push(...events);
      return;
    }

    this.send(t, this.topics.telemetry, sample, true);
    for (const e of events) this.send(t, this.topics.faults, e, false);
  }

  private send(t: number, topic: string, body: TelemetrySample | FaultEvent, isTelemetry: boolean): void {
    const w = this.wireFaults;
    let payload = JSON.stringify(body);
    const tags: string[] = [];
    if (w.malformed > 0 && this.wire.chance(w.malformed)) {
      const variant = this.wire.pick(MALFORMED_VARIANTS);
      payload = corrupt(body, payload, variant);
      tags.push(`malformed:${variant}`);
    }
    let at = t;
    if (isTelemetry && w.outOfOrder > 0 && this.wire.chance(w.outOfOrder)) {
      // Overtaken by the next report: sent just after it.
      at = this.nextTickAt + 1;
      tags.push('out-of-order');
    }
    this.pushPublish(at, topic, payload, tags);
    if (w.duplicates > 0 && this.wire.chance(w.duplicates)) {
      this.pushPublish(at + Math.round(this.wire.uniform(200, 2000)), topic, payload, [...tags, 'duplicate']);
    }
  }

  /** Back online after an outage: status first, then the buffered samples as batch uploads. */
  private reconnect(t: number, ts: number): void {
    const buffer = this.offlineBuffer!;
    this.offlineBuffer = null;
    this.push({ type: 'connect', at: t, deviceId: this.spec.id });
    this.pushStatus(t, ts);
    for (const chunk of chunkByBytes(buffer.telemetry, this.opts.maxBatchBytes)) {
      this.pushPublish(t, this.topics.telemetry, JSON.stringify({ batch: chunk }), ['batch']);
    }
    for (const chunk of chunkByBytes(buffer.faults, this.opts.maxBatchBytes)) {
      this.pushPublish(t, this.topics.faults, JSON.stringify({ batch: chunk }), ['batch']);
    }
  }

  /** The device's own clock: true time plus any injected skew and drift. */
  private clockAt(t: number): number {
    let skew = 0;
    for (const f of this.faults) {
      if (f.def.name !== 'clock-skew' || t < f.startMs || t >= f.endMs) continue;
      skew += (f.params.offset as number) + ((f.params.driftPpm as number) * (t - f.startMs)) / 1e6;
    }
    return Math.round(t + skew);
  }

  private pushStatus(at: number, ts: number): void {
    const status: StatusPayload = { state: 'online', ts, firmware: this.spec.firmware };
    this.push({
      type: 'publish',
      at,
      deviceId: this.spec.id,
      topic: this.topics.status,
      payload: JSON.stringify(status),
      qos: 1,
      retain: true,
    });
  }

  private pushPublish(at: number, topic: string, payload: string, tags: string[]): void {
    const ev: PublishEvent = {
      type: 'publish',
      at,
      deviceId: this.spec.id,
      topic,
      payload,
      qos: this.opts.qos,
      retain: false,
    };
    if (tags.length > 0) ev.tags = tags;
    this.push(ev);
  }

  private push(ev: SimEvent): void {
    // Stable insert by time; the queue is short, so a scan from the back is cheapest.
    let i = this.queue.length;
    while (i > 0 && this.queue[i - 1]!.at > ev.at) i--;
    this.queue.splice(i, 0, ev);
  }
}

const NO_EFFECTS: Effects = Object.freeze({});

export function mergeEffects(list: Effects[]): Effects {
  const out: Effects = {};
  for (const e of list) {
    if (e.forceRunning) out.forceRunning = true;
    if (e.highDemand) out.highDemand = true;
    if (e.fanStall) out.fanStall = true;
    if (e.sensorFault) out.sensorFault = true;
    if (e.commError) out.commError = true;
    if (e.compressorHeat !== undefined) out.compressorHeat = (out.compressorHeat ?? 0) + e.compressorHeat;
    if (e.batteryHeat !== undefined) out.batteryHeat = (out.batteryHeat ?? 0) + e.batteryHeat;
    if (e.refrigerantCharge !== undefined) {
      out.refrigerantCharge = Math.min(out.refrigerantCharge ?? 1, e.refrigerantCharge);
    }
    if (e.brushJam !== undefined) out.brushJam = Math.max(out.brushJam ?? 0, e.brushJam);
    if (e.wheelStuck !== undefined && out.wheelStuck === undefined) out.wheelStuck = e.wheelStuck;
  }
  return out;
}

/** Splits buffered items into batches under both the contract's item cap and a byte budget. */
export function chunkByBytes<T>(items: T[], maxBytes: number): T[][] {
  const chunks: T[][] = [];
  let current: T[] = [];
  let bytes = 12; // {"batch":[]}
  for (const item of items) {
    const size = JSON.stringify(item).length + 1;
    if (current.length > 0 && (bytes + size > maxBytes || current.length >= MAX_BATCH_ITEMS)) {
      chunks.push(current);
      current = [];
      bytes = 12;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/** The ways real firmware gets payloads wrong; each must be refused by the bridge. */
export function corrupt(
  body: Record<string, unknown>,
  json: string,
  variant: (typeof MALFORMED_VARIANTS)[number],
): string {
  switch (variant) {
    case 'truncated':
      return json.slice(0, Math.max(1, Math.floor(json.length / 2)));
    case 'trailing-garbage':
      return `${json}}}`;
    case 'nan-literal':
      return json.replace(/"ts":-?\d+/, '"ts":NaN');
    case 'ts-seconds':
      return JSON.stringify({ ...body, ts: Math.floor((body.ts as number) / 1000) });
    case 'bad-name':
      if (body.metrics && typeof body.metrics === 'object') {
        return JSON.stringify({ ...body, metrics: { ...(body.metrics as object), 'Bad Name': 1 } });
      }
      return JSON.stringify({ ...body, code: 'E 05!' });
    case 'negative-seq':
      return JSON.stringify({ ...body, seq: -1 });
    case 'unknown-field':
      return JSON.stringify({ ...body, deviceTemp: 1 });
  }
}
