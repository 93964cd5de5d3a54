/**
 * The ingestion acceptance list, with real MQTT.js clients over TCP against
 * the embedded broker of a bridge started in this process.
 */
import { connect as netConnect } from 'node:net';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TelemetryAccepted } from '../../src/events/types.js';
import { startBridge, type TestBridge } from '../helpers/bridge.js';
import { until } from '../helpers/net.js';

let bridge: TestBridge;
const accepted: TelemetryAccepted[] = [];

beforeAll(async () => {
  bridge = await startBridge({
    mqtt: { limits: { maxPacketBytes: 64 * 1024, messagesPerSecond: 1000, burst: 5000 } },
    ingest: { walGroupCommitMs: 20 },
  });
  bridge.app.bus.on('telemetry.accepted', 'test', (e) => {
    accepted.push(e);
  });
});
afterAll(async () => {
  await bridge?.stop();
});

function samplesFor(deviceId: string): number[] {
  return accepted.filter((e) => e.device.id === deviceId).flatMap((e) => e.samples.map((s) => s.seq));
}

async function metric(name: string, labels = ''): Promise<number> {
  const text = await bridge.app.metrics.render();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line ? Number(line.split(' ').pop()) : 0;
}

async function deadLetters(
  deviceId: string,
): Promise<Array<{ reason: string; topic: string; payloadPreview: string; message: string }>> {
  const res = await bridge.api(`/api/v1/deadletters?deviceId=${deviceId}`);
  expect(res.status).toBe(200);
  return (
    (await res.json()) as {
      items: Array<{ reason: string; topic: string; payloadPreview: string; message: string }>;
    }
  ).items;
}

function refusalCode(
  id: string,
  username: string | undefined,
  password: string | undefined,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(bridge.mqttUrl, { clientId: id, username, password, reconnectPeriod: 0 });
    client.once('connect', () => {
      client.end(true);
      reject(new Error('connection was accepted'));
    });
    client.once('error', (err) => {
      client.end(true);
      resolve((err as { code?: number }).code ?? -1);
    });
  });
}

describe('embedded broker: authentication', () => {
  it('accepts authenticated telemetry and hands it to the pipeline', async () => {
    const secret = await bridge.addDevice('ac-ok');
    const client = await bridge.connect('ac-ok', secret);
    await client.publishAsync(
      'devices/ac-ok/telemetry',
      JSON.stringify({ ts: Date.now(), seq: 1, metrics: { compressor_temp: 71.5, mode: 'cool' } }),
      { qos: 1 },
    );
    await until('sample dispatched', () => samplesFor('ac-ok').includes(1));
    const event = accepted.find((e) => e.device.id === 'ac-ok')!;
    expect(event.device.model).toBe('AC-9000');
    expect(event.samples[0]!.metrics).toEqual({ compressor_temp: 71.5, mode: 'cool' });
    expect(await metric('faultline_messages_accepted_total', 'kind="telemetry"')).toBeGreaterThanOrEqual(1);
  });

  it('refuses a wrong secret, an unknown device and a disabled device at CONNACK', async () => {
    const secret = await bridge.addDevice('ac-dis');
    await bridge.app.parts.devices.setDisabled('ac-dis', true);
    await bridge.addDevice('ac-wrong');
    expect(await refusalCode('ac-wrong', 'ac-wrong', 'not-the-secret-at-all')).toBe(4);
    expect(await refusalCode('ac-nobody', 'ac-nobody', 'whatever-secret-123')).toBe(4);
    expect(await refusalCode('ac-dis', 'ac-dis', secret)).toBe(5);
    expect(await metric('faultline_mqtt_connections_refused_total', 'reason="bad_secret"')).toBe(1);
    expect(await metric('faultline_mqtt_connections_refused_total', 'reason="unknown_device"')).toBe(1);
    expect(await metric('faultline_mqtt_connections_refused_total', 'reason="disabled"')).toBe(1);
  });

  it('drops the live session of a device when it is disabled', async () => {
    const secret = await bridge.addDevice('ac-live-dis');
    const client = await bridge.connect('ac-live-dis', secret);
    const closed = new Promise<void>((r) => client.once('close', () => r()));
    const res = await bridge.api('/api/v1/devices/ac-live-dis/disable', { method: 'POST' });
    expect(res.status).toBe(200);
    await closed;
    expect(await refusalCode('ac-live-dis', 'ac-live-dis', secret)).toBe(5);
  });

  it('refuses a client whose username is not its client id', async () => {
    const secret = await bridge.addDevice('ac-mismatch');
    expect(await refusalCode('ac-other', 'ac-mismatch', secret)).toBe(5);
  });
});

