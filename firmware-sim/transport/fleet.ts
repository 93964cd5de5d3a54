/**
 * Runs an event stream against a broker: one MQTT connection per device, paced
 * connects, events released when the virtual clock reaches their device time,
 * a global cap on unacknowledged messages, and a stop that loses nothing it sent.
 *
 * The stream is any EventSource (generated fleet, recording), so `run`, `replay`
 * and later `scenario`/`bench` share this; hooks let them stamp and observe each message.
 */
import type { IClientOptions } from 'mqtt';
import { parseDeviceTopic, type StatusPayload, topics } from '../../src/contract/index.js';
import type { EventSource, PublishEvent, SimEvent } from '../fleet/events.js';
import { Pacer, VirtualClock } from './clock.js';
import { DeviceLink } from './link.js';

export interface FleetHooks {
  /** A message was handed to MQTT (wall time `wallMs`). */
  onSend?(ev: PublishEvent, wallMs: number): void;
  /** The broker acknowledged it (QoS 1: PUBACK; QoS 0: written), or it failed with `err`. */
  onAck?(ev: PublishEvent, sentWallMs: number, ackWallMs: number, err: Error | undefined): void;
  /** Every event as it is released, before it is acted on (what `--record` writes). */
  onEvent?(ev: SimEvent, wallOffsetMs: number): void;
  onConnect?(deviceId: string): void;
  onConnectFailed?(deviceId: string, err: Error): void;
}

export interface FleetOptions {
  brokerUrl: string;
  source: EventSource;
  /** Devices connected (paced) before the clock starts. */
  deviceIds: readonly string[];
  secretFor(deviceId: string): string;
  /** Device time at which the clock starts. */
  startMs: number;
  /** Device time at which the run ends; undefined: when the stream ends. */
  endMs?: number | undefined;
  /** Device ms per wall ms; Infinity: as fast as acknowledgements allow. */
  speed: number;
  /** Connections per second, for the initial ramp-up and every reconnect. */
  connectRate: number;
  /** Messages handed to MQTT but not yet acknowledged, across the fleet, before the stream waits. */
  maxInflight?: number;
  keepaliveSec?: number;
  /** A device whose connect has not succeeded after this long (retries included) is failed. */
  connectTimeoutMs?: number;
  /** How long one connect attempt waits for its CONNACK before it is retried (default 10 s). */
  connectAttemptMs?: number;
  /** How long a stop waits for outstanding acknowledgements. */
  flushTimeoutMs?: number;
  mqttOptions?: Partial<IClientOptions>;
  hooks?: FleetHooks;
  wallNow?: () => number;
}

export interface FleetStats {
  devices: number;
  online: number;
  connects: number;
  connectFailures: number;
  reconnects: number;
  drops: number;
  lostConnections: number;
  sent: { telemetry: number; faults: number; status: number; total: number };
  acked: number;
  publishErrors: number;
  inflight: number;
  bytes: number;
  /** Released by the stream but not sent: the device's connection had failed. */
  undeliverable: number;
  /** Released but not yet sent when a stop came. */
  unsent: number;
  injected: { malformed: number; duplicates: number; outOfOrder: number; batches: number };
}

export interface FleetSummary extends FleetStats {
  stoppedBy: 'end' | 'stop';
  /** Device time of the first and last released event. */
  deviceTime: { start: number; end: number };
  wallMs: number;
  /** Messages sent but never acknowledged (only when the flush timed out). */
  unacked: number;
  failedDevices: Array<{ id: string; error: string }>;
}

type Phase = 'new' | 'ramping' | 'running' | 'stopping' | 'done';

export class Fleet {
  readonly clock: VirtualClock;
  readonly stats: FleetStats;
  private readonly o: Required<Omit<FleetOptions, 'endMs' | 'hooks' | 'mqttOptions'>> &
    Pick<FleetOptions, 'endMs' | 'hooks' | 'mqttOptions'>;
  private readonly links = new Map<string, DeviceLink>();
  private readonly pacer: Pacer;
  private readonly sentAt = new WeakMap<PublishEvent, number>();
  private phase: Phase = 'new';
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private blocked = false;
  private firstAt: number | undefined;
  private lastAt: number | undefined;
  private drainWaiters: Array<() => void> = [];
  private finishing: Promise<FleetSummary> | undefined;
  private resolveFinished!: (s: FleetSummary) => void;
  /** Resolves with the summary when the run ends by itself or is stopped. */
  readonly finished: Promise<FleetSummary>;

