import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { DeadLetterStore } from '../../src/deadletters/store.js';
import { buildHttpServer } from '../../src/http/server.js';
import { Metrics } from '../../src/metrics/registry.js';
import { DeviceRegistry } from '../../src/registry/devices.js';
import { ticketsConfig } from '../../src/tickets/config.js';
import { ticketRoutes } from '../../src/tickets/routes.js';
import { TicketService } from '../../src/tickets/service.js';
import { Outbox } from '../../src/webhooks/outbox.js';
import { webhookRoutes } from '../../src/webhooks/routes.js';
import { pgliteBackend, resetDb, type TestDb } from '../helpers/db.js';
import { until } from '../helpers/net.js';
import { auth, TOKENS } from '../http/harness.js';
import { type Clock, clock, fired, HOUR, STAFF, T0 } from './fixtures.js';

let tdb: TestDb;
let app: FastifyInstance;
let service: TicketService;
let outbox: Outbox;
let c: Clock;
const lines: string[] = [];
const metrics = new Metrics();

beforeAll(async () => {
  tdb = await pgliteBackend.open();
  c = clock();
  outbox = new Outbox(tdb.db, { now: c.now });
  const config = ticketsConfig({
    fleet: { threshold: 2, scopes: ['model'] },
    receivers: [{ name: 'helpdesk', url: 'http://127.0.0.1:9/hook', secret: 'helpdesk-secret-0123456789' }],
  });
  service = new TicketService({ db: tdb.db, config, outbox, now: c.now });
  app = await buildHttpServer({
    config: configSchema.parse({
      http: {
        adminToken: TOKENS.admin,
        tokens: [
          { name: 'field-engineers', token: TOKENS.engineer, role: 'engineer' },
          { name: 'service-desk', token: TOKENS.staff, role: 'staff' },
        ],
      },
    }),
    // Deliberately not redacting: the server itself must keep tokens out of its lines.
    log: pino(
      { level: 'trace' },
      new Writable({
        write(chunk: Buffer, _e, done) {
          lines.push(chunk.toString());
          done();
        },
      }),
    ),
    metrics,
    devices: new DeviceRegistry(tdb.db),
    deadLetters: new DeadLetterStore(tdb.db),
    readiness: () => ({ ready: true, components: {} }),
    extraRoutes: [ticketRoutes(service), webhookRoutes(outbox)],
  });
});

afterAll(async () => {
  await app?.close();
  await tdb?.dispose();
  metrics.close();
});

beforeEach(async () => {
  await resetDb(tdb.db);
  c.set(T0);
});

const as = (role: keyof typeof TOKENS) => auth(role);

async function api(
  method: 'GET' | 'POST',
  url: string,
  role: keyof typeof TOKENS,
  payload?: Record<string, unknown>,
) {
  const res = await app.inject({
    method,
    url,
    headers: as(role),
    ...(payload === undefined ? {} : { payload }),
  });
  return { status: res.statusCode, body: res.json() as Record<string, unknown> & { items?: unknown[] } };
}

