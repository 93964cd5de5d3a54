/**
 * External-broker mode against a real Mosquitto: two Faultline instances share
 * the subscription ($share/faultline/...) and one real PostgreSQL, and every
 * message is handled by exactly one of them.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TelemetryAccepted } from '../../src/events/types.js';
import { startBridge, type TestBridge } from '../helpers/bridge.js';
import { type Mosquitto, startMosquitto } from '../helpers/mosquitto.js';
import { until } from '../helpers/net.js';
import { type PostgresServer, startPostgres } from '../helpers/postgres.js';

let broker: Mosquitto;
let postgres: PostgresServer;
const bridges: TestBridge[] = [];
const seen: Array<{ bridge: number; event: TelemetryAccepted }> = [];
let device: MqttClient;

beforeAll(async () => {
  [broker, postgres] = await Promise.all([startMosquitto(), startPostgres()]);
  for (let i = 0; i < 2; i++) {
    const bridge = await startBridge({
      database: { url: postgres.url },
      mqtt: {
        mode: 'external',
        wsPort: null,
        external: { url: broker.url, clientId: `faultline-test-${i}`, connections: 2 },
      },
    });
    bridge.app.bus.on('telemetry.accepted', 'test', (event) => {
      seen.push({ bridge: i, event });
    });
    bridges.push(bridge);
  }
  await bridges[0]!.app.parts.devices.add({
    id: 'ext-ac-1',
    model: 'AC-9000',
    secret: 'external-secret-0123456789',
  });
  device = await mqtt.connectAsync(broker.url, { clientId: 'ext-ac-1', reconnectPeriod: 0 });
}, 60_000);

afterAll(async () => {
  await device?.endAsync();
  for (const bridge of bridges) await bridge.stop();
  await Promise.all([broker?.stop(), postgres?.stop()]);
});

describe('external broker mode (Mosquitto, shared subscription)', () => {
  it('handles each message once across two Faultline processes', async () => {
    const n = 400;
    const t0 = Date.now() - n * 1000;
    for (let seq = 1; seq <= n; seq++) {
      await device.publishAsync(
        'devices/ext-ac-1/telemetry',
        JSON.stringify({ ts: t0 + seq * 1000, seq, metrics: { compressor_temp: 60 + (seq % 10) } }),
        { qos: 1 },
      );
    }
    await until('all samples handled', () => seen.length === n, 20_000);
    const seqs = seen.flatMap((s) => s.event.samples.map((x) => x.seq)).sort((a, b) => a - b);
    expect(seqs).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    // Both members of the group took a share.
    const perBridge = [0, 1].map((b) => seen.filter((s) => s.bridge === b).length);
    expect(perBridge[0]).toBeGreaterThan(0);
    expect(perBridge[1]).toBeGreaterThan(0);
    expect(seen[0]!.event.device.model).toBe('AC-9000');
  });

  it('dead-letters malformed payloads and messages from unregistered devices', async () => {
    const stranger = await mqtt.connectAsync(broker.url, { clientId: 'ext-nobody', reconnectPeriod: 0 });
    await stranger.publishAsync(
      'devices/ext-nobody/telemetry',
      JSON.stringify({ ts: Date.now(), seq: 1, metrics: { t: 1 } }),
      { qos: 1 },
    );
    await device.publishAsync('devices/ext-ac-1/telemetry', '{not json', { qos: 1 });
    await stranger.endAsync();
    const reasons = await until('dead letters in the shared database', async () => {
      const page = await bridges[0]!.app.parts.deadLetters.list({ limit: 10 });
      const r = page.items.map((d) => d.reason).sort();
      return r.length >= 2 ? r : null;
    });
    expect(reasons).toEqual(['malformed_json', 'unknown_device']);
  });

  it('dead-letters future-dated samples and drops redelivered duplicates', async () => {
    const before = seen.length;
    await device.publishAsync(
      'devices/ext-ac-1/telemetry',
      JSON.stringify({ ts: Date.now() + 86_400_000, seq: 5000, metrics: { t: 1 } }),
      { qos: 1 },
    );
    const dup = JSON.stringify({ ts: Date.now(), seq: 5001, metrics: { t: 1 } });
    // The same (device, seq) twice, as a QoS 1 redelivery produces; the shared group may hand the copies to different instances.
    await device.publishAsync('devices/ext-ac-1/telemetry', dup, { qos: 1 });
    await device.publishAsync('devices/ext-ac-1/telemetry', dup, { qos: 1, dup: true });
    await device.publishAsync(
      'devices/ext-ac-1/telemetry',
      JSON.stringify({ ts: Date.now(), seq: 5002, metrics: { t: 1 } }),
      { qos: 1 },
    );
    await until('seq 5002 handled', () => seen.some((s) => s.event.samples.some((x) => x.seq === 5002)));
    const letters = await until('future-dated dead letter', async () => {
      const page = await bridges[0]!.app.parts.deadLetters.list({ reason: 'future_timestamp' });
      return page.items.length > 0 ? page.items : null;
    });
    expect(letters[0]!.deviceId).toBe('ext-ac-1');
    const handled = seen.slice(before).flatMap((s) => s.event.samples.map((x) => x.seq));
    expect(handled).not.toContain(5000);
    expect(handled.filter((x) => x === 5002)).toHaveLength(1);
    // Within one instance a duplicate is dropped; across instances each keeps its own window,
    // which is why a shared group should be paired with consumers that are idempotent downstream.
    const perInstance = [0, 1].map(
      (b) =>
        seen
          .filter((s) => s.bridge === b)
          .flatMap((s) => s.event.samples.map((x) => x.seq))
          .filter((x) => x === 5001).length,
    );
    expect(Math.max(...perInstance)).toBe(1);
  });
});
