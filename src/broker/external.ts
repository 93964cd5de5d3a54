/**
 * External-broker mode: Faultline subscribes to an existing broker (Mosquitto,
 * EMQX, HiveMQ) through a shared subscription, so several Faultline processes
 * split the device topics and each message is handled by one of them.
 * Authentication and the topic ACL are then the broker's job; Faultline still
 * refuses messages from devices it does not know and validates every payload.
 *
 * QoS 1 messages are acknowledged (handleMessage) only after they are in the
 * write-ahead log. MQTT.js handles one incoming message at a time per
 * connection, so several connections run in parallel to share each fsync.
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { Config } from '../config/schema.js';
import {
  isDevicePublishKind,
  parseDeviceTopic,
  type RejectReason,
  sharedSubscriptionFilters,
  topics,
} from '../contract/index.js';
import type { DeviceInfo } from '../events/types.js';
import type { IngestPipeline } from '../ingest/pipeline.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/registry.js';

export interface ExternalSubscriberOptions {
  config: Readonly<Config>;
  log: Logger;
  metrics: Metrics;
  pipeline: IngestPipeline;
  deviceInfo(id: string): Promise<DeviceInfo | null>;
}

export class ExternalSubscriber {
  private clients: MqttClient[] = [];

  constructor(private readonly o: ExternalSubscriberOptions) {}

  async start(): Promise<{ url: string; connections: number }> {
    const ext = this.o.config.mqtt.external;
    if (!ext) throw new Error('mqtt.external is required when mqtt.mode is external');
    const base = ext.clientId ?? `faultline-${process.pid}`;
    const filters = sharedSubscriptionFilters(ext.group);
    for (let i = 0; i < ext.connections; i++) {
      const client = mqtt.connect(ext.url, {
        clientId: `${base}-${i}`,
        username: ext.username,
        password: ext.password,
        // A persistent session keeps QoS 1 messages queued at the broker while Faultline restarts.
        clean: false,
        reconnectPeriod: 1_000,
      });
      // MQTT.js sends the PUBACK only after handleMessage calls back, and works through incoming
      // messages one at a time per connection: that is both the durability and the backpressure.
      client.handleMessage = (packet, callback) => {
        const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
        this.handle(packet.topic, payload, packet.qos).then(
          () => callback(),
          (err: unknown) => callback(err as Error),
        );
      };
      client.on('error', (err) => this.o.log.warn({ err, url: redactUrl(ext.url) }, 'external broker error'));
      this.clients.push(client);
      await new Promise<void>((resolve, reject) => {
        client.once('connect', () => resolve());
        client.once('error', reject);
      });
      await client.subscribeAsync(filters, { qos: ext.qos });
    }
    this.o.pipeline.onPressure((paused) => {
      // MQTT.js has no pause(); stopping its stream's reads has the same effect on the socket.
      for (const client of this.clients) {
        const stream = (client as unknown as { stream?: { pause(): void; resume(): void } }).stream;
        if (paused) stream?.pause();
        else stream?.resume();
      }
    });
    return { url: redactUrl(ext.url), connections: this.clients.length };
  }

  async stop(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.endAsync()));
    this.clients = [];
  }

  replyError(deviceId: string, topic: string, reason: RejectReason, message: string): void {
    const client = this.clients[0];
    if (!client?.connected) return;
    const payload = JSON.stringify({ ts: Date.now(), topic, reason, message });
    client.publish(topics.errors(deviceId), payload, { qos: 0 }, () => undefined);
  }

  private async handle(topic: string, payload: Buffer, qos: 0 | 1 | 2): Promise<void> {
    const parsed = parseDeviceTopic(topic);
    if (!parsed || !isDevicePublishKind(parsed.kind)) {
      await this.o.pipeline.reject(null, topic, 'unknown_topic', `not a device topic: ${topic}`, payload);
      return;
    }
    const device = await this.o.deviceInfo(parsed.deviceId);
    if (!device) {
      await this.o.pipeline.reject(
        parsed.deviceId,
        topic,
        'unknown_device',
        `device ${parsed.deviceId} is not registered`,
        payload,
      );
      return;
    }
    await this.o.pipeline.accept({ deviceId: device.id, kind: parsed.kind, topic, payload, qos }, device);
  }
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '[invalid url]';
  }
}