  constructor(options: FleetOptions) {
    this.o = {
      maxInflight: 10_000,
      keepaliveSec: 60,
      connectTimeoutMs: 30_000,
      connectAttemptMs: 10_000,
      flushTimeoutMs: 30_000,
      wallNow: Date.now,
      ...options,
    };
    this.clock = new VirtualClock(this.o.startMs, this.o.speed, this.o.wallNow);
    this.pacer = new Pacer(this.o.connectRate, this.o.wallNow);
    this.stats = {
      devices: this.o.deviceIds.length,
      online: 0,
      connects: 0,
      connectFailures: 0,
      reconnects: 0,
      drops: 0,
      lostConnections: 0,
      sent: { telemetry: 0, faults: 0, status: 0, total: 0 },
      acked: 0,
      publishErrors: 0,
      inflight: 0,
      bytes: 0,
      undeliverable: 0,
      unsent: 0,
      injected: { malformed: 0, duplicates: 0, outOfOrder: 0, batches: 0 },
    };
    this.finished = new Promise((resolve) => {
      this.resolveFinished = resolve;
    });
  }

  get running(): boolean {
    return this.phase === 'running';
  }

  /** Device time of the last released event, for progress. */
  get deviceNow(): number {
    return this.lastAt ?? this.o.startMs;
  }

  /** Connects every device (paced), then starts the clock. Resolves when the stream is flowing. */
  async start(): Promise<void> {
    if (this.phase !== 'new') throw new Error('a fleet starts once');
    this.phase = 'ramping';
    for (const id of this.o.deviceIds) this.link(id).connect();
    await Promise.all([...this.links.values()].map((l) => l.settled()));
    if (this.phase !== 'ramping') return;
    this.phase = 'running';
    this.clock.start();
    this.pump();
  }

  /** Graceful stop: stop releasing events, wait for acknowledgements, disconnect cleanly. */
  stop(): Promise<FleetSummary> {
    return this.finish('stop');
  }

  private link(id: string): DeviceLink {
    let link = this.links.get(id);
    if (!link) {
      link = new DeviceLink(id, this.o.secretFor(id), {
        url: this.o.brokerUrl,
        pacer: this.pacer,
        keepaliveSec: this.o.keepaliveSec,
        connectTimeoutMs: this.o.connectTimeoutMs,
        connectAttemptMs: this.o.connectAttemptMs,
        ...(this.o.mqttOptions ? { mqttOptions: this.o.mqttOptions } : {}),
        onSent: (_l, ev) => this.onSent(ev),
        onAck: (_l, ev, err) => this.onAck(ev, err),
        onConnect: (l, again) => {
          this.stats.connects++;
          this.stats.online++;
          if (again) this.stats.reconnects++;
          this.o.hooks?.onConnect?.(l.id);
        },
        onConnectFailed: (l, err) => {
          this.stats.connectFailures++;
          this.o.hooks?.onConnectFailed?.(l.id, err);
        },
        onLost: () => {
          this.stats.lostConnections++;
        },
      });
      this.links.set(id, link);
    }
    return link;
  }

  private pump = (): void => {
    this.timer = undefined;
    this.immediate = undefined;
    if (this.phase !== 'running') return;
    const now = this.clock.now();
    // Bounded work per turn keeps acknowledgements and signals flowing at high speeds.
    for (let budget = 2_000; budget > 0; budget--) {
      const next = this.o.source.peek();
      if (next === undefined || (this.o.endMs !== undefined && next.at >= this.o.endMs)) {
        this.endWhenClockDone();
        return;
      }
      if (next.at > now) {
        this.timer = setTimeout(this.pump, Math.min(1_000, Math.max(1, this.clock.wallUntil(next.at))));
        return;
      }
      if (this.stats.inflight >= this.o.maxInflight) {
        this.blocked = true;
        return;
      }
      this.o.source.shift();
      this.dispatch(next);
    }
    this.immediate = setImmediate(this.pump);
  };

  /** The stream is exhausted; a run with a known end still lasts until the clock gets there. */
  private endWhenClockDone(): void {
    const end = this.o.endMs;
    const wait = end === undefined ? 0 : this.clock.wallUntil(end);
    if (wait <= 0) {
      void this.finish('end');
      return;
    }
    this.timer = setTimeout(() => void this.finish('end'), Math.min(wait, 2_147_483_647));
  }

