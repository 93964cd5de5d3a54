/**
 * End to end with nothing emitted by hand: a device reports over MQTT, a rule
 * (seconds, not minutes, so its timer fires within the test) fires, a ticket
 * opens, and the owner's app on the WebSocket port gets the guide the rule
 * names, in zh-CN.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InAppMessage } from '../../src/push/service.js';
import { startBridge, type TestBridge } from '../helpers/bridge.js';
import { tempDir } from '../helpers/process.js';

const RULES = `apiVersion: faultline/v1
rules:
  - id: e2e-fan-stall
    title: "Indoor fan stalled on {{device.id}}"
    description: "fan_rpm 0 for {{duration}} while on"
    scope: { models: "AC-*" }
    severity: major
    actions: { ticket: true, guide: ac-fan-stall, autoClose: false }
    when:
      threshold: { metric: fan_rpm, op: "==", value: 0 }
    gate:
      threshold: { metric: mode, op: "!=", value: "off" }
    for: 1s
`;

let bridge: TestBridge;
let rulesDir: { path: string; remove(): void };
let app: MqttClient;

beforeAll(async () => {
  rulesDir = tempDir('push-rules');
  mkdirSync(rulesDir.path, { recursive: true });
  writeFileSync(join(rulesDir.path, 'e2e.yaml'), RULES);
  bridge = await startBridge({ rules: { paths: [rulesDir.path] }, push: { quietHours: 'off' } });
  await bridge.app.parts.push.owners.add({ id: 'o-e2e', secret: 'o-e2e-secret-0123456789', locale: 'zh-CN' });
});

afterAll(async () => {
  await app?.endAsync(true);
  await bridge?.stop();
  rulesDir?.remove();
});

describe('from telemetry to the guide on the phone', () => {
  it('delivers the guide a rule names when real telemetry opens the ticket', async () => {
    const received: InAppMessage[] = [];
    app = await mqtt.connectAsync(bridge.wsUrl, {
      clientId: 'owner:o-e2e:phone',
      username: 'owner:o-e2e',
      password: 'o-e2e-secret-0123456789',
      clean: false,
      reconnectPeriod: 0,
    });
    app.on('message', (_t, payload) => received.push(JSON.parse(payload.toString()) as InAppMessage));
    await app.subscribeAsync('owners/o-e2e/notifications', { qos: 1 });

    const id = 'ac-e2e-1';
    const device = await bridge.connect(
      id,
      await bridge.addDevice(id, { ownerId: 'o-e2e', ownerLocale: 'zh-CN' }),
    );
    let seq = 0;
    while (received.length === 0) {
      await device.publishAsync(
        `devices/${id}/telemetry`,
        JSON.stringify({ ts: Date.now(), seq: ++seq, metrics: { fan_rpm: 0, mode: 'cool' } }),
        { qos: 1 },
      );
      await new Promise((r) => setTimeout(r, 200));
      expect(seq, 'samples sent before the guide arrived').toBeLessThan(150);
    }
    const ticket = (await bridge.app.parts.tickets.service.findOpen(`e2e-fan-stall:${id}`))!;
    expect(received[0]).toMatchObject({
      kind: 'guide',
      ticketId: ticket.id,
      deviceId: id,
      locale: 'zh-CN',
      title: '室内风扇停转',
      signal: 'CAUTION',
      guide: { id: 'ac-fan-stall', locale: 'zh-CN' },
    });
  });
});
