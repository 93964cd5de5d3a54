/**
 * The guide the owner got, on the ticket page: a real rule fires on MQTT
 * telemetry, the bridge pushes the guide to the registered owner, the owner's app
 * reports receipts over its HTTP API, and staff see what was sent, when it was
 * delivered and opened, and what the owner said.
 */
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RuleFired } from '../../src/rules/types.js';
import { ADMIN_TOKEN, startBridge, type TestBridge } from '../helpers/bridge.js';
import { until } from '../helpers/net.js';
import { ensureWebBuilt } from './build.js';
import {
  artifact,
  type Browser,
  DESK_TOKENS,
  heat,
  launchBrowser,
  rulesDir,
  STAFF_TOKEN,
  signIn,
} from './harness.js';

const DEVICE = 'desk-ac-guide';
const OWNER = 'desk-owner-1';
const OWNER_SECRET = 'desk-owner-secret-0123456789';

let bridge: TestBridge;
let browser: Browser;
let rules: { path: string; remove(): void };
let client: MqttClient;
const fired: RuleFired[] = [];

beforeAll(async () => {
  await ensureWebBuilt();
  rules = rulesDir('ac-compressor-overheat');
  bridge = await startBridge({
    rules: { paths: [rules.path] },
    http: { tokens: DESK_TOKENS },
    push: { quietHours: 'off' },
  });
  bridge.app.bus.on('rule.fired', 'test', (e) => {
    fired.push(e);
  });
  const owner = await bridge.api('/api/v1/owners', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ id: OWNER, secret: OWNER_SECRET, locale: 'zh-CN' }),
  });
  expect(owner.status, await owner.text()).toBe(201);
  const secret = await bridge.addDevice(DEVICE, { model: 'AC-9000', ownerId: OWNER, ownerLocale: 'zh-CN' });
  client = await bridge.connect(DEVICE, secret);
  browser = await launchBrowser();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await bridge?.stop();
  rules?.remove();
});

interface Notification {
  id: string;
  status: string;
  deliveredAt: string | null;
  openedAt: string | null;
  outcome: string | null;
}

describe('guide and receipts on the ticket page', () => {
  it('shows the guide sent to the owner, its delivery, opening and the answer', async () => {
    const heating = heat(client, DEVICE);
    try {
      await until('the rule to fire', () => fired.length > 0, 60_000);
    } finally {
      heating.stop();
      await heating.done;
    }
    const ticket = await until('the ticket', () =>
      bridge.app.parts.tickets.service.findOpen(fired[0]!.fingerprint),
    );
    const sent = await until('the guide to be sent', async () => {
      const res = await bridge.api(`/api/v1/notifications?ticketId=${ticket.id}`);
      const { items } = (await res.json()) as { items: Notification[] };
      return items.find((n) => n.status === 'sent');
    });

    // The owner's app: delivered, opened, then "that did not fix it".
    for (const status of ['delivered', 'opened', 'not_fixed']) {
      const res = await fetch(`${bridge.addresses.http}/app/v1/notifications/${sent.id}/receipts`, {
        method: 'POST',
        headers: {
          authorization: `Basic ${Buffer.from(`owner:${OWNER}:${OWNER_SECRET}`).toString('base64')}`,
          'content-type': 'application/json',
        },
        body: JSON.stringify({ status }),
      });
      expect(res.status, await res.text()).toBe(200);
    }

    const page = await browser.page();
    await signIn(page, bridge.addresses.http, STAFF_TOKEN, `/desk/tickets/${ticket.id}`);
    const guide = page.locator('[data-testid=guide]');
    // The title is the guide's, in the owner's language.
    await guide.locator('li', { hasText: '室外机温度过高' }).waitFor();
    const text = (await guide.textContent()) ?? '';
    expect(text).toContain('Delivered');
    expect(text).toContain('Opened');
    expect(text).toMatch(/Owner says\s*not fixed/);
    expect(text).not.toContain('No guide has been sent');
    await page
      .locator('[data-testid=timeline] li[data-kind="guide.sent"]', { hasText: 'Guide sent to the owner' })
      .waitFor();
    await page
      .locator('[data-testid=timeline] li[data-kind="link.added"]', {
        hasText: 'Owner: the guide did not fix it',
      })
      .waitFor();
    // "Not fixed" raised the priority, and the page shows it.
    expect(await page.locator('.ticket-head .prio').textContent()).toBe('P1');
    await page.screenshot({ path: artifact('ticket-guide.png'), fullPage: true });

    // The fleet page counts the answer.
    const admin = await browser.page();
    await signIn(admin, bridge.addresses.http, ADMIN_TOKEN, '/desk/fleet');
    await admin.locator('[data-testid=fleet-figures]', { hasText: '0 of 1 receipts' }).waitFor();
    expect(browser.errors).toEqual([]);
  }, 120_000);
});