describe('embedded broker: topic ACL', () => {
  it('refuses a spoofed publish: not delivered, counted, dead-lettered, reason sent to the device', async () => {
    const victimSecret = await bridge.addDevice('ac-victim');
    const attackerSecret = await bridge.addDevice('ac-attacker');
    const victim = await bridge.connect('ac-victim', victimSecret);
    const attacker = await bridge.connect('ac-attacker', attackerSecret);
    const errors: string[] = [];
    attacker.on('message', (_t, payload) => errors.push(payload.toString()));
    await attacker.subscribeAsync('devices/ac-attacker/errors');
    const before = await metric('faultline_messages_rejected_total', 'reason="spoofed_topic"');
    await attacker.publishAsync(
      'devices/ac-victim/telemetry',
      JSON.stringify({ ts: Date.now(), seq: 99, metrics: { compressor_temp: 120 } }),
      { qos: 1 },
    );
    await until('error reply', () => errors.length > 0);
    expect(JSON.parse(errors[0]!)).toMatchObject({
      reason: 'spoofed_topic',
      topic: 'devices/ac-victim/telemetry',
    });
    expect(await metric('faultline_messages_rejected_total', 'reason="spoofed_topic"')).toBe(before + 1);
    expect(samplesFor('ac-victim')).toEqual([]);
    // The attacker's connection stays up and its own telemetry still flows.
    await attacker.publishAsync(
      'devices/ac-attacker/telemetry',
      JSON.stringify({ ts: Date.now(), seq: 1, metrics: { compressor_temp: 70 } }),
      { qos: 1 },
    );
    await until('own telemetry', () => samplesFor('ac-attacker').includes(1));
    await until('dead letter stored', async () =>
      (await deadLetters('ac-attacker')).some((d) => d.reason === 'spoofed_topic'),
    );
    expect(victim.connected).toBe(true);
  });

  it('refuses a spoofed subscribe with SUBACK 0x80 and counts it', async () => {
    const secret = await bridge.addDevice('ac-sub');
    const client = await bridge.connect('ac-sub', secret);
    const before = await metric('faultline_mqtt_subscriptions_refused_total');
    // MQTT.js reports any 0x80 in a SUBACK as an error carrying the packet.
    const suback = await client
      .subscribeAsync(['devices/ac-victim/commands/#', 'devices/+/telemetry', 'devices/ac-sub/commands/#'])
      .then(
        () => null,
        (err: { packet?: { granted: number[] } }) => err.packet,
      );
    expect(suback?.granted).toEqual([128, 128, 0]);
    expect(await metric('faultline_mqtt_subscriptions_refused_total')).toBe(before + 2);
    expect(client.connected).toBe(true);
  });

  it('delivers commands to the device that owns the topic', async () => {
    const secret = await bridge.addDevice('ac-cmd');
    const client = await bridge.connect('ac-cmd', secret);
    const got: string[] = [];
    client.on('message', (topic) => got.push(topic));
    await client.subscribeAsync('devices/ac-cmd/commands/#', { qos: 1 });
    await bridge.app.parts.broker!.publish('devices/ac-cmd/commands/reboot', '{}', 1);
    await until('command delivered', () => got.includes('devices/ac-cmd/commands/reboot'));
  });
});

