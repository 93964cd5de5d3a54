/** The transport against a real broker (Aedes on a free loopback port) with real MQTT clients. */
import { createServer, type Socket, connect as tcpConnect } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { deriveSecret } from '../../firmware-sim/credentials.js';
import type { PublishEvent } from '../../firmware-sim/fleet/events.js';
import { expandFleet, type FleetFile, fleetFromFlags, parseFleet } from '../../firmware-sim/fleet/spec.js';
import { FleetStream } from '../../firmware-sim/fleet/stream.js';
import { Fleet, type FleetOptions } from '../../firmware-sim/transport/fleet.js';
import {
  faultPayload,
  lastWill,
  parseDeviceTopic,
  statusPayload,
  telemetryPayload,
} from '../../src/contract/index.js';
import { until } from '../helpers/net.js';
import { startBroker, type TestBroker } from './helpers/aedes.js';
import { HOUR, MIN, START } from './helpers/generate.js';

let broker: TestBroker;
beforeEach(async () => {
  broker = await startBroker();
});
afterEach(async () => {
  await broker.close();
});

interface Setup {
  fleet: FleetFile;
  durationMs?: number;
  speed?: number;
  qos?: 0 | 1;
  extra?: Partial<FleetOptions>;
}

/** A fleet over the generated stream; also returns that stream, regenerated, to compare with what arrived. */
function setup(s: Setup) {
  const specs = expandFleet(s.fleet, { durationMs: s.durationMs });
  const gen = {
    seed: s.fleet.seed,
    startMs: START,
    endMs: s.durationMs === undefined ? undefined : START + s.durationMs,
    qos: s.qos ?? 1,
  };
  const sent: PublishEvent[] = [];
  const acked: Array<{ ev: PublishEvent; err: Error | undefined }> = [];
  const fleet = new Fleet({
    brokerUrl: broker.url,
    source: new FleetStream(specs, gen),
    deviceIds: specs.map((d) => d.id),
    secretFor: (id) => deriveSecret(s.fleet.seed, id),
    startMs: START,
    endMs: gen.endMs,
    speed: s.speed ?? 3_600,
    connectRate: 200,
    hooks: {
      onSend: (ev) => sent.push(ev),
      onAck: (ev, _sent, _acked, err) => acked.push({ ev, err }),
    },
    ...s.extra,
  });
  const expected = () => [...new FleetStream(specs, gen)];
  return { specs, fleet, sent, acked, expected };
}

const fromDevices = () => broker.received.filter((r) => r.clientId !== null && !isWill(r.payload));
const isWill = (payload: string) => payload === lastWill('x').payload;

function validate(topic: string, payload: string): boolean {
  const kind = parseDeviceTopic(topic)?.kind;
  const schema = kind === 'telemetry' ? telemetryPayload : kind === 'faults' ? faultPayload : statusPayload;
  return schema.safeParse(JSON.parse(payload)).success;
}

