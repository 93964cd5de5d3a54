/**
 * External-broker mode against a real Mosquitto: Faultline publishes the guide
 * to the owner's topic there and reads receipts from a shared subscription.
 * Who may subscribe to what is then Mosquitto's ACL (this one allows all).
 */
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InAppMessage } from '../../src/push/service.js';
import { startBridge, type TestBridge } from '../helpers/bridge.js';
import { type Mosquitto, startMosquitto } from '../helpers/mosquitto.js';
import { until } from '../helpers/net.js';
import { fired } from '../tickets/fixtures.js';

let broker: Mosquitto;
let bridge: TestBridge;
let app: MqttClient;
const received: InAppMessage[] = [];

beforeAll(async () => {
  broker = await startMosquitto();
  bridge = await startBridge({
    mqtt: {
      mode: 'external',
      wsPort: null,
      external: { url: broker.url, clientId: 'faultline-push-test', connections: 1 },
    },
    push: { quietHours: 'off' },
  });
  await bridge.app.parts.push.owners.add({ id: 'o-ext', secret: 'o-ext-secret-0123456789', locale: 'zh-CN' });
  app = await mqtt.connectAsync(broker.url, {
    clientId: 'owner:o-ext:phone',
    clean: false,
    reconnectPeriod: 0,
  });
  app.on('message', (_t, payload) => received.push(JSON.parse(payload.toString()) as InAppMessage));
  await app.subscribeAsync('owners/o-ext/notifications', { qos: 1 });
}, 60_000);

afterAll(async () => {
  await app?.endAsync(true);
  await bridge?.stop();
  await broker?.stop();
});

describe('owner push through an external broker', () => {
  it('delivers the guide through Mosquitto and takes the receipt back from it', async () => {
    const e = fired({
      ruleId: 'ac-fan-stall',
      deviceId: 'ext-ac-1',
      owner: 'o-ext',
      actions: { ticket: true, guide: 'ac-fan-stall', autoClose: false },
    });
    bridge.app.bus.emit('rule.fired', e);
    const m = await until('guide via mosquitto', () => received[0]);
    expect(m).toMatchObject({
      kind: 'guide',
      locale: 'zh-CN',
      title: '室内风扇停转',
      collapseKey: e.fingerprint,
    });
    await app.publishAsync(
      'owners/o-ext/receipts',
      JSON.stringify({ notification: m.id, status: 'opened' }),
      { qos: 1 },
    );
    const ticketId = m.ticketId!;
    const receipt = await until('receipt on the ticket', async () => {
      const d = await bridge.app.parts.tickets.service.detail(ticketId);
      return d?.timeline.find((x) => x.data.kind === 'owner_receipt');
    });
    expect(receipt).toMatchObject({ actor: 'owner:o-ext', data: { receipt: 'opened' } });
  });
});