describe('embedded broker: bad messages lose nothing', () => {
  it.each([
    ['malformed_json', '{"ts": 17000', 'payload is not JSON'],
    [
      'schema_violation',
      JSON.stringify({ ts: Date.now(), seq: 1, metrics: { compressor_temp: 'hot!'.repeat(40) } }),
      'metrics',
    ],
    ['schema_violation', JSON.stringify({ ts: Date.now(), seq: 'one', metrics: { t: 1 } }), 'seq'],
    [
      'future_timestamp',
      JSON.stringify({ ts: Date.now() + 24 * 3600_000, seq: 1, metrics: { t: 1 } }),
      'ahead of server time',
    ],
  ])('dead-letters %s with its reason and keeps the connection', async (reason, payload, hint) => {
    const id = `ac-bad-${Math.random().toString(36).slice(2, 8)}`;
    const secret = await bridge.addDevice(id);
    const client = await bridge.connect(id, secret);
    const errors: Array<{ reason: string; message: string }> = [];
    client.on('message', (_t, p) => errors.push(JSON.parse(p.toString())));
    await client.subscribeAsync(`devices/${id}/errors`);
    await client.publishAsync(`devices/${id}/telemetry`, payload, { qos: 1 });
    await until('error reply', () => errors.length > 0);
    expect(errors[0]!.reason).toBe(reason);
    expect(errors[0]!.message).toContain(hint);
    const letters = await until('dead letter', async () => {
      const items = await deadLetters(id);
      return items.length > 0 ? items : null;
    });
    expect(letters[0]).toMatchObject({ reason, topic: `devices/${id}/telemetry` });
    expect(letters[0]!.payloadPreview).toBe(payload.slice(0, 200));
    // Still connected: a good message right after is accepted.
    await client.publishAsync(
      `devices/${id}/telemetry`,
      JSON.stringify({ ts: Date.now(), seq: 2, metrics: { t: 1 } }),
      { qos: 1 },
    );
    await until('good sample after bad', () => samplesFor(id).includes(2));
    expect(client.connected).toBe(true);
  });

  it('dead-letters an oversized publish, acknowledges it and keeps the connection', async () => {
    const secret = await bridge.addDevice('ac-big');
    const client = await bridge.connect('ac-big', secret);
    const errors: Array<{ reason: string }> = [];
    client.on('message', (_t, p) => errors.push(JSON.parse(p.toString())));
    await client.subscribeAsync('devices/ac-big/errors');
    const huge = JSON.stringify({ ts: Date.now(), seq: 1, metrics: { blob: 'x' } }).padEnd(200 * 1024, ' ');
    // publishAsync resolves on PUBACK: the guard acknowledged the cut-out packet itself.
    await client.publishAsync('devices/ac-big/telemetry', huge, { qos: 1 });
    await until('error reply', () => errors.length > 0);
    expect(errors[0]!.reason).toBe('oversized_packet');
    const letters = await until('dead letter', async () => {
      const items = await deadLetters('ac-big');
      return items.length > 0 ? items : null;
    });
    expect(letters[0]!.reason).toBe('oversized_packet');
    expect(letters[0]!.message).toContain('exceeds mqtt.limits.maxPacketBytes (65536)');
    await client.publishAsync(
      'devices/ac-big/telemetry',
      JSON.stringify({ ts: Date.now(), seq: 2, metrics: { t: 1 } }),
      { qos: 1 },
    );
    await until('good sample after oversized', () => samplesFor('ac-big').includes(2));
    expect(client.connected).toBe(true);
  });

  it('cuts a connection whose packet is oversized and not a PUBLISH (before the body is sent)', async () => {
    const secret = await bridge.addDevice('ac-raw');
    const url = new URL(bridge.mqttUrl);
    const socket = netConnect({ host: url.hostname, port: Number(url.port) });
    await new Promise<void>((r) => socket.once('connect', () => r()));
    socket.write(
      mqttPacket.generate({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clean: true,
        clientId: 'ac-raw',
        keepalive: 30,
        username: 'ac-raw',
        password: Buffer.from(secret),
      }),
    );
    // A SUBSCRIBE header announcing 100 MB; no body follows.
    socket.write(Buffer.from([0x82, 0x80, 0x80, 0x80, 0x30]));
    await new Promise<void>((r) => socket.once('close', () => r()));
    expect(socket.destroyed).toBe(true);
  });
});