describe('ticket API', () => {
  it('lists, filters and shows a ticket with its timeline and evidence', async () => {
    const { ticketId } = await service.handleFired(fired());
    await service.handleFired(
      fired({ deviceId: 'rv-1', model: 'RV-3', ruleId: 'rv-battery', severity: 'minor' }),
    );

    const all = await api('GET', '/api/v1/tickets', 'engineer');
    expect(all.status).toBe(200);
    expect(all.body.items).toHaveLength(2);
    const filtered = await api(
      'GET',
      '/api/v1/tickets?status=open,acknowledged&priority=P2&model=AC-9000',
      'staff',
    );
    expect((filtered.body.items as Array<{ id: string }>).map((t) => t.id)).toEqual([ticketId]);
    expect((await api('GET', '/api/v1/tickets?breached=true', 'staff')).body.items).toEqual([]);
    expect((await api('GET', '/api/v1/tickets?rule=rv-battery', 'staff')).body.items).toHaveLength(1);

    const one = await api('GET', `/api/v1/tickets/${ticketId}`, 'staff');
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({
      id: ticketId,
      status: 'open',
      device: { id: 'ac-0001', model: 'AC-9000' },
      owner: { id: 'owner-ac-0001' },
      timeline: [{ kind: 'ticket.opened', actor: 'rule-engine' }],
      occurrenceList: [{ kind: 'fired', evidence: { samples: expect.any(Array) } }],
    });

    expect(await api('GET', '/api/v1/tickets/424242', 'staff')).toMatchObject({
      status: 404,
      body: { error: { code: 'FL_NOT_FOUND' } },
    });
    expect((await api('GET', '/api/v1/tickets/abc', 'staff')).status).toBe(400);
    expect((await api('GET', '/api/v1/tickets?status=nonsense', 'staff')).status).toBe(400);
  });

  it('lets staff work a ticket, engineers comment, and refuses what the transition table does not allow', async () => {
    const { ticketId } = await service.handleFired(fired());
    const base = `/api/v1/tickets/${ticketId}`;
    expect(await api('POST', `${base}/acknowledge`, 'engineer')).toMatchObject({ status: 403 });
    const ack = await api('POST', `${base}/acknowledge`, 'staff');
    expect(ack).toMatchObject({
      status: 200,
      body: { status: 'acknowledged', acknowledgedAt: expect.any(String) },
    });
    expect(await api('POST', `${base}/acknowledge`, 'staff')).toMatchObject({
      status: 409,
      body: { error: { code: 'FL_INVALID_TRANSITION' } },
    });
    expect(
      await api('POST', `${base}/comments`, 'engineer', { text: 'Outdoor fan draws no current.' }),
    ).toMatchObject({
      status: 201,
    });
    expect(await api('POST', `${base}/assign`, 'staff', { assignee: 'li.wei' })).toMatchObject({
      status: 200,
      body: { assignee: 'li.wei' },
    });
    expect(
      await api('POST', `${base}/status`, 'staff', { status: 'waiting', waitingOn: 'parts' }),
    ).toMatchObject({
      status: 200,
      body: { status: 'waiting', waitingOn: 'parts' },
    });
    expect(await api('POST', `${base}/status`, 'staff', { status: 'recovered' })).toMatchObject({
      status: 409,
      body: { error: { code: 'FL_INVALID_TRANSITION', details: { from: 'waiting', to: 'recovered' } } },
    });
    expect(await api('POST', `${base}/status`, 'staff', { status: 'closed' })).toMatchObject({
      status: 403,
      body: { error: { code: 'FL_FORBIDDEN' } },
    });
    expect(await api('POST', `${base}/status`, 'staff', { status: 'teleported' })).toMatchObject({
      status: 400,
    });
    expect(
      await api('POST', `${base}/status`, 'admin', { status: 'closed', reason: 'duplicate' }),
    ).toMatchObject({
      status: 200,
      body: { status: 'closed' },
    });
    expect(await api('POST', `${base}/reopen`, 'staff', { reason: 'back again' })).toMatchObject({
      status: 200,
      body: { status: 'open', cycle: 1 },
    });
    const d = await api('GET', base, 'engineer');
    expect(d.body.comments).toEqual([
      expect.objectContaining({ actor: 'field-engineers', text: 'Outdoor fan draws no current.' }),
    ]);
    expect((d.body.timeline as Array<{ actor: string }>).map((e) => e.actor)).toEqual([
      'rule-engine',
      'service-desk',
      'field-engineers',
      'service-desk',
      'service-desk',
      'admin',
      'service-desk',
    ]);
  });

  it('serves fleet incidents, stats and the delivery log', async () => {
    await service.handleFired(fired({ deviceId: 'a' }));
    await service.handleFired(fired({ deviceId: 'b' }));
    const list = await api('GET', '/api/v1/incidents?status=open', 'staff');
    expect(list.body.items).toEqual([expect.objectContaining({ affectedDevices: 2, team: 'hardware' })]);
    const id = (list.body.items as Array<{ id: string }>)[0]!.id;
    const one = await api('GET', `/api/v1/incidents/${id}`, 'engineer');
    expect((one.body.tickets as Array<{ device: { id: string } }>).map((t) => t.device.id)).toEqual([
      'a',
      'b',
    ]);
    expect((await api('GET', '/api/v1/incidents/999', 'staff')).status).toBe(404);

    c.set(T0 + 5 * HOUR);
    await service.checkSla();
    const stats = await api(
      'GET',
      `/api/v1/stats/tickets?since=${new Date(T0 - HOUR).toISOString()}`,
      'staff',
    );
    expect(stats.body).toMatchObject({
      open: { total: 2, byModel: { 'AC-9000': 2 }, byTeam: { 'service-desk': 2 } },
      window: { opened: 2, slaBreachRate: 1, resolutionRate: 0 },
      incidentsOpen: 1,
    });

    const log = await api('GET', '/api/v1/webhooks/deliveries?receiver=helpdesk&status=pending', 'engineer');
    expect(log.status).toBe(200);
    const kinds = (log.body.items as Array<{ kind: string }>).map((d) => d.kind);
    expect(kinds).toContain('ticket.opened');
    expect(kinds).toContain('incident.opened');
    expect(kinds).toContain('sla.breached');
    expect((await api('GET', '/api/v1/webhooks/deliveries', 'staff')).status).toBe(403);
    const first = (log.body.items as Array<{ id: string }>)[0]!.id;
    expect(await api('POST', `/api/v1/webhooks/deliveries/${first}/retry`, 'admin')).toMatchObject({
      status: 409,
      body: { error: { code: 'FL_CONFLICT' } },
    });
  });
});

