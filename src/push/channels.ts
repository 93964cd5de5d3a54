/**
 * The in-app channel: MQTT to the owner's app, through the embedded broker or,
 * in external-broker mode, through the external broker with a client of our own.
 *
 * The app subscribes to owners/{id}/notifications at QoS 1 with a persistent
 * session and publishes receipts to owners/{id}/receipts. A receipt of
 * {"status":"sync"} asks for every notification not yet confirmed delivered:
 * after a Faultline restart the broker's sessions are gone, and the app's
 * SUBSCRIBE arrives after the broker says "connected", so a sync sent after the
 * SUBACK is the one moment a re-send certainly reaches it.
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { EmbeddedBroker, OwnerAuthenticator } from '../broker/embedded.js';
import type { Config } from '../config/schema.js';
import { OWNER_ID_PATTERN, topics } from '../contract/index.js';
import type { Logger } from '../log/logger.js';
import type { OwnerStore } from '../owners/store.js';
import type { InAppChannel, PushService } from './service.js';

function isSync(payload: Buffer): boolean {
  try {
    const v = JSON.parse(payload.toString('utf8')) as { status?: unknown } | null;
    return v !== null && typeof v === 'object' && v.status === 'sync';
  } catch {
    return false;
  }
}

/** A receipt or a sync from the app, however it arrived. */
export async function handleAppMessage(push: PushService, ownerId: string, payload: Buffer): Promise<void> {
  if (isSync(payload)) await push.connected(ownerId);
  else await push.receipt(ownerId, payload);
}

export function embeddedChannel(broker: EmbeddedBroker): InAppChannel {
  return { publish: (ownerId, payload) => broker.publish(topics.ownerNotifications(ownerId), payload, 1) };
}

/** What the embedded broker asks about owner apps: credentials, receipts, connects. */
export function ownerAuthenticator(owners: OwnerStore, push: PushService, log: Logger): OwnerAuthenticator {
  return {
    authenticate: (ownerId, secret) => owners.authenticate(ownerId, secret),
    receipt: (ownerId, payload) => handleAppMessage(push, ownerId, payload),
    connected(ownerId) {
      // Best effort: a session the broker still holds has its subscription already; a new one
      // gets its re-send from the app's sync (see the file comment).
      push
        .connected(ownerId)
        .catch((err: unknown) => log.warn({ err, ownerId }, 're-send on connect failed'));
    },
  };
}

/**
 * External mode: notifications are published to the external broker, receipts are read from
 * it through a shared subscription (one Faultline process handles each). Who may subscribe to
 * owners/X/notifications and publish to owners/X/receipts is then the broker's ACL, as for devices.
 */
export class ExternalInAppChannel implements InAppChannel {
  #client: MqttClient | null = null;

  constructor(
    private readonly config: Readonly<Config>,
    private readonly push: PushService,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const ext = this.config.mqtt.external;
    if (!ext) throw new Error('mqtt.external is required when mqtt.mode is external');
    const client = mqtt.connect(ext.url, {
      clientId: `${ext.clientId ?? `faultline-${process.pid}`}-push`,
      username: ext.username,
      password: ext.password,
      // Receipts sent while this process restarts wait at the broker.
      clean: false,
      reconnectPeriod: 1_000,
    });
    client.handleMessage = (packet, callback) => {
      const ownerId = /^owners\/([^/]+)\/receipts$/.exec(packet.topic)?.[1];
      const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
      if (!ownerId || !OWNER_ID_PATTERN.test(ownerId)) {
        callback();
        return;
      }
      handleAppMessage(this.push, ownerId, payload).then(
        () => callback(),
        (err: unknown) => {
          // A bad receipt is the app's problem, not a reason to redeliver it forever.
          this.log.warn({ err, ownerId }, 'receipt refused');
          callback();
        },
      );
    };
    client.on('error', (err) => this.log.warn({ err }, 'external broker error (push channel)'));
    this.#client = client;
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    await client.subscribeAsync(`$share/${ext.group}/owners/+/receipts`, { qos: 1 });
  }

  async publish(ownerId: string, payload: string): Promise<void> {
    const client = this.#client;
    if (!client) throw new Error('push channel not started');
    await client.publishAsync(topics.ownerNotifications(ownerId), payload, { qos: 1 });
  }

  async stop(): Promise<void> {
    await this.#client?.endAsync();
    this.#client = null;
  }
}