describe('embedded broker: durability and duplicates', () => {
  it('acknowledges a QoS 1 batch of 1,000 samples only once it is in the write-ahead log', async () => {
    const secret = await bridge.addDevice('ac-batch');
    const client = await bridge.connect('ac-batch', secret);
    const t0 = Date.now() - 1000 * 10_000;
    const batch = Array.from({ length: 1000 }, (_, i) => ({
      ts: t0 + i * 10_000,
      seq: 1000 + i,
      metrics: { compressor_temp: 60 + (i % 30) },
    }));
    const walBefore = bridge.app.parts.wal.lastLsn;
    const payload = JSON.stringify({ batch });
    await client.publishAsync('devices/ac-batch/telemetry', payload, { qos: 1 });
    // Read at the moment PUBACK arrived: with a 20 ms group commit, an ack sent before the fsync
    // would arrive while the record's LSN is still above the durable mark.
    const durable = bridge.app.parts.wal.lastLsn;
    const records = await bridge.app.parts.wal.read(walBefore, 10_000);
    const mine = records.filter((r) => r.payload.includes(Buffer.from(payload)));
    expect(mine).toHaveLength(1);
    expect(mine[0]!.lsn).toBeLessThanOrEqual(durable);
    await until('batch dispatched', () => samplesFor('ac-batch').length === 1000);
    // Dispatched in device-time order.
    const seqs = samplesFor('ac-batch');
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
  });

  it('processes a duplicate (same device and seq) once', async () => {
    const secret = await bridge.addDevice('ac-dup');
    const client = await bridge.connect('ac-dup', secret);
    const msg = JSON.stringify({ ts: Date.now(), seq: 42, metrics: { t: 1 } });
    await client.publishAsync('devices/ac-dup/telemetry', msg, { qos: 1 });
    await client.publishAsync('devices/ac-dup/telemetry', msg, { qos: 1, dup: true });
    await client.publishAsync(
      'devices/ac-dup/telemetry',
      JSON.stringify({ ts: Date.now(), seq: 43, metrics: { t: 2 } }),
      { qos: 1 },
    );
    await until('seq 43', () => samplesFor('ac-dup').includes(43));
    expect(samplesFor('ac-dup')).toEqual([42, 43]);
    expect(await metric('faultline_messages_rejected_total', 'reason="duplicate"')).toBeGreaterThanOrEqual(1);
  });

  it('drops messages over the per-device rate and counts them', async () => {
    const limited = await startBridge({ mqtt: { limits: { messagesPerSecond: 1, burst: 3 } } });
    try {
      const secret = await limited.addDevice('ac-flood');
      const client = await limited.connect('ac-flood', secret);
      for (let i = 0; i < 10; i++) {
        await client.publishAsync(
          'devices/ac-flood/telemetry',
          JSON.stringify({ ts: Date.now(), seq: i, metrics: { t: i } }),
          { qos: 1 },
        );
      }
      const text = await limited.app.metrics.render();
      const dropped = Number(
        text
          .split('\n')
          .find((l) => l.startsWith('faultline_messages_rejected_total{reason="rate_limited"}'))
          ?.split(' ')
          .pop(),
      );
      expect(dropped).toBeGreaterThanOrEqual(6);
      expect(client.connected).toBe(true);
    } finally {
      await limited.stop();
    }
  });
});

describe('embedded broker: presence', () => {
  it('marks a device offline through its last will when the socket dies', async () => {
    const secret = await bridge.addDevice('ac-will');
    const statuses: Array<{ state: string; reason: string | null }> = [];
    bridge.app.bus.on('device.status', 'test-will', (e) => {
      if (e.deviceId === 'ac-will') statuses.push({ state: e.state, reason: e.reason });
    });
    const client = await bridge.connect('ac-will', secret, {
      will: {
        topic: 'devices/ac-will/status',
        payload: Buffer.from(JSON.stringify({ state: 'offline', reason: 'connection lost' })),
        qos: 1,
        retain: true,
      },
    });
    await until('online', async () => (await bridge.app.parts.devices.get('ac-will'))?.online === true);
    // Kill the TCP connection without DISCONNECT, as a power cut would.
    (client as unknown as { stream: { destroy(): void } }).stream.destroy();
    await until(
      'offline in registry',
      async () => (await bridge.app.parts.devices.get('ac-will'))?.online === false,
    );
    expect(statuses).toContainEqual({ state: 'offline', reason: 'connection lost' });
  });
});

