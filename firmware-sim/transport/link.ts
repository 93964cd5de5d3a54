/**
 * One device's MQTT connection. Connect, drop and close are serialised per device
 * so a stream's "drop, connect, status, batch" happens in that order on the wire;
 * publishes take a fast path when nothing is pending.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { lastWill } from '../../src/contract/index.js';
import type { PublishEvent } from '../fleet/events.js';
import type { Pacer } from './clock.js';

export type LinkState = 'idle' | 'connecting' | 'online' | 'down' | 'failed' | 'closed';

export interface LinkEnv {
  url: string;
  pacer: Pacer;
  keepaliveSec: number;
  /** How long a connect may take in all, retries included, before the link counts as failed. */
  connectTimeoutMs: number;
  /**
   * How long one attempt waits for its CONNACK before MQTT.js drops it and tries again. A handshake
   * lost to a full listen queue otherwise rides TCP's retransmission backoff (1, 3, 7, 15 s...)
   * until the whole connect timeout runs out.
   */
  connectAttemptMs: number;
  mqttOptions?: Partial<IClientOptions>;
  onSent(link: DeviceLink, ev: PublishEvent): void;
  onAck(link: DeviceLink, ev: PublishEvent, err: Error | undefined): void;
  /** `again`: the device had been connected before (a reconnect after a drop). */
  onConnect(link: DeviceLink, again: boolean): void;
  onConnectFailed(link: DeviceLink, err: Error): void;
  /** The broker or network closed a live connection; MQTT.js reconnects by itself. */
  onLost(link: DeviceLink): void;
}

export class DeviceLink {
  state: LinkState = 'idle';
  inflight = 0;
  everConnected = false;
  lastError: Error | undefined;
  private client: MqttClient | undefined;
  private ops: Promise<void> = Promise.resolve();
  private pendingOps = 0;
  private backlog: PublishEvent[] = [];
  private drainWaiters: Array<() => void> = [];
  private closing = false;
  private wantOnline = false;
  private abortConnect: (() => void) | undefined;

  constructor(
    readonly id: string,
    private readonly secret: string,
    private readonly env: LinkEnv,
  ) {}

  get queued(): number {
    return this.backlog.length;
  }

  /**
   * Whether the device means to be connected once queued work is done. The stream
   * may say "drop, connect" faster than the drop happens, so this, not `state`,
   * decides whether a connect is news.
   */
  get wantsOnline(): boolean {
    return this.wantOnline;
  }

  /** Connects unless already connected or about to be; a failed link stays failed. */
  connect(): void {
    if (this.wantOnline || this.state === 'failed' || this.closing) return;
    this.wantOnline = true;
    if (this.state === 'idle' || this.state === 'down') this.state = 'connecting';
    this.enqueue(() => this.doConnect());
  }

  drop(): void {
    this.wantOnline = false;
    this.enqueue(() => this.doDrop());
  }

  publish(ev: PublishEvent): 'sent' | 'queued' | 'undeliverable' {
    if (this.state === 'failed' || this.state === 'closed' || this.closing) return 'undeliverable';
    if (this.state === 'online' && this.pendingOps === 0 && this.backlog.length === 0) {
      this.send(ev);
      return 'sent';
    }
    this.backlog.push(ev);
    if (this.state === 'idle') this.connect();
    return 'queued';
  }

  /** Forgets messages not yet handed to MQTT (a stop does not send what it had not sent yet). */
  discardBacklog(): number {
    const n = this.backlog.length;
    this.backlog = [];
    return n;
  }

  /** Resolves when connect/drop work queued so far has finished. */
  settled(): Promise<void> {
    return this.ops;
  }