describe('fleet against a real broker', { timeout: 120_000 }, () => {
  it('connects every device with its id, secret and will, and delivers the generated stream intact', async () => {
    broker.authorize = (id, user, pw) => user === id && pw === deriveSecret('t1', id);
    const { specs, fleet, sent, acked, expected } = setup({
      fleet: parseFleet({
        seed: 't1',
        groups: [
          { model: 'AC-9000', count: 6, faults: { overheat: { count: 1, at: '5m' } } },
          { model: 'RV-200', count: 6, faults: { 'wheel-stuck': { count: 1, at: '2m' } } },
        ],
      }),
      durationMs: 30 * MIN,
    });
    await fleet.start();
    const summary = await fleet.finished;

    expect(summary).toMatchObject({
      stoppedBy: 'end',
      connects: 12,
      connectFailures: 0,
      publishErrors: 0,
      unacked: 0,
    });
    expect(broker.connects.map((c) => c.clientId).sort()).toEqual(specs.map((s) => s.id).sort());
    for (const c of broker.connects) {
      expect(c.username).toBe(c.clientId);
      expect(c.password).toBe(deriveSecret('t1', c.clientId));
      expect(c.will).toEqual(lastWill(c.clientId));
    }

    // What arrived is exactly the pure stream, per device and in order, plus one clean offline status each.
    const want = expected().filter((e): e is PublishEvent => e.type === 'publish');
    const got = fromDevices();
    expect(got).toHaveLength(want.length + specs.length);
    for (const spec of specs) {
      const mine = got.filter((r) => r.clientId === spec.id);
      const wanted = want.filter((e) => e.deviceId === spec.id);
      expect(mine.slice(0, -1).map((r) => [r.topic, r.payload, r.qos, r.retain])).toEqual(
        wanted.map((e) => [e.topic, e.payload, e.qos, e.retain]),
      );
      const first = JSON.parse(mine[0]!.payload);
      expect(mine[0]!.topic).toBe(`devices/${spec.id}/status`);
      expect(first).toMatchObject({ state: 'online' });
      expect(JSON.parse(mine.at(-1)!.payload)).toMatchObject({
        state: 'offline',
        reason: 'simulator stopped',
      });
      expect(mine.at(-1)!.retain).toBe(true);
    }
    expect(got.every((r) => validate(r.topic, r.payload))).toBe(true);
    expect(got.some((r) => r.topic.endsWith('/faults'))).toBe(true);

    // Every message handed to MQTT was acknowledged without error.
    expect(acked).toHaveLength(sent.length);
    expect(acked.filter((a) => a.err)).toEqual([]);
    expect(summary.acked).toBe(sent.length);
  });

  it('graceful stop: stops releasing, waits for every PUBACK in flight, disconnects cleanly', async () => {
    // Slow PUBACKs so that a stop finds plenty of QoS 1 messages still unacknowledged.
    broker.ackDelayMs = 20;
    const { fleet, sent, acked, specs } = setup({
      fleet: fleetFromFlags({ devices: 10, model: 'RV-200', seed: 't2', faults: [] }),
      durationMs: 24 * HOUR,
      speed: 36_000,
    });
    await fleet.start();
    await until('messages piling up in flight', () => fleet.stats.inflight > 100, 60_000);
    const inflightAtStop = fleet.stats.inflight;
    const summary = await fleet.stop();

    expect(inflightAtStop).toBeGreaterThan(100);
    expect(summary.stoppedBy).toBe('stop');
    expect(summary.unacked).toBe(0);
    expect(summary.publishErrors).toBe(0);
    expect(summary.acked).toBe(summary.sent.total);
    expect(acked).toHaveLength(sent.length);
    expect(acked.filter((a) => a.err)).toEqual([]);
    // The broker has every message that was sent: none lost in the stop.
    expect(fromDevices()).toHaveLength(sent.length);
    const received = new Set(fromDevices().map((r) => `${r.topic} ${r.payload}`));
    expect(sent.filter((e) => !received.has(`${e.topic} ${e.payload}`))).toEqual([]);
    // The run was cut short, and each device said it was going offline (a clean DISCONNECT drops the will).
    expect(summary.deviceTime.end).toBeLessThan(START + 24 * HOUR);
    expect(broker.received.filter((r) => isWill(r.payload))).toEqual([]);
    for (const spec of specs) {
      const last = fromDevices()
        .filter((r) => r.clientId === spec.id)
        .at(-1)!;
      expect(JSON.parse(last.payload)).toMatchObject({ state: 'offline' });
    }
    await until('every device disconnected', () => broker.broker.connectedClients === 0, 30_000);
  });

  it('a dropped connection fires the last will; the device reconnects and uploads its buffer as a batch', async () => {
    const { fleet, specs } = setup({
      fleet: parseFleet({
        seed: 't3',
        groups: [{ model: 'AC-9000', count: 3, faults: { offline: { count: 1, at: '5m', for: '10m' } } }],
      }),
      durationMs: 30 * MIN,
    });
    const dropped = specs.find((s) => s.faults.length > 0)!.id;
    await fleet.start();
    const summary = await fleet.finished;
    expect(summary).toMatchObject({ drops: 1, reconnects: 1, connects: 4, unacked: 0, publishErrors: 0 });

    const timeline = broker.received.filter((r) => r.topic.startsWith(`devices/${dropped}/`));
    const will = timeline.findIndex((r) => isWill(r.payload));
    expect(will).toBeGreaterThan(0);
    expect(timeline[will]).toMatchObject({ topic: `devices/${dropped}/status`, retain: true, qos: 1 });
    const after = timeline.slice(will + 1);
    expect(JSON.parse(after[0]!.payload)).toMatchObject({ state: 'online' });
    const batch = JSON.parse(after[1]!.payload) as { batch?: unknown[] };
    expect(after[1]!.topic).toBe(`devices/${dropped}/telemetry`);
    expect(batch.batch!.length).toBeGreaterThan(50);
    expect(validate(after[1]!.topic, after[1]!.payload)).toBe(true);
    expect(broker.connects.filter((c) => c.clientId === dropped)).toHaveLength(2);
    // The others never dropped.
    expect(broker.received.filter((r) => isWill(r.payload))).toHaveLength(1);
  });

  it('a device the broker refuses is reported and skipped; the rest run', async () => {
    broker.authorize = (id) => id !== 'dev-ac9000-00002';
    const { fleet } = setup({
      fleet: fleetFromFlags({ devices: 3, model: 'AC-9000', seed: 't4' }),
      durationMs: 10 * MIN,
    });
    await fleet.start();
    const summary = await fleet.finished;
    expect(summary.connectFailures).toBe(1);
    expect(summary.failedDevices).toEqual([
      { id: 'dev-ac9000-00002', error: expect.stringMatching(/refused/i) },
    ]);
    expect(summary.undeliverable).toBeGreaterThan(50);
    expect(new Set(fromDevices().map((r) => r.clientId))).toEqual(
      new Set(['dev-ac9000-00001', 'dev-ac9000-00003']),
    );
  });

  it('sends telemetry at QoS 0 when asked, status still at QoS 1', async () => {
    const { fleet } = setup({
      fleet: fleetFromFlags({ devices: 2, model: 'RV-200', seed: 't5' }),
      durationMs: 10 * MIN,
      qos: 0,
    });
    await fleet.start();
    const summary = await fleet.finished;
    expect(summary.acked).toBe(summary.sent.total);
    const got = fromDevices();
    expect(got.filter((r) => r.topic.endsWith('/telemetry')).every((r) => r.qos === 0)).toBe(true);
    expect(got.filter((r) => r.topic.endsWith('/status')).every((r) => r.qos === 1 && r.retain)).toBe(true);
  });

  it('keeps the number of unacknowledged messages under the cap', async () => {
    broker.ackDelayMs = 1;
    let peak = 0;
    const { fleet } = setup({
      fleet: fleetFromFlags({ devices: 5, model: 'RV-200', seed: 't6' }),
      durationMs: HOUR,
      speed: Number.POSITIVE_INFINITY,
      extra: {
        maxInflight: 25,
        hooks: {
          onSend: () => {
            peak = Math.max(peak, fleet.stats.inflight);
          },
        },
      },
    });
    await fleet.start();
    const summary = await fleet.finished;
    expect(summary.sent.total).toBeGreaterThan(5 * 700);
    expect(summary.acked).toBe(summary.sent.total);
    // As fast as acknowledgements allow, and never further ahead of them than the cap.
    expect(peak).toBe(25);
  });

  it('retries a connect attempt that gets no CONNACK, within the connect timeout', async () => {
    // In front of the broker: the first connection is accepted and never answered (a handshake lost
    // to a full listen queue looks like this to the device); later ones are passed through.
    const held: Socket[] = [];
    let accepted = 0;
    const front = createServer((socket) => {
      if (accepted++ === 0) {
        held.push(socket);
        socket.on('error', () => undefined);
        return;
      }
      const upstream = tcpConnect(broker.port, '127.0.0.1');
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    const port = (front.address() as { port: number }).port;
    try {
      const { fleet } = setup({
        fleet: fleetFromFlags({ devices: 1, model: 'RV-200', seed: 't7' }),
        durationMs: 10 * MIN,
        extra: { brokerUrl: `mqtt://127.0.0.1:${port}`, connectTimeoutMs: 20_000, connectAttemptMs: 300 },
      });
      await fleet.start();
      const summary = await fleet.finished;
      expect(accepted).toBeGreaterThanOrEqual(2);
      expect(summary.connectFailures).toBe(0);
      expect(summary.connects).toBe(1);
      expect(summary.acked).toBe(summary.sent.total);
    } finally {
      for (const s of held) s.destroy();
      await new Promise((resolve) => front.close(resolve));
    }
  });
});
