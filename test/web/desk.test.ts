/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
// Callbacks passed to page.evaluate run in the browser, with its globals.
/**
 * The service desk page in headless Chromium against a running bridge: a real
 * rule fires on real MQTT telemetry and the queue shows the ticket live; the
 * ticket page charts the evidence; actions go through the API with the signed-in
 * token; what a role may not do is absent from the page and refused by the API.
 */
import type { MqttClient } from 'mqtt';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TicketDetail } from '../../src/tickets/model.js';
import { ADMIN_TOKEN, startBridge, type TestBridge } from '../helpers/bridge.js';
import { ensureWebBuilt } from './build.js';
import {
  artifact,
  type Browser,
  DESK_TOKENS,
  ENGINEER_TOKEN,
  heat,
  launchBrowser,
  RULE_ID,
  rulesDir,
  STAFF_TOKEN,
  signIn,
} from './harness.js';

const DEVICE = 'desk-ac-1';
const LONG = 90_000;

let bridge: TestBridge;
let browser: Browser;
let rules: { path: string; remove(): void };
let client: MqttClient;
let base: string;
let admin: Page;
let staff: Page;
let ticketId = '';

beforeAll(async () => {
  await ensureWebBuilt();
  rules = rulesDir();
  bridge = await startBridge({ rules: { paths: [rules.path] }, http: { tokens: DESK_TOKENS } });
  base = bridge.addresses.http;
  client = await bridge.connect(
    DEVICE,
    await bridge.addDevice(DEVICE, { model: 'AC-9000', region: 'cn-east' }),
  );
  browser = await launchBrowser();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await bridge?.stop();
  rules?.remove();
});

async function ticketFromApi(id: string): Promise<TicketDetail> {
  const res = await bridge.api(`/api/v1/tickets/${id}`);
  expect(res.status).toBe(200);
  return (await res.json()) as TicketDetail;
}

async function statusOptions(page: Page): Promise<string[]> {
  return page
    .locator('[data-testid=action-status] option')
    .evaluateAll((options) => options.map((o) => (o as HTMLOptionElement).value).filter(Boolean));
}

