/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
// Callbacks passed to page.evaluate run in the browser, with its globals.
/**
 * The evidence chart with InfluxDB configured: history around the anomaly, so the
 * chart shows the metric before the rule started to pend, the crossing, the
 * firing span and its end when the unit cooled down. Real influxd, real MQTT.
 */
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RuleFired, RuleResolved } from '../../src/rules/types.js';
import { ADMIN_TOKEN, startBridge, type TestBridge } from '../helpers/bridge.js';
import { type Influxd, startInfluxd } from '../helpers/influxd.js';
import { until } from '../helpers/net.js';
import { caughtUp } from '../influx/support.js';
import { ensureWebBuilt } from './build.js';
import { artifact, type Browser, launchBrowser, RULE_ID, rulesDir, signIn } from './harness.js';

const DEVICE = 'desk-ac-influx';

let influxd: Influxd;
let bridge: TestBridge;
let browser: Browser;
let rules: { path: string; remove(): void };
let client: MqttClient;
const fired: RuleFired[] = [];
const resolved: RuleResolved[] = [];

beforeAll(async () => {
  await ensureWebBuilt();
  influxd = await startInfluxd();
  rules = rulesDir();
  bridge = await startBridge({
    rules: { paths: [rules.path] },
    influx: { url: influxd.url, database: 'desk', flushIntervalMs: 20 },
  });
  bridge.app.bus.on('rule.fired', 'test', (e) => {
    fired.push(e);
  });
  bridge.app.bus.on('rule.resolved', 'test', (e) => {
    resolved.push(e);
  });
  client = await bridge.connect(
    DEVICE,
    await bridge.addDevice(DEVICE, { model: 'AC-9000', region: 'cn-south' }),
  );
  browser = await launchBrowser();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await bridge?.stop();
  await influxd?.stop();
  rules?.remove();
});

describe('evidence chart from InfluxDB history', () => {
  it('shows the metric before, during and after the anomaly with the threshold and both spans', async () => {
    let seq = 0;
    // One sample per 200 ms, like the device's own cadence; the phases end on what the bridge did.
    const sample = async (temp: number) => {
      await client.publishAsync(
        `devices/${DEVICE}/telemetry`,
        JSON.stringify({
          ts: Date.now(),
          seq: ++seq,
          metrics: { compressor_temp: temp, compressor_freq: 62 },
        }),
        { qos: 1 },
      );
      await new Promise((r) => setTimeout(r, 200));
    };
    for (let i = 0; i < 15; i++) await sample(86 + 1.5 * Math.sin(i / 2));
    for (let temp = 88; fired.length === 0; temp = Math.min(97.5, temp + 1.5)) await sample(temp);
    for (let i = 0; i < 8; i++) await sample(97.5 - (i % 2) * 0.4);
    for (let temp = 92; resolved.length === 0; temp = Math.max(84, temp - 2)) await sample(temp);
    for (let i = 0; i < 6; i++) await sample(84 + i * 0.3);
    await caughtUp(bridge);

    const ticket = await until('the ticket to show the recovery', async () => {
      const page = (await (await bridge.api(`/api/v1/tickets?rule=${RULE_ID}`)).json()) as {
        items: Array<{ id: string; status: string }>;
      };
      return page.items.find((t) => t.status === 'recovered');
    });

    const page = await browser.page();
    await signIn(page, bridge.addresses.http, ADMIN_TOKEN, `/desk/tickets/${ticket.id}`);
    const chart = page.locator('[data-testid=evidence-chart]');
    await chart.waitFor({ timeout: 30_000 });
    expect(await chart.getAttribute('data-source')).toBe('influx');
    expect(await chart.locator('[data-testid=chart-source]').textContent()).toMatch(
      /^InfluxDB history, \d+s steps$/,
    );

    const g = await chart.evaluate((fig) => {
      const num = (el: Element | null, attr: string) => Number(el?.getAttribute(attr));
      const threshold = num(fig.querySelector('[data-testid=threshold] line'), 'y1');
      const dots = [...fig.querySelectorAll('circle.series-dot')].map((c) => ({
        x: num(c, 'cx'),
        y: num(c, 'cy'),
      }));
      const pending = fig.querySelector('[data-testid=span-pending] rect');
      const firing = fig.querySelector('[data-testid=span-firing] rect');
      const plot = fig.querySelector('rect.plot-bg');
      return {
        threshold,
        dots,
        pendingX: num(pending, 'x'),
        firingX: num(firing, 'x'),
        firingEnd: num(firing, 'x') + num(firing, 'width'),
        plotEnd: num(plot, 'x') + num(plot, 'width'),
      };
    });
    // Below the threshold before the pending span, above it while firing, below again at the end.
    // The last step before the span may straddle its start, and its mean with it.
    const before = g.dots.filter((d) => d.x < g.pendingX).slice(0, -1);
    const during = g.dots.filter((d) => d.x > g.firingX && d.x < g.firingEnd);
    const after = g.dots.filter((d) => d.x > g.firingEnd);
    expect(before.length).toBeGreaterThan(0);
    expect(before.every((d) => d.y > g.threshold)).toBe(true);
    expect(during.some((d) => d.y < g.threshold)).toBe(true);
    expect(after.length).toBeGreaterThan(0);
    expect(after.at(-1)!.y).toBeGreaterThan(g.threshold);
    expect(g.firingEnd).toBeLessThan(g.plotEnd);

    await page.locator('[data-testid=timeline] li[data-kind="rule.resolved"]').waitFor();
    await chart.screenshot({ path: artifact('ticket-chart.png') });
    expect(browser.errors).toEqual([]);
  }, 120_000);
});
