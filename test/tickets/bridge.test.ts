/**
 * Tickets inside a running bridge: an air conditioner overheating over real MQTT
 * messages, through the rule engine, to one ticket with evidence that the API
 * shows, a signed webhook, the live stream and /metrics. Rule durations are
 * seconds so the timers fire within a test.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RuleFired } from '../../src/rules/types.js';
import type { Ticket, TicketDetail } from '../../src/tickets/model.js';
import { verify } from '../../src/webhooks/signature.js';
import { startBridge, type TestBridge } from '../helpers/bridge.js';
import { until } from '../helpers/net.js';
import { tempDir } from '../helpers/process.js';
import { type Receiver, startReceiver } from '../webhooks/receiver.js';
import { fired as firedEvent } from './fixtures.js';

const RULES = `apiVersion: faultline/v1
rules:
  - id: e2e-ac-overheat
    title: "Compressor overheating on {{device.id}} ({{value}} °C)"
    description: "compressor_temp above {{params.threshold}} °C for {{duration}} while running"
    scope: { models: "AC-*" }
    severity: major
    category: hardware_fault
    actions: { ticket: true, guide: false, autoClose: false }
    params: { threshold: 95, clearBelow: 90 }
    when:
      threshold: { metric: compressor_temp, op: ">", value: $threshold }
    gate:
      threshold: { metric: compressor_freq, op: ">", value: 0 }
    for: 2s
    clear:
      when:
        threshold: { metric: compressor_temp, op: "<", value: $clearBelow }
      for: 1s
`;

const SECRET = 'helpdesk-secret-0123456789';
const STAFF_TOKEN = 'staff-token-0123456789abcdef';

let bridge: TestBridge;
let rx: Receiver;
let rulesDir: { path: string; remove(): void };
const fired: RuleFired[] = [];

beforeAll(async () => {
  rx = await startReceiver();
  rulesDir = tempDir('ticket-rules');
  mkdirSync(rulesDir.path, { recursive: true });
  writeFileSync(join(rulesDir.path, 'ac.yaml'), RULES);
  bridge = await startBridge({
    rules: { paths: [rulesDir.path] },
    http: { tokens: [{ name: 'service-desk', token: STAFF_TOKEN, role: 'staff' }] },
    tickets: {
      receivers: [{ name: 'helpdesk', url: rx.url('/helpdesk'), secret: SECRET }],
      delivery: { pollMs: 50 },
    },
  });
  bridge.app.bus.on('rule.fired', 'test', (e) => {
    fired.push(e);
  });
});

afterAll(async () => {
  await bridge?.stop();
  await rx?.close();
  rulesDir?.remove();
});

async function json<T>(path: string): Promise<T> {
  const res = await bridge.api(path);
  expect(res.status).toBe(200);
  return (await res.json()) as T;
}

/** A unit whose compressor heats up past the threshold and stays there, one sample every 200 ms. */
async function overheat(client: MqttClient, id: string, stopWhen: () => boolean, from = 88): Promise<number> {
  let seq = 0;
  let temp = from;
  while (!stopWhen()) {
    temp = Math.min(97.5, temp + 1.5);
    await client.publishAsync(
      `devices/${id}/telemetry`,
      JSON.stringify({
        ts: Date.now(),
        seq: ++seq,
        metrics: { compressor_temp: temp, compressor_freq: 62, mode: 'cool' },
      }),
      { qos: 1 },
    );
    await new Promise((r) => setTimeout(r, 200));
  }
  return seq;
}