describe('service desk in the browser', () => {
  it(
    'shows a ticket in the queue as soon as the rule fires, without a reload',
    async () => {
      admin = await browser.page();
      await signIn(admin, base, ADMIN_TOKEN);
      await admin.locator('[data-testid=queue]').waitFor();
      await admin.locator('[data-testid=live][data-state=live]').waitFor();
      expect(await admin.locator(`tr[data-device="${DEVICE}"]`).count()).toBe(0);
      expect(await admin.locator('[data-testid=count-open] .count').textContent()).toBe('0');
      // Survives only as long as the document does: a reload or navigation would drop it.
      await admin.evaluate(() => {
        (window as unknown as { sameDocument: boolean }).sameDocument = true;
      });

      const heating = heat(client, DEVICE);
      try {
        await admin.locator(`tr[data-device="${DEVICE}"]`).waitFor({ timeout: 60_000 });
      } finally {
        heating.stop();
        await heating.done;
      }
      expect(await admin.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument)).toBe(
        true,
      );

      const row = admin.locator(`tr[data-device="${DEVICE}"]`);
      ticketId = (await row.getAttribute('data-ticket')) ?? '';
      const api = (await (await bridge.api(`/api/v1/tickets?rule=${RULE_ID}`)).json()) as {
        items: Array<{ id: string; priority: string }>;
      };
      expect(api.items.map((t) => t.id)).toEqual([ticketId]);
      const text = await row.textContent();
      expect(text).toContain('P2');
      expect(text).toContain('Compressor overheating on desk-ac-1');
      expect(text).toContain('Open');
      expect(await row.locator('.tag-new').count()).toBe(1);
      await admin.locator('[data-testid=count-open] .count', { hasText: /^1$/ }).waitFor();
      await admin.screenshot({ path: artifact('queue.png') });
      expect(browser.errors).toEqual([]);
    },
    LONG,
  );

  it(
    'charts the evidence on the ticket page: the metric, the threshold, the pending and firing spans',
    async () => {
      await admin.locator(`tr[data-device="${DEVICE}"] a`).click();
      await admin.waitForURL(`${base}/desk/tickets/${ticketId}`);
      const chart = admin.locator('[data-testid=evidence-chart]');
      await chart.waitFor();
      // No InfluxDB configured: the ticket's own evidence samples.
      expect(await chart.getAttribute('data-source')).toBe('evidence');
      expect(Number(await chart.getAttribute('data-points'))).toBeGreaterThanOrEqual(3);
      expect(await chart.locator('[data-testid=threshold]').textContent()).toContain('threshold 95');
      expect(await chart.locator('[data-testid=span-pending] rect').count()).toBe(1);
      expect(await chart.locator('[data-testid=span-firing] rect').count()).toBe(1);
      const d = (await chart.locator('[data-testid=series]').getAttribute('d')) ?? '';
      expect(d.split('L').length).toBeGreaterThanOrEqual(3);
      // Every evidence sample is above the threshold, so the line is drawn above the threshold line.
      const geometry = await chart.evaluate((fig) => {
        const y = (el: Element | null) => Number(el?.getAttribute('y1') ?? el?.getAttribute('cy'));
        const threshold = y(fig.querySelector('[data-testid=threshold] line'));
        const dots = [...fig.querySelectorAll('circle.series-dot')].map((c) => y(c));
        return { threshold, dots };
      });
      expect(geometry.dots.length).toBeGreaterThan(0);
      expect(geometry.dots.every((cy) => cy < geometry.threshold)).toBe(true);

      const page = await admin.locator('[data-testid=ticket]').textContent();
      expect(page).toContain(DEVICE);
      expect(page).toContain('cn-east');
      expect(page).toContain(`owner-${DEVICE}`);
      expect(await admin.locator('[data-testid=timeline] li[data-kind="ticket.opened"]').count()).toBe(1);
      expect(await admin.locator('[data-testid=guide]').textContent()).toContain('No guide has been sent');
      await chart.screenshot({ path: artifact('ticket-chart-evidence.png') });
      await admin.screenshot({ path: artifact('ticket-page.png'), fullPage: true });
      expect(browser.errors).toEqual([]);
    },
    LONG,
  );

  it(
    'acknowledges from the page as staff, and the API shows the change',
    async () => {
      staff = await browser.page();
      await signIn(staff, base, STAFF_TOKEN, `/desk/tickets/${ticketId}`);
      await staff.locator('[data-testid=ticket][data-status=open]').waitFor();
      await staff.locator('[data-testid=action-acknowledge]').click();
      await staff.locator('[data-testid=ticket][data-status=acknowledged]').waitFor();

      const t = await ticketFromApi(ticketId);
      expect(t.status).toBe('acknowledged');
      expect(t.acknowledgedAt).not.toBeNull();
      expect(t.timeline.filter((e) => e.kind === 'status.changed').at(-1)).toMatchObject({
        actor: 'service-desk',
        data: { from: 'open', to: 'acknowledged' },
      });
      // The admin's page, open on the same ticket, follows over the live stream.
      await admin.locator('[data-testid=ticket][data-status=acknowledged]').waitFor();
      expect(browser.errors).toEqual([]);
    },
    LONG,
  );

  it(
    'assigns and comments from the page, through the API',
    async () => {
      await staff.locator('button', { hasText: 'Assign to me' }).click();
      await staff.locator('[data-testid=assignee]', { hasText: 'service-desk' }).waitFor();
      await staff.locator('[data-testid=action-comment]').fill('Outdoor fan draws no current.');
      await staff.locator('[data-testid=action-comment-add]').click();
      await staff
        .locator('[data-testid=comments] li', { hasText: 'Outdoor fan draws no current.' })
        .waitFor();

      const t = await ticketFromApi(ticketId);
      expect(t.assignee).toBe('service-desk');
      expect(t.comments.map((c) => [c.actor, c.text])).toEqual([
        ['service-desk', 'Outdoor fan draws no current.'],
      ]);
      expect(browser.errors).toEqual([]);
    },
    LONG,
  );

  it(
    'keeps admin actions from staff: the controls are absent and a forced call is refused',
    async () => {
      // The admin sees closing without a fix (admin only from acknowledged); staff does not.
      await admin.reload();
      await admin.locator('[data-testid=action-status]').waitFor();
      expect(await statusOptions(admin)).toContain('closed');
      await staff.reload();
      await staff.locator('[data-testid=action-status]').waitFor();
      const staffOptions = await statusOptions(staff);
      expect(staffOptions).toContain('in_progress');
      expect(staffOptions).not.toContain('closed');

      const forced = await staff.evaluate(
        async ({ id, device }) => {
          const headers = {
            authorization: `Bearer ${sessionStorage.getItem('faultline.token')}`,
            'content-type': 'application/json',
          };
          const call = async (path: string, body?: unknown) => {
            const res = await fetch(path, {
              method: 'POST',
              headers,
              ...(body === undefined ? {} : { body: JSON.stringify(body) }),
            });
            return {
              status: res.status,
              code: ((await res.json()) as { error?: { code: string } }).error?.code,
            };
          };
          return {
            close: await call(`/api/v1/tickets/${id}/status`, { status: 'closed' }),
            disable: await call(`/api/v1/devices/${device}/disable`),
          };
        },
        { id: ticketId, device: DEVICE },
      );
      expect(forced.close).toEqual({ status: 403, code: 'FL_FORBIDDEN' });
      expect(forced.disable).toEqual({ status: 403, code: 'FL_FORBIDDEN' });
      expect((await ticketFromApi(ticketId)).status).toBe('acknowledged');

      // An engineer reads and comments, and changes nothing.
      const engineer = await browser.page();
      await signIn(engineer, base, ENGINEER_TOKEN, `/desk/tickets/${ticketId}`);
      await engineer.locator('[data-testid=action-comment]').waitFor();
      expect(await engineer.locator('[data-testid=action-acknowledge]').count()).toBe(0);
      expect(await engineer.locator('[data-testid=action-status]').count()).toBe(0);
      expect(await engineer.locator('[data-testid=action-assignee]').count()).toBe(0);
      expect(await engineer.locator('[data-testid=actions]').textContent()).toContain(
        'may comment but not change',
      );
      await engineer.close();
      expect(browser.errors).toEqual([]);
    },
    LONG,
  );

  it(
    'shows the fleet (devices online, tickets by rule over time) and the loaded rules',
    async () => {
      await admin.locator('header nav a', { hasText: 'Fleet' }).click();
      await admin.locator('[data-testid=fleet-devices]').waitFor();
      expect(await admin.locator('[data-testid=devices-online] .value').textContent()).toBe('1');
      await admin.locator('[data-testid=trend-rule] figcaption', { hasText: RULE_ID }).waitFor();
      expect(await admin.locator('[data-testid=trend-rule] rect').count()).toBeGreaterThan(0);
      expect(await admin.locator('[data-testid=open-rule]').textContent()).toContain(RULE_ID);
      expect(await admin.locator('[data-testid=fleet-figures]').textContent()).toContain('Tickets opened');
      await admin.screenshot({ path: artifact('fleet.png'), fullPage: true });

      await admin.locator('header nav a', { hasText: 'Rules' }).click();
      const rule = admin.locator(`[data-testid=rules] tr[data-rule="${RULE_ID}"]`);
      await rule.waitFor();
      expect(await rule.locator('[data-testid=rule-firing]').textContent()).toBe('1');
      expect(browser.errors).toEqual([]);
    },
    LONG,
  );

  it(
    'keeps the token while the bridge is unreachable, and forgets one the bridge refuses',
    async () => {
      const page = await browser.page();
      await signIn(page, base, STAFF_TOKEN);
      await page.route('**/api/v1/me', (route) => route.abort('connectionrefused'));
      await page.reload();
      await page.locator('[role=alert]', { hasText: 'Cannot reach Faultline' }).waitFor();
      expect(await page.evaluate(() => sessionStorage.getItem('faultline.token'))).toBe(STAFF_TOKEN);
      await page.unroute('**/api/v1/me');
      await page.locator('button', { hasText: 'Retry' }).click();
      await page.locator('[data-testid=who][data-role=staff]').waitFor();

      await page.evaluate(() => sessionStorage.setItem('faultline.token', 'revoked-token-0123456789abcdef'));
      await page.reload();
      await page.locator('form[data-testid=login]').waitFor();
      expect(await page.evaluate(() => sessionStorage.getItem('faultline.token'))).toBeNull();
      await page.close();
      expect(browser.errors).toEqual([]);
    },
    LONG,
  );

  it(
    'speaks Chinese when the browser does, and switches language with the toggle',
    async () => {
      const zh = await browser.page();
      await zh.addInitScript(() => {
        Object.defineProperty(navigator, 'language', { get: () => 'zh-CN' });
      });
      await zh.goto(`${base}/desk/`);
      await zh.locator('form[data-testid=login] button[type=submit]', { hasText: '登录' }).waitFor();
      await signIn(zh, base, STAFF_TOKEN);
      await zh.locator('header nav a', { hasText: '工单队列' }).waitFor();
      expect(await zh.evaluate(() => document.documentElement.lang)).toBe('zh-CN');
      expect(await zh.locator('[data-testid=count-acknowledged]').textContent()).toContain('已确认');

      await zh.locator('[data-testid=locale-toggle]').click();
      await zh.locator('header nav a', { hasText: 'Queue' }).waitFor();
      expect(await zh.evaluate(() => document.documentElement.lang)).toBe('en-GB');
      await zh.close();
      expect(browser.errors).toEqual([]);
    },
    LONG,
  );
});