  private dispatch(ev: SimEvent): void {
    this.firstAt ??= ev.at;
    this.lastAt = ev.at;
    this.o.hooks?.onEvent?.(ev, this.clock.wallElapsed());
    const link = this.link(ev.deviceId);
    switch (ev.type) {
      case 'connect':
        link.connect();
        break;
      case 'drop':
        if (link.wantsOnline && link.state !== 'failed') {
          this.stats.drops++;
          this.stats.online--;
          link.drop();
        }
        break;
      case 'publish':
        if (link.publish(ev) === 'undeliverable') this.stats.undeliverable++;
        break;
    }
  }

  private onSent(ev: PublishEvent): void {
    const s = this.stats;
    s.inflight++;
    s.sent.total++;
    s.bytes += Buffer.byteLength(ev.payload);
    const kind = parseDeviceTopic(ev.topic)?.kind;
    if (kind === 'telemetry' || kind === 'faults' || kind === 'status') s.sent[kind]++;
    if (ev.tags) {
      for (const tag of ev.tags) {
        if (tag.startsWith('malformed')) s.injected.malformed++;
        else if (tag === 'duplicate') s.injected.duplicates++;
        else if (tag === 'out-of-order') s.injected.outOfOrder++;
        else if (tag === 'batch') s.injected.batches++;
      }
    }
    const wall = this.o.wallNow();
    this.sentAt.set(ev, wall);
    this.o.hooks?.onSend?.(ev, wall);
  }

  private onAck(ev: PublishEvent, err: Error | undefined): void {
    const s = this.stats;
    s.inflight--;
    if (err) s.publishErrors++;
    else s.acked++;
    this.o.hooks?.onAck?.(ev, this.sentAt.get(ev) ?? 0, this.o.wallNow(), err);
    if (s.inflight === 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
    if (this.blocked && s.inflight < this.o.maxInflight * 0.9) {
      this.blocked = false;
      this.immediate ??= setImmediate(this.pump);
    }
  }

  private drained(timeoutMs: number): Promise<boolean> {
    if (this.stats.inflight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.drainWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  private finish(stoppedBy: 'end' | 'stop'): Promise<FleetSummary> {
    this.finishing ??= this.doFinish(stoppedBy);
    return this.finishing;
  }

  private async doFinish(stoppedBy: 'end' | 'stop'): Promise<FleetSummary> {
    const wasRunning = this.phase === 'running';
    this.phase = 'stopping';
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    const links = [...this.links.values()];
    if (stoppedBy === 'stop') {
      for (const l of links) this.stats.unsent += l.discardBacklog();
    } else {
      // A natural end sends everything released, including what waited on a reconnect.
      await Promise.all(links.map((l) => l.settled()));
    }
    await this.drained(this.o.flushTimeoutMs);
    const deviceNow = Math.round(
      wasRunning && Number.isFinite(this.clock.now())
        ? Math.min(this.clock.now(), this.o.endMs ?? Infinity)
        : this.deviceNow,
    );
    // Closing in slices keeps a large fleet from opening thousands of DISCONNECT handshakes at once.
    for (let i = 0; i < links.length; i += 500) {
      await Promise.all(links.slice(i, i + 500).map((l) => l.close(this.offlineStatus(l.id, deviceNow))));
    }
    await this.drained(this.o.flushTimeoutMs);
    this.stats.online = 0;
    this.phase = 'done';
    const summary: FleetSummary = {
      ...structuredClone(this.stats),
      stoppedBy,
      deviceTime: { start: this.firstAt ?? this.o.startMs, end: this.lastAt ?? this.o.startMs },
      wallMs: this.clock.wallElapsed(),
      unacked: this.stats.inflight,
      failedDevices: links
        .filter((l) => l.state === 'failed')
        .map((l) => ({ id: l.id, error: l.lastError?.message ?? 'unknown' })),
    };
    this.resolveFinished(summary);
    return summary;
  }

  /** A device switched off cleanly says so, since its DISCONNECT means the broker drops the will. */
  private offlineStatus(deviceId: string, ts: number): PublishEvent {
    const payload: StatusPayload = { state: 'offline', ts, reason: 'simulator stopped' };
    return {
      type: 'publish',
      at: ts,
      deviceId,
      topic: topics.status(deviceId),
      payload: JSON.stringify(payload),
      qos: 1,
      retain: true,
      tags: ['shutdown'],
    };
  }
}
