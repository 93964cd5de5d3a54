/**
 * /api/v1/tickets, /api/v1/incidents and /api/v1/stats/tickets. Route roles are
 * the coarse check (who may call at all); the transition table in model.ts is
 * the fine one (who may make which status change), enforced by the service.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Role } from '../config/schema.js';
import { FaultlineError } from '../errors/catalogue.js';
import { errorResponses } from '../http/errors.js';
import {
  assignBody,
  commentBody,
  idParams,
  incidentDetail,
  incidentListQuery,
  incidentPage,
  reopenBody,
  statsQuery,
  statusBody,
  ticket,
  ticketDetail,
  ticketListQuery,
  ticketPage,
  ticketStats,
} from './schemas.js';
import type { Actor, StreamEvent, TicketService } from './service.js';

export const READ: readonly Role[] = ['admin', 'engineer', 'staff'];
export const WORK: readonly Role[] = ['admin', 'staff'];
export const COMMENT: readonly Role[] = ['admin', 'engineer', 'staff'];

export const STREAM_PATH = '/api/v1/tickets/stream';
const HEARTBEAT_MS = 15_000;
/** A live screen this far behind is disconnected rather than buffered without bound; it resumes by Last-Event-ID. */
const MAX_BUFFERED_BYTES = 1024 * 1024;
const REPLAY_LIMIT = 1_000;

const tags = ['tickets'];

function actorOf(request: FastifyRequest): Actor {
  const p = request.principal;
  if (!p) throw new FaultlineError('FL_INTERNAL', 'no principal on an authenticated route');
  return { name: p.name, role: p.role };
}

/**
 * EventSource cannot send headers, so the stream also takes `?token=`. This runs on the raw
 * request before Fastify routes it: the token moves into the Authorization header, where the one
 * authentication hook checks it like any other, and out of the URL, so request logs never hold it.
 */
export function moveStreamQueryToken(req: IncomingMessage): void {
  const url = req.url;
  if (!url?.startsWith(`${STREAM_PATH}?`)) return;
  const parsed = new URL(url, 'http://faultline.invalid');
  if (parsed.pathname !== STREAM_PATH) return;
  const token = parsed.searchParams.get('token');
  if (token === null) return;
  parsed.searchParams.delete('token');
  req.url = `${parsed.pathname}${parsed.search}`;
  if (req.headers.authorization === undefined && token !== '') req.headers.authorization = `Bearer ${token}`;
}

function sseFrame(e: StreamEvent): string {
  const data =
    e.type === 'ticket'
      ? {
          eventId: e.change.eventId,
          kind: e.change.kind,
          at: e.change.at,
          actor: e.change.actor,
          data: e.change.data,
          ticket: e.change.ticket,
        }
      : { kind: e.kind, at: e.at, incident: e.incident };
  const id = e.type === 'ticket' ? `id: ${e.change.eventId}\n` : '';
  return `${id}event: ${e.type === 'ticket' ? e.change.kind : e.kind}\ndata: ${JSON.stringify(data)}\n\n`;
}