describe('embedded broker: WebSocket', () => {
  it('accepts MQTT over WebSocket with the same authentication', async () => {
    const secret = await bridge.addDevice('ac-ws');
    const client = await mqtt.connectAsync(bridge.wsUrl, {
      clientId: 'ac-ws',
      username: 'ac-ws',
      password: secret,
      reconnectPeriod: 0,
    });
    await client.publishAsync(
      'devices/ac-ws/telemetry',
      JSON.stringify({ ts: Date.now(), seq: 1, metrics: { t: 1 } }),
      { qos: 1 },
    );
    await until('ws sample', () => samplesFor('ac-ws').includes(1));
    await client.endAsync();
  });
});

describe('embedded broker: owner apps', () => {
  it('lets an owner app subscribe only to its own notifications and publish only its receipts, over WebSocket', async () => {
    const receipts: Array<{ ownerId: string; body: string }> = [];
    bridge.app.parts.broker!.setOwnerAuthenticator({
      authenticate: async (ownerId, secret) =>
        ownerId === 'o-1' && secret === 'owner-secret-0123456789' ? 'ok' : 'bad_secret',
      receipt: async (ownerId, payload) => {
        receipts.push({ ownerId, body: payload.toString() });
      },
    });
    const app = await mqtt.connectAsync(bridge.wsUrl, {
      clientId: 'owner:o-1:phone',
      username: 'owner:o-1',
      password: 'owner-secret-0123456789',
      reconnectPeriod: 0,
    });
    const suback = await app.subscribeAsync(['owners/o-1/notifications', 'owners/o-2/notifications']).then(
      () => null,
      (err: { packet?: { granted: number[] } }) => err.packet,
    );
    expect(suback?.granted).toEqual([0, 128]);
    const got: string[] = [];
    app.on('message', (t) => got.push(t));
    await bridge.app.parts.broker!.publish('owners/o-1/notifications', '{"id":"n1"}', 1);
    await until('notification', () => got.includes('owners/o-1/notifications'));
    await app.publishAsync('owners/o-1/receipts', '{"notification":"n1","status":"opened"}', { qos: 1 });
    await app.publishAsync('owners/o-2/receipts', '{"notification":"n9","status":"fixed"}', { qos: 1 });
    await until('receipt', () => receipts.length > 0);
    expect(receipts).toEqual([{ ownerId: 'o-1', body: '{"notification":"n1","status":"opened"}' }]);
    expect(
      await mqtt
        .connectAsync(bridge.wsUrl, {
          clientId: 'owner:o-1:x',
          username: 'owner:o-1',
          password: 'wrong-secret-000000000',
          reconnectPeriod: 0,
        })
        .then(
          () => 'connected',
          (err: { code?: number }) => err.code,
        ),
    ).toBe(4);
    await app.endAsync();
  });
});

describe('embedded broker: refused filters in persistent sessions', () => {
  it('does not restore a refused filter that came in the same SUBSCRIBE as a granted one', async () => {
    bridge.app.parts.broker!.setOwnerAuthenticator({
      authenticate: async (ownerId, secret) =>
        secret === `${ownerId}-secret-0123456789` ? 'ok' : 'bad_secret',
      receipt: async () => undefined,
    });
    const opts = {
      clientId: 'owner:o-3:phone',
      username: 'owner:o-3',
      password: 'o-3-secret-0123456789',
      clean: false,
      reconnectPeriod: 0,
    };
    const first = await mqtt.connectAsync(bridge.wsUrl, opts);
    await first
      .subscribeAsync(['owners/o-3/notifications', 'owners/+/notifications', 'owners/o-4/notifications'], {
        qos: 1,
      })
      .catch(() => undefined);
    await first.endAsync();
    const broker = bridge.app.parts.broker!;
    await broker.publish('owners/o-4/notifications', 'not yours', 1);
    await broker.publish('owners/o-3/notifications', 'yours', 1);
    const second = await mqtt.connectAsync(bridge.wsUrl, opts);
    const got: string[] = [];
    second.on('message', (topic, payload) => got.push(`${topic}=${payload.toString()}`));
    await until('own notification after reconnect', () => got.includes('owners/o-3/notifications=yours'));
    // A marker published after the other owner's message arrives after it, if that one were delivered.
    await broker.publish('owners/o-3/notifications', 'marker', 1);
    await until('marker', () => got.includes('owners/o-3/notifications=marker'));
    expect(got.filter((g) => g.startsWith('owners/o-4'))).toEqual([]);
    await second.endAsync();
  });
});