describe('tickets in the running bridge', () => {
  it('turns an overheating air conditioner into one ticket with evidence, visible through the API once the rule fired', async () => {
    const id = 'e2e-ac-1';
    const client = await bridge.connect(
      id,
      await bridge.addDevice(id, { model: 'AC-9000', region: 'cn-east' }),
    );
    const mine = () => fired.filter((e) => e.device.id === id);
    let seq = await overheat(client, id, () => mine().length > 0);
    const firedAt = Date.now();
    // The ticket is written by the bus listener itself: once the rule's listeners settle, it is in
    // the database, with no polling or batching in between.
    await bridge.app.bus.idle();
    const page = await json<{ items: Ticket[] }>('/api/v1/tickets?rule=e2e-ac-overheat');
    const visibleMs = Date.now() - firedAt;
    expect(page.items).toHaveLength(1);
    const ticket = page.items[0]!;
    expect(ticket).toMatchObject({
      fingerprint: `e2e-ac-overheat:${id}`,
      status: 'open',
      priority: 'P2',
      device: { id, model: 'AC-9000', region: 'cn-east' },
      owner: { id: `owner-${id}`, locale: 'zh-CN' },
    });
    expect(ticket.title).toMatch(/^Compressor overheating on e2e-ac-1 \(9\d(\.\d)? °C\)$/);
    const detail = await json<TicketDetail>(`/api/v1/tickets/${ticket.id}`);
    const samples = detail.occurrenceList[0]!.evidence.samples;
    expect(samples.length).toBeGreaterThan(0);
    expect(samples.every((s) => Number(s.metrics.compressor_temp) > 95)).toBe(true);
    console.log(`e2e: ticket ${ticket.id} visible through the API ${visibleMs} ms after rule.fired`);

    // Still hot: more samples, still one ticket.
    const more = seq + 5;
    seq = await overheat(client, id, () => seq++ >= more, 97);
    expect((await json<{ items: Ticket[] }>('/api/v1/tickets?rule=e2e-ac-overheat')).items).toHaveLength(1);

    // The helpdesk got it, signed, once.
    await until('the helpdesk webhook', () =>
      rx.on('/helpdesk').some((r) => r.headers['x-faultline-event'] === 'ticket.opened'),
    );
    const hook = rx.on('/helpdesk').find((r) => r.headers['x-faultline-event'] === 'ticket.opened')!;
    expect(verify(SECRET, hook.headers['x-faultline-signature'] as string, hook.body)).toBe(true);
    expect(JSON.parse(hook.body)).toMatchObject({
      ticket: { id: ticket.id, externalKey: ticket.fingerprint },
    });

    // Cooling down clears the rule and the ticket is marked recovered.
    let cool = 0;
    await until(
      'the ticket to recover',
      async () => {
        await client.publishAsync(
          `devices/${id}/telemetry`,
          JSON.stringify({
            ts: Date.now(),
            seq: ++seq,
            metrics: { compressor_temp: 80 - cool++, compressor_freq: 40 },
          }),
          { qos: 1 },
        );
        const t = await json<Ticket>(`/api/v1/tickets/${ticket.id}`);
        return t.status === 'recovered';
      },
      15_000,
    );
  });

  it('opens tickets from rule events on the bus, shows them on /metrics, and runs the scheduled checks', async () => {
    const e = firedEvent({ ruleId: 'bus-rule', deviceId: 'bus-dev-1', safety: true });
    bridge.app.bus.emit('rule.fired', e);
    await bridge.app.bus.idle();
    const [t] = (await json<{ items: Ticket[] }>('/api/v1/tickets?rule=bus-rule')).items;
    expect(t).toMatchObject({ priority: 'P1', safety: true });
    const metrics = await (await fetch(`${bridge.addresses.http}/metrics`)).text();
    expect(metrics).toMatch(
      /faultline_tickets_open\{rule="bus-rule",model="AC-9000",team="service-desk",priority="P1"\} 1/,
    );
    expect(metrics).toMatch(/faultline_tickets_opened_total\{priority="P1",team="service-desk"\} 1/);
    expect(metrics).toMatch(/faultline_oncall_pages_total 1/);
    // What the cron job runs; a fresh P1 is within its 30-minute target.
    await bridge.app.parts.tickets.runChecks();
    const after = await json<Ticket>(`/api/v1/tickets/${t!.id}`);
    expect(after.sla.responseBreachedAt).toBeNull();
    expect(Date.parse(after.sla.responseDueAt) - Date.parse(after.openedAt)).toBe(30 * 60_000);
  });

  it('accepts a staff token on the stream query string', async () => {
    const ctl = new AbortController();
    const res = await fetch(`${bridge.addresses.http}/api/v1/tickets/stream?token=${STAFF_TOKEN}`, {
      signal: ctl.signal,
    });
    expect(res.status).toBe(200);
    ctl.abort();
  });
});