  /** Resolves once every message handed to MQTT has been acknowledged (or failed). */
  drained(): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /**
   * Clean shutdown: publishes `finalStatus` (retained, QoS 1) if given, waits for
   * every in-flight QoS 1 message to be acknowledged, then sends DISCONNECT so the
   * broker discards the will.
   */
  close(finalStatus?: PublishEvent): Promise<void> {
    this.closing = true;
    this.abortConnect?.();
    this.enqueue(async () => {
      const client = this.client;
      if (this.state !== 'online' || !client) {
        this.state = this.state === 'failed' ? 'failed' : 'closed';
        return;
      }
      if (finalStatus) this.send(finalStatus);
      await this.drained();
      await client.endAsync();
      this.client = undefined;
      this.state = 'closed';
    });
    return this.ops;
  }

  private enqueue(op: () => Promise<void>): void {
    this.pendingOps++;
    this.ops = this.ops
      .then(op)
      .catch((err: unknown) => {
        this.lastError = err as Error;
      })
      .finally(() => {
        this.pendingOps--;
        this.flush();
      });
  }

  private flush(): void {
    while (this.state === 'online' && this.pendingOps === 0 && this.backlog.length > 0) {
      this.send(this.backlog.shift()!);
    }
  }

  private send(ev: PublishEvent): void {
    const client = this.client!;
    this.inflight++;
    this.env.onSent(this, ev);
    client.publish(ev.topic, ev.payload, { qos: ev.qos, retain: ev.retain }, (err) => {
      this.inflight--;
      this.env.onAck(this, ev, err ?? undefined);
      if (this.inflight === 0) {
        const waiters = this.drainWaiters;
        this.drainWaiters = [];
        for (const w of waiters) w();
      }
    });
  }

  private async doConnect(): Promise<void> {
    if (this.state === 'online') return;
    this.state = 'connecting';
    await this.env.pacer.take();
    if (this.closing) {
      this.state = 'closed';
      return;
    }
    const options: IClientOptions = {
      clientId: this.id,
      username: this.id,
      password: this.secret,
      will: lastWill(this.id),
      keepalive: this.env.keepaliveSec,
      connectTimeout: Math.min(this.env.connectAttemptMs, this.env.connectTimeoutMs),
      // Only for connections the network loses: a deliberate drop ends the client instead.
      reconnectPeriod: 2_000,
      clean: true,
      protocolVersion: 4,
      ...this.env.mqttOptions,
    };
    const client = mqtt.connect(this.env.url, options);
    const outcome = await new Promise<Error | undefined>((resolve) => {
      let lastNetworkError: Error | undefined;
      const timer = setTimeout(
        () => finish(lastNetworkError ?? new Error(`no CONNACK within ${this.env.connectTimeoutMs} ms`)),
        this.env.connectTimeoutMs,
      );
      const onError = (err: Error & { code?: unknown }) => {
        // A numeric code is a CONNACK refusal (bad credentials, not authorised): retrying will not help.
        if (typeof err.code === 'number') finish(err);
        else lastNetworkError = err;
      };
      const onConnect = () => finish(undefined);
      const finish = (err: Error | undefined) => {
        clearTimeout(timer);
        this.abortConnect = undefined;
        client.off('error', onError);
        client.off('connect', onConnect);
        resolve(err);
      };
      this.abortConnect = () => finish(new Error('stopped while connecting'));
      client.on('error', onError);
      client.once('connect', onConnect);
    });
    if (outcome) {
      client.end(true);
      this.state = 'failed';
      this.lastError = outcome;
      this.env.onConnectFailed(this, outcome);
      return;
    }
    this.client = client;
    this.state = 'online';
    const again = this.everConnected;
    this.everConnected = true;
    client.on('error', (err) => {
      this.lastError = err;
    });
    client.on('close', () => {
      if (this.client === client && this.state === 'online' && !client.disconnecting) this.env.onLost(this);
    });
    this.env.onConnect(this, again);
  }

  /** Loses the connection the way a device does: no DISCONNECT, so the broker publishes the will. */
  private async doDrop(): Promise<void> {
    const client = this.client;
    if (!client || this.state !== 'online') return;
    // In-flight messages are acknowledged first, so a drop never loses what was already sent.
    await this.drained();
    this.state = 'down';
    this.client = undefined;
    await new Promise<void>((resolve) => client.end(true, () => resolve()));
  }
}
