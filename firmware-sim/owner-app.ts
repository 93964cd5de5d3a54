/**
 * A stand-in for an owner's phone app: logs in to the bridge's MQTT over
 * WebSocket as `owner:<id>`, records the notifications it gets (each once, by
 * id) and answers each with receipts, as docs/guides.md describes the real app.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { topics } from '../src/contract/index.js';

export type ReceiptStatus = 'delivered' | 'opened' | 'fixed' | 'not_fixed';
export const RECEIPT_STATUSES: readonly ReceiptStatus[] = ['delivered', 'opened', 'fixed', 'not_fixed'];

/** The fields the stand-in reads; the rest of the payload is kept as received. */
export interface OwnerNotification {
  id: string;
  kind: string;
  ticketId?: string;
  deviceId?: string;
  collapseKey?: string;
  signal?: string;
  severity?: string;
  title?: string;
  locale?: string;
  guide?: { id: string; locale: string; title?: string };
  [key: string]: unknown;
}

export interface ReceivedNotification {
  notification: OwnerNotification;
  /** Wall time it arrived (ms since the epoch). */
  receivedAt: number;
}

export interface OwnerAppOptions {
  /** ws://host:port of the bridge's MQTT-over-WebSocket listener. */
  wsUrl: string;
  ownerId: string;
  secret: string;
  /** Receipts sent for each new guide, in order (default delivered, opened). */
  receipts?: readonly ReceiptStatus[];
  /** Appended to the client id `owner:<id>:` (stable per install; default "sim"). */
  install?: string;
  onNotification?: (n: ReceivedNotification) => void;
  connectTimeoutMs?: number;
}

export function defaultWsUrl(env: NodeJS.ProcessEnv = process.env): string {
  return `ws://localhost:${env.FAULTLINE_WS_PORT || 8083}`;
}

export class OwnerApp {
  readonly received: ReceivedNotification[] = [];
  readonly receiptsSent: Array<{ notification: string; status: ReceiptStatus }> = [];
  readonly #seen = new Set<string>();
  readonly #waiters = new Set<() => void>();
  #client: MqttClient | undefined;

  constructor(private readonly o: OwnerAppOptions) {}

  get notifications(): OwnerNotification[] {
    return this.received.map((r) => r.notification);
  }

  async start(): Promise<void> {
    const { ownerId } = this.o;
    const client = await mqtt.connectAsync(this.o.wsUrl, {
      clientId: `owner:${ownerId}:${this.o.install ?? 'sim'}`,
      username: `owner:${ownerId}`,
      password: this.o.secret,
      clean: false,
      protocolVersion: 4,
      reconnectPeriod: 1_000,
      connectTimeout: this.o.connectTimeoutMs ?? 10_000,
    });
    this.#client = client;
    client.on('message', (_topic, payload) => this.#onMessage(payload));
    const granted = await client.subscribeAsync(topics.ownerNotifications(ownerId), { qos: 1 });
    if (granted.some((g) => g.qos === 0x80)) {
      await client.endAsync(true);
      throw new Error(`the bridge refused the subscription to ${topics.ownerNotifications(ownerId)}`);
    }
    // Whatever was sent while no app was connected: the bridge re-sends every unconfirmed notification.
    await client.publishAsync(topics.ownerReceipts(ownerId), JSON.stringify({ status: 'sync' }), { qos: 1 });
  }

  #onMessage(payload: Buffer): void {
    let n: OwnerNotification;
    try {
      n = JSON.parse(payload.toString('utf8')) as OwnerNotification;
    } catch {
      return;
    }
    if (typeof n?.id !== 'string' || this.#seen.has(n.id)) return;
    this.#seen.add(n.id);
    const entry = { notification: n, receivedAt: Date.now() };
    this.received.push(entry);
    this.o.onNotification?.(entry);
    if (n.kind === 'guide') void this.#sendReceipts(n.id);
    for (const wake of this.#waiters) wake();
  }

  async #sendReceipts(id: string): Promise<void> {
    for (const status of this.o.receipts ?? ['delivered', 'opened']) {
      try {
        await this.#client?.publishAsync(
          topics.ownerReceipts(this.o.ownerId),
          JSON.stringify({ notification: id, status }),
          { qos: 1 },
        );
        this.receiptsSent.push({ notification: id, status });
      } catch {
        return; // stopped meanwhile
      }
    }
  }

  /** The first notification (already received or still to come) that matches, or undefined after timeoutMs. */
  waitFor(
    match: (n: OwnerNotification) => boolean,
    timeoutMs: number,
  ): Promise<OwnerNotification | undefined> {
    const found = () => this.notifications.find(match);
    const now = found();
    if (now) return Promise.resolve(now);
    return new Promise((resolve) => {
      const done = (value: OwnerNotification | undefined) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve(value);
      };
      const check = () => {
        const n = found();
        if (n) done(n);
      };
      const timer = setTimeout(() => done(undefined), timeoutMs);
      this.#waiters.add(check);
    });
  }

  async stop(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    for (const wake of this.#waiters) wake();
    await client?.endAsync().catch(() => client.endAsync(true));
  }
}