export function ticketRoutes(service: TicketService) {
  return async function ticketsPlugin(scope: FastifyInstance): Promise<void> {
    const app = scope.withTypeProvider<ZodTypeProvider>();
    const streams = new Set<ServerResponse>();

    scope.server.prependListener('request', moveStreamQueryToken);
    scope.addHook('onClose', async () => {
      scope.server.removeListener('request', moveStreamQueryToken);
    });
    // Before the server stops accepting: open streams never end on their own, and the server's
    // close would wait for them.
    scope.addHook('preClose', async () => {
      for (const res of streams) res.end();
    });

    app.get(
      '/api/v1/tickets',
      {
        config: { roles: READ },
        schema: {
          summary: 'List tickets',
          description:
            'Newest first. Filters combine with AND; status and priority take comma-separated lists.',
          tags,
          querystring: ticketListQuery,
          response: { 200: ticketPage, ...errorResponses },
        },
      },
      async (request) => service.list(request.query),
    );

    app.get(
      STREAM_PATH,
      {
        config: { roles: READ },
        // HEAD on an endless stream makes no sense.
        exposeHeadRoute: false,
        schema: {
          summary: 'Live ticket changes (server-sent events)',
          description:
            'One event per timeline entry (event: its kind, id: its sequence number, data: the change and the ticket ' +
            'as JSON), plus incident.opened/updated/closed. Authenticate with the Authorization header, or with ' +
            '?token= for EventSource, which cannot send headers. After a reconnect, Last-Event-ID replays what ' +
            'was missed (up to 1000 entries). A comment line every 15 s keeps proxies from closing it.',
          tags,
          querystring: z.object({
            token: z.string().optional().describe('for EventSource; see docs/tickets.md'),
          }),
        },
      },
      async (request, reply) => {
        reply.hijack();
        const res = reply.raw;
        res.writeHead(200, {
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-cache, no-transform',
          connection: 'keep-alive',
          'x-accel-buffering': 'no',
        });
        res.write('retry: 3000\n\n');
        streams.add(res);
        let closed = false;
        const send = (frame: string) => {
          if (closed) return;
          res.write(frame);
          if (res.writableLength > MAX_BUFFERED_BYTES) res.destroy();
        };
        // Subscribe before replaying, and hold live events until the replay is written, so
        // nothing committed in between is lost or sent twice.
        let held: StreamEvent[] | null = [];
        let replayedUpTo = 0n;
        const unsubscribe = service.subscribe((e) => {
          if (held) held.push(e);
          else send(sseFrame(e));
        });
        const heartbeat = setInterval(() => send(': keep-alive\n\n'), HEARTBEAT_MS);
        heartbeat.unref();
        const finish = () => {
          if (closed) return;
          closed = true;
          clearInterval(heartbeat);
          unsubscribe();
          streams.delete(res);
        };
        request.raw.on('close', finish);
        res.on('close', finish);
        try {
          const last = request.headers['last-event-id'];
          if (typeof last === 'string' && /^\d{1,19}$/.test(last.trim())) {
            for (const change of await service.changesSince(last.trim(), REPLAY_LIMIT)) {
              send(sseFrame({ type: 'ticket', change }));
              replayedUpTo = BigInt(change.eventId);
            }
          }
        } catch (err) {
          request.log.warn({ err }, 'ticket stream replay failed');
        }
        const pending = held;
        held = null;
        for (const e of pending) {
          if (e.type === 'ticket' && BigInt(e.change.eventId) <= replayedUpTo) continue;
          send(sseFrame(e));
        }
      },
    );

    app.get(
      '/api/v1/tickets/:id',
      {
        config: { roles: READ },
        schema: {
          summary: 'Get one ticket with its timeline, evidence, links and comments',
          tags,
          params: idParams,
          response: { 200: ticketDetail, ...errorResponses },
        },
      },
      async (request) => {
        const d = await service.detail(request.params.id);
        if (!d) throw new FaultlineError('FL_NOT_FOUND', `no ticket ${request.params.id}`);
        return d;
      },
    );

    app.post(
      '/api/v1/tickets/:id/acknowledge',
      {
        config: { roles: WORK },
        schema: {
          summary: 'Acknowledge an open ticket',
          description:
            'Stops the response clock. Only an open ticket can be acknowledged (FL_INVALID_TRANSITION).',
          tags,
          params: idParams,
          response: { 200: ticket, ...errorResponses },
        },
      },
      async (request) => service.acknowledge(request.params.id, actorOf(request)),
    );

    app.post(
      '/api/v1/tickets/:id/status',
      {
        config: { roles: WORK },
        schema: {
          summary: 'Change the status',
          description:
            'Follows the transition table in docs/tickets.md: a change it does not list is refused with ' +
            'FL_INVALID_TRANSITION, one your role may not make with FL_FORBIDDEN. waiting pauses the SLA clock.',
          tags,
          params: idParams,
          body: statusBody,
          response: { 200: ticket, ...errorResponses },
        },
      },
      async (request) =>
        service.setStatus(request.params.id, request.body.status, actorOf(request), {
          reason: request.body.reason,
          waitingOn: request.body.waitingOn,
        }),
    );

    app.post(
      '/api/v1/tickets/:id/reopen',
      {
        config: { roles: WORK },
        schema: {
          summary: 'Reopen a resolved or closed ticket',
          description:
            'Starts a new cycle with fresh SLA clocks. FL_CONFLICT when a newer ticket for the same problem is open.',
          tags,
          params: idParams,
          body: reopenBody,
          response: { 200: ticket, ...errorResponses },
        },
      },
      async (request) => service.reopen(request.params.id, actorOf(request), request.body?.reason),
    );

    app.post(
      '/api/v1/tickets/:id/assign',
      {
        config: { roles: WORK },
        schema: {
          summary: 'Assign or unassign',
          tags,
          params: idParams,
          body: assignBody,
          response: { 200: ticket, ...errorResponses },
        },
      },
      async (request) => service.assign(request.params.id, request.body.assignee, actorOf(request)),
    );

    app.post(
      '/api/v1/tickets/:id/comments',
      {
        config: { roles: COMMENT },
        schema: {
          summary: 'Add a comment',
          tags,
          params: idParams,
          body: commentBody,
          response: { 201: ticket, ...errorResponses },
        },
      },
      async (request, reply) =>
        reply.code(201).send(await service.comment(request.params.id, request.body.text, actorOf(request))),
    );

    app.get(
      '/api/v1/incidents',
      {
        config: { roles: READ },
        schema: {
          summary: 'List fleet incidents',
          description: 'Newest first.',
          tags: ['incidents'],
          querystring: incidentListQuery,
          response: { 200: incidentPage, ...errorResponses },
        },
      },
      async (request) => service.incidents(request.query),
    );

    app.get(
      '/api/v1/incidents/:id',
      {
        config: { roles: READ },
        schema: {
          summary: 'Get one fleet incident with its device tickets',
          tags: ['incidents'],
          params: idParams,
          response: { 200: incidentDetail, ...errorResponses },
        },
      },
      async (request) => {
        const found = await service.incident(request.params.id);
        if (!found) throw new FaultlineError('FL_NOT_FOUND', `no fleet incident ${request.params.id}`);
        return found;
      },
    );

    app.get(
      '/api/v1/stats/tickets',
      {
        config: { roles: READ },
        schema: {
          summary: 'Ticket statistics',
          description:
            'Open tickets by rule, model, team and priority; median response and resolution time (SLA clock, ' +
            'waiting excluded), SLA breach rate and resolution rate over tickets opened since `since`.',
          tags: ['stats'],
          querystring: statsQuery,
          response: { 200: ticketStats, ...errorResponses },
        },
      },
      async (request) => service.stats(request.query.since ? new Date(request.query.since) : undefined),
    );
  };
}