describe('live ticket stream', () => {
  let base: string;
  beforeAll(async () => {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });

  interface Frame {
    id?: string;
    event?: string;
    data?: Record<string, unknown>;
  }

  /** Opens the stream and parses frames as they come; close() aborts it. */
  async function open(query: string, headers: Record<string, string> = {}) {
    const ctl = new AbortController();
    const res = await fetch(`${base}/api/v1/tickets/stream${query}`, { headers, signal: ctl.signal });
    const frames: Frame[] = [];
    if (res.ok && res.body) {
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      void (async () => {
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return;
            buf += value;
            let end = buf.indexOf('\n\n');
            while (end >= 0) {
              const f: Frame = {};
              for (const line of buf.slice(0, end).split('\n')) {
                const [k, ...rest] = line.split(': ');
                const v = rest.join(': ');
                if (k === 'id') f.id = v;
                if (k === 'event') f.event = v;
                if (k === 'data') f.data = JSON.parse(v) as Record<string, unknown>;
              }
              if (f.event) frames.push(f);
              buf = buf.slice(end + 2);
              end = buf.indexOf('\n\n');
            }
          }
        } catch {
          // aborted
        }
      })();
    }
    return { res, frames, close: () => ctl.abort() };
  }

  it('streams ticket changes to a client authenticated with ?token=, and keeps the token out of the log', async () => {
    const s = await open(`?token=${TOKENS.staff}`);
    try {
      expect(s.res.status).toBe(200);
      expect(s.res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const { ticketId } = await service.handleFired(fired());
      await service.comment(ticketId!, 'on it', STAFF);
      await until('two frames', () => s.frames.length >= 2);
      expect(s.frames.map((f) => f.event)).toEqual(['ticket.opened', 'comment.added']);
      expect(s.frames[1]!.data).toMatchObject({
        kind: 'comment.added',
        actor: 'service-desk',
        ticket: { id: ticketId },
      });
      expect(Number(s.frames[1]!.id)).toBeGreaterThan(Number(s.frames[0]!.id));
    } finally {
      s.close();
    }
    const log = lines.join('');
    expect(log).toContain('/api/v1/tickets/stream');
    expect(log).not.toContain(TOKENS.staff);
  });

  it('refuses the stream without a token or with a bad one, by header or query', async () => {
    expect((await open('')).res.status).toBe(401);
    expect((await open('?token=')).res.status).toBe(401);
    expect((await open('?token=not-a-real-token-0123456789')).res.status).toBe(401);
    expect((await open('', { authorization: 'Bearer not-a-real-token-0123456789' })).res.status).toBe(401);
    const ok = await open('', as('engineer'));
    expect(ok.res.status).toBe(200);
    ok.close();
  });

  it('replays what a reconnecting client missed after its Last-Event-ID, then continues live', async () => {
    const { ticketId } = await service.handleFired(fired());
    const d = (await service.detail(ticketId!))!;
    const lastSeen = d.timeline[0]!.id;
    await service.assign(ticketId!, 'li.wei', STAFF);
    await service.comment(ticketId!, 'missed while offline', STAFF);
    const s = await open('', { ...as('staff'), 'last-event-id': lastSeen });
    try {
      await until('replayed frames', () => s.frames.length >= 2);
      await service.comment(ticketId!, 'live again', STAFF);
      await until('the live frame', () => s.frames.length >= 3);
      expect(s.frames.map((f) => f.event)).toEqual(['assignee.changed', 'comment.added', 'comment.added']);
      expect(s.frames.map((f) => (f.data?.data as { text?: string } | undefined)?.text ?? null)).toEqual([
        null,
        'missed while offline',
        'live again',
      ]);
    } finally {
      s.close();
    }
  });
});
