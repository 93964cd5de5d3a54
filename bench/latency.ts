/**
 * Latency under a background load: rule firing -> ticket visible in the API,
 * and ticket -> owner notification received by an MQTT.js app, p50 and p99.
 *
 * The bridge runs as its own process on a throwaway PostgreSQL (the production
 * setup; PGlite only if PostgreSQL cannot be started, and the figures say so).
 * A child process (bench/latency-load.ts) keeps LOAD_DEVICES plain MQTT.js
 * clients publishing healthy telemetry at RATE msg/s, QoS 1. Meanwhile, in each
 * round, FAULTY fresh devices each publish one fault batch of three E05 codes
 * (rule ac-fault-e05-repeat: no `for:` delay, it fires on that message), spread
 * evenly over ROUND_SECONDS (100 over 6 s: ~17 firings/s); each device has an
 * owner of its own whose app (firmware-sim's OwnerApp: MQTT.js over WebSocket)
 * is connected. The bridge runs its default config: as every faulty device is
 * an AC-9000 firing the same rule, the fleet-incident check (tickets.fleet,
 * threshold 20) links each new ticket to a fleet incident, as in production.
 * A warm-up of 10 firings comes first, unmeasured.
 *
 * Moments (one machine, so the bridge's clock and ours agree):
 *   firing          the rule engine's clock when it decided (ruleEventAt on the ticket.opened timeline entry)
 *   ticket visible  arrival of the ticket.opened event on the API's live stream (SSE, GET /api/v1/tickets/stream)
 *   ticket          the ticket's openedAt
 *   notification    the owner app receiving the guide on owners/{id}/notifications
 * Reference, same run, same bridge: the same latencies with no background load
 * (the background clients connected but silent). Also reported: publish -> PUBACK
 * of the firing messages, the background rate achieved (acknowledged messages in
 * each round's window), and firings whose ticket or guide never arrived.
 *
 * Each round also prints where the CPU went (bridge, PostgreSQL, load generator,
 * this process, the whole machine) and the bridge's event-loop delay p99.
 *
 *   npx tsx bench/latency.ts [--rate 5000] [--load-devices 500] [--faulty 100] [--rounds 3]
 *                            [--round-seconds 6] [--config faultline.yaml]
 */
import { type ChildProcess, fork } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { deriveOwnerSecret, deriveSecret } from '../firmware-sim/credentials.js';
import { OwnerApp } from '../firmware-sim/owner-app.js';
import { provision } from '../firmware-sim/provision.js';
import { type BridgeProcess, startBridgeProcess } from '../test/helpers/cli.js';
import { type PostgresServer, startPostgres } from '../test/helpers/postgres.js';
import { tempDir } from '../test/helpers/process.js';
import type { LoadReport } from './latency-load.js';
import { type Figure, printTable, summarize, writeResults } from './lib.js';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2)
  args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1]!);
const RATE = Number(args.get('rate') ?? 5_000);
const LOAD_DEVICES = Number(args.get('load-devices') ?? 500);
const FAULTY = Number(args.get('faulty') ?? 100);
const ROUNDS = Number(args.get('rounds') ?? 3);
const ROUND_SECONDS = Number(args.get('round-seconds') ?? 6);
/** A bridge config file (FAULTLINE_CONFIG), to see what a setting changes. */
const CONFIG = args.get('config');
/** Load before the first loaded round, so the rounds see a bridge in its steady state. */
const WARMUP_SECONDS = 3;
/** Longest a round waits for its last ticket and guide after its last firing. */
const SETTLE_MS = 10_000;
const SEED = 'latency';
const TOKEN = 'latency-bench-admin-token-0123456789';
const RULE = 'ac-fault-e05-repeat';
const BUDGET = { ticketP99: 50, notifyP99: 100 };

// ---------------------------------------------------------------- helpers

/** CPU time (clock ticks) of a process from /proc/<pid>/stat, and its parent's pid. */
function procStat(pid: number): { ppid: number; ticks: number } | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
  } catch {
    return null;
  }
}

/** A process and its direct children (PostgreSQL's backends), in clock ticks. */
function treeTicks(pid: number): number {
  let ticks = procStat(pid)?.ticks ?? 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const st = procStat(Number(entry));
    if (st && st.ppid === pid) ticks += st.ticks;
  }
  return ticks;
}

/** Busy and total jiffies of the whole machine (every core). */
function machineTicks(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - (f[4] ?? 0), total };
}

const TICKS_PER_SECOND = 100;

/** Where the CPU went between two moments, in % of one core (machine: % of all cores). */
class CpuWatch {
  private start: {
    wall: number;
    own: number;
    ticks: number[];
    machine: { busy: number; total: number };
  } | null = null;

  constructor(private readonly pids: () => Array<number | null>) {}

  begin(): void {
    const u = process.cpuUsage();
    this.start = {
      wall: performance.now(),
      own: u.user + u.system,
      ticks: this.pids().map((p) => (p === null ? 0 : treeTicks(p))),
      machine: machineTicks(),
    };
  }

  end(): { bridge: number; postgres: number; load: number; bench: number; machine: number } {
    const s = this.start!;
    const seconds = (performance.now() - s.wall) / 1000;
    const pct = (ticks: number) => (100 * ticks) / TICKS_PER_SECOND / seconds;
    const now = this.pids().map((p) => (p === null ? 0 : treeTicks(p)));
    const u = process.cpuUsage();
    const m = machineTicks();
    return {
      bridge: pct(now[0]! - s.ticks[0]!),
      postgres: pct(now[1]! - s.ticks[1]!),
      load: pct(now[2]! - s.ticks[2]!),
      bench: (100 * (u.user + u.system - s.own)) / 1e6 / seconds,
      machine: (100 * (m.busy - s.machine.busy)) / (m.total - s.machine.total),
    };
  }
}

/** The bridge's event-loop delay p99 since the previous scrape (the gauge resets on each scrape), ms. */
async function loopLagMs(apiUrl: string): Promise<number> {
  const text = await (await fetch(`${apiUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('faultline_event_loop_lag_seconds '));
  return line ? Number(line.split(' ')[1]) * 1000 : Number.NaN;
}

function percentile(values: number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Opened {
  at: number;
  ticketId: string;
  openedAt: number;
  ruleEventAt: number | null;
}

/** The API's live ticket stream, read as a service desk screen would; records each ticket.opened on arrival. */
class TicketStream {
  readonly opened = new Map<string, Opened>();
  private req: ReturnType<typeof request> | undefined;

  constructor(private readonly url: string) {}

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const req = request(this.url, { headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
        if (res.statusCode !== 200) {
          reject(new Error(`ticket stream: HTTP ${res.statusCode}`));
          return;
        }
        res.setEncoding('utf8');
        let buffer = '';
        res.on('data', (chunk: string) => {
          const at = Date.now();
          buffer += chunk;
          for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
            this.frame(buffer.slice(0, end), at);
            buffer = buffer.slice(end + 2);
          }
        });
        resolve();
      });
      req.on('error', (err) => reject(err));
      req.end();
      this.req = req;
    });
  }

  private frame(text: string, at: number): void {
    let event = '';
    let data = '';
    for (const line of text.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data += line.slice(6);
    }
    if (event !== 'ticket.opened' || !data) return;
    const e = JSON.parse(data) as {
      data: { ruleEventAt?: string };
      ticket: { id: string; openedAt: string; ruleId: string; device: { id: string } };
    };
    if (e.ticket.ruleId !== RULE) return;
    this.opened.set(e.ticket.device.id, {
      at,
      ticketId: e.ticket.id,
      openedAt: Date.parse(e.ticket.openedAt),
      ruleEventAt: e.data.ruleEventAt ? Date.parse(e.data.ruleEventAt) : null,
    });
  }

  stop(): void {
    this.req?.destroy();
  }
}

interface Faulty {
  id: string;
  ownerId: string;
  client?: MqttClient;
  app?: OwnerApp;
  publishedAt?: number;
  ackedAt?: number;
}

interface RoundResult {
  n: { fired: number; tickets: number; guides: number };
  /** firing -> ticket.opened on the stream */
  toTicket: number[];
  /** openedAt -> guide at the owner app */
  toNotify: number[];
  /** publish -> PUBACK of the firing message */
  puback: number[];
  /** breakdown: publish -> firing, firing -> openedAt (queued), openedAt -> on the stream (transaction + delivery) */
  publishToFiring: number[];
  firingToOpenedAt: number[];
  openedAtToStream: number[];
  /** breakdown of ticket -> notification: openedAt -> the guide's createdAt (push picked the ticket up), createdAt -> app */
  openedAtToGuide: number[];
  guideToApp: number[];
  /** Whether the firing moment came from the engine (ruleEventAt) or, lacking it, the PUBACK. */
  firingFrom: 'engine' | 'puback';
  cpu?: ReturnType<CpuWatch['end']>;
  loopLagP99?: number;
  /** Devices whose ticket or guide did not arrive in time, for the report. */
  missing: Array<{ deviceId: string; ownerId: string; ticketId: string | null; received: string[] }>;
}

async function connectFaulty(bridge: BridgeProcess, devices: Faulty[]): Promise<void> {
  const wsUrl = `ws://127.0.0.1:${bridge.wsPort}`;
  for (let i = 0; i < devices.length; i += 25) {
    await Promise.all(
      devices.slice(i, i + 25).map(async (d) => {
        d.app = new OwnerApp({ wsUrl, ownerId: d.ownerId, secret: deriveOwnerSecret(SEED, d.ownerId) });
        await d.app.start();
        d.client = await mqtt.connectAsync(`mqtt://127.0.0.1:${bridge.mqttPort}`, {
          clientId: d.id,
          username: d.id,
          password: deriveSecret(SEED, d.id),
          reconnectPeriod: 0,
        });
      }),
    );
  }
}

async function disconnectFaulty(devices: Faulty[]): Promise<void> {
  await Promise.all(
    devices.map(async (d) => {
      await d.app?.stop();
      await d.client?.endAsync().catch(() => d.client?.endAsync(true));
    }),
  );
}

/** One round: the devices fire one after another, evenly over ROUND_SECONDS; then waits for every ticket and guide. */
async function round(devices: Faulty[], stream: TicketStream): Promise<RoundResult> {
  const gap = (ROUND_SECONDS * 1000) / devices.length;
  const t0 = performance.now();
  const publishes: Array<Promise<void>> = [];
  for (let i = 0; i < devices.length; i++) {
    const wait = t0 + i * gap - performance.now();
    if (wait > 0) await sleep(wait);
    const d = devices[i]!;
    const ts = Date.now();
    const payload = JSON.stringify({
      batch: [0, 1, 2].map((k) => ({ ts: ts - 2 + k, seq: k + 1, code: 'E05', detail: 'bench' })),
    });
    d.publishedAt = Date.now();
    publishes.push(
      d.client!.publishAsync(`devices/${d.id}/faults`, payload, { qos: 1 }).then(() => {
        d.ackedAt = Date.now();
      }),
    );
  }
  await Promise.all(publishes);
  const deadline = Date.now() + SETTLE_MS;
  const guideOf = (d: Faulty) => d.app!.received.find((r) => r.notification.kind === 'guide');
  while (Date.now() < deadline) {
    if (devices.every((d) => stream.opened.has(d.id) && guideOf(d))) break;
    await sleep(20);
  }
  const r: RoundResult = {
    n: { fired: devices.length, tickets: 0, guides: 0 },
    toTicket: [],
    toNotify: [],
    puback: [],
    publishToFiring: [],
    firingToOpenedAt: [],
    openedAtToStream: [],
    openedAtToGuide: [],
    guideToApp: [],
    firingFrom: 'engine',
    missing: [],
  };
  for (const d of devices) {
    r.puback.push(d.ackedAt! - d.publishedAt!);
    const t = stream.opened.get(d.id);
    const missed = () =>
      r.missing.push({
        deviceId: d.id,
        ownerId: d.ownerId,
        ticketId: t?.ticketId ?? null,
        received: d.app!.received.map((x) => `${x.notification.kind}:${x.notification.ticketId}`),
      });
    if (!t) {
      missed();
      continue;
    }
    r.n.tickets++;
    if (t.ruleEventAt === null) r.firingFrom = 'puback';
    const firedAt = t.ruleEventAt ?? d.ackedAt!;
    r.toTicket.push(t.at - firedAt);
    r.publishToFiring.push(firedAt - d.publishedAt!);
    r.firingToOpenedAt.push(t.openedAt - firedAt);
    r.openedAtToStream.push(t.at - t.openedAt);
    const guide = guideOf(d);
    if (guide && guide.notification.ticketId === t.ticketId) {
      r.n.guides++;
      r.toNotify.push(guide.receivedAt - t.openedAt);
      const created = Date.parse(String(guide.notification.createdAt));
      r.openedAtToGuide.push(created - t.openedAt);
      r.guideToApp.push(guide.receivedAt - created);
    } else missed();
  }
  return r;
}

// ---------------------------------------------------------------- load generator

class LoadProcess {
  private readonly child: ChildProcess;
  private readonly waiters = new Map<string, (m: { type: string } & Record<string, unknown>) => void>();
  private failure: Error | null = null;

  get pid(): number | null {
    return this.child.pid ?? null;
  }

  constructor() {
    this.child = fork(join(process.cwd(), 'bench/latency-load.ts'), [], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (m: { type: string } & Record<string, unknown>) => {
      if (m.type === 'error') {
        this.failure = new Error(`load generator: ${String(m.message)}`);
        for (const w of this.waiters.values()) w(m);
        return;
      }
      this.waiters.get(m.type)?.(m);
    });
  }

  private next<T>(type: string, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`load generator: no ${type} in ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.waiters.set(type, (m) => {
        clearTimeout(timer);
        this.waiters.delete(type);
        if (this.failure) reject(this.failure);
        else resolve(m as T);
      });
    });
  }

  async connect(url: string, devices: Array<{ id: string; secret: string }>): Promise<number> {
    const done = this.next<{ ms: number }>('connected', 30_000);
    this.child.send({ type: 'connect', url, devices });
    return (await done).ms;
  }

  run(rate: number, seconds: number): Promise<LoadReport> {
    const done = this.next<{ report: LoadReport }>('done', (seconds + 20) * 1000).then((m) => m.report);
    this.child.send({ type: 'run', rate, seconds });
    return done;
  }

  finish(): void {
    this.child.send({ type: 'finish' });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.send({ type: 'stop' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Messages per second the load generator got acknowledged between two wall times. */
function achievedRate(report: LoadReport, fromWall: number, toWall: number): number {
  const first = Math.max(0, Math.floor((fromWall - report.startWall) / report.binMs));
  const last = Math.min(report.ackedPerBin.length, Math.ceil((toWall - report.startWall) / report.binMs));
  let acked = 0;
  for (let i = first; i < last; i++) acked += report.ackedPerBin[i]!;
  const seconds = ((last - first) * report.binMs) / 1000;
  return seconds > 0 ? acked / seconds : Number.NaN;
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const wall0 = performance.now();
  let pg: PostgresServer | null = null;
  let backend = 'PostgreSQL';
  try {
    pg = await startPostgres();
  } catch (err) {
    backend = 'PGlite';
    console.error(`PostgreSQL unavailable, measuring on PGlite: ${(err as Error).message.split('\n')[0]}`);
  }
  const dir = tempDir('bench-latency');
  const bridge = await startBridgeProcess(dir.path, {
    FAULTLINE_ADMIN_TOKEN: TOKEN,
    // As npm start and the image run it.
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --max-semi-space-size=64`.trim(),
    ...(pg ? { FAULTLINE_DATABASE_URL: pg.url } : {}),
    ...(CONFIG ? { FAULTLINE_CONFIG: CONFIG } : {}),
  });
  const apiUrl = `http://127.0.0.1:${bridge.httpPort}`;
  const stream = new TicketStream(`${apiUrl}/api/v1/tickets/stream`);
  const load = new LoadProcess();
  const phases: { idle: Faulty[][]; loaded: Faulty[][]; warm: Faulty[] } = { idle: [], loaded: [], warm: [] };
  try {
    const group = (prefix: string, n: number): Faulty[] =>
      Array.from({ length: n }, (_, i) => {
        const id = `${prefix}-${String(i).padStart(4, '0')}`;
        return { id, ownerId: `owner-${id}` };
      });
    phases.warm = group('lat-warm', 10);
    for (let r = 0; r < ROUNDS; r++) {
      phases.idle.push(group(`lat-idle${r}`, FAULTY));
      phases.loaded.push(group(`lat-load${r}`, FAULTY));
    }
    const faulty = [phases.warm, ...phases.idle, ...phases.loaded].flat();
    const loadIds = Array.from({ length: LOAD_DEVICES }, (_, i) => `lat-bg-${String(i).padStart(5, '0')}`);
    const device = (id: string, ownerId: string) => ({
      id,
      model: 'AC-9000',
      firmware: '1.0.0',
      ownerId,
      ownerLocale: 'en',
      region: 'bench',
      batch: 'bench',
      secret: deriveSecret(SEED, id),
    });
    const provisioned = await provision({
      apiUrl,
      token: TOKEN,
      devices: [...loadIds.map((id) => device(id, '')), ...faulty.map((d) => device(d.id, d.ownerId))],
      owners: faulty.map((d) => ({
        id: d.ownerId,
        locale: 'en',
        secret: deriveOwnerSecret(SEED, d.ownerId),
        quietHours: 'off',
      })),
    });
    if (provisioned.failed.length > 0) throw new Error(`provisioning: ${provisioned.failed[0]!.message}`);
    await stream.start();
    const loadConnect = load.connect(
      `mqtt://127.0.0.1:${bridge.mqttPort}`,
      loadIds.map((id) => ({ id, secret: deriveSecret(SEED, id) })),
    );
    const loadConnected = await loadConnect;

    // Warm-up (first ticket, first guide, JIT), not measured; then the idle reference.
    await connectFaulty(bridge, phases.warm);
    await round(phases.warm, stream);
    await disconnectFaulty(phases.warm);

    const cpu = new CpuWatch(() => [bridge.server.pid, pg?.pid ?? null, load.pid]);
    const watched = async (devices: Faulty[]): Promise<RoundResult> => {
      await loopLagMs(apiUrl);
      cpu.begin();
      const r = await round(devices, stream);
      r.cpu = cpu.end();
      r.loopLagP99 = await loopLagMs(apiUrl);
      return r;
    };

    // The reference rounds run while the background clients are connected but silent.
    const idle: RoundResult[] = [];
    await connectFaulty(bridge, phases.idle.flat());
    for (const devices of phases.idle) idle.push(await watched(devices));
    await disconnectFaulty(phases.idle.flat());

    await connectFaulty(bridge, phases.loaded.flat());
    const loadSeconds = WARMUP_SECONDS + ROUNDS * (ROUND_SECONDS + SETTLE_MS / 1000) + 5;
    const running = load.run(RATE, loadSeconds);
    await sleep(WARMUP_SECONDS * 1000);
    const loaded: RoundResult[] = [];
    const windows: Array<[number, number]> = [];
    for (const devices of phases.loaded) {
      const from = Date.now();
      loaded.push(await watched(devices));
      windows.push([from, Date.now()]);
    }
    load.finish();
    const report = await running;
    await disconnectFaulty(phases.loaded.flat());
    const rates = windows.map(([from, to]) => achievedRate(report, from, to));

    // ------------------------------------------------------------ report
    const detail = (name: string, rs: RoundResult[]) => {
      for (const [i, r] of rs.entries()) {
        const f = (v: number[], q: number) => percentile(v, q).toFixed(1);
        console.log(
          `${name} round ${i + 1}: n fired ${r.n.fired}, tickets ${r.n.tickets}, guides ${r.n.guides}; ` +
            `firing->ticket p50 ${f(r.toTicket, 0.5)} p99 ${f(r.toTicket, 0.99)} max ${f(r.toTicket, 1)}; ` +
            `ticket->notification p50 ${f(r.toNotify, 0.5)} p99 ${f(r.toNotify, 0.99)} max ${f(r.toNotify, 1)}; ` +
            `[publish->firing p50 ${f(r.publishToFiring, 0.5)}, firing->openedAt p50 ${f(r.firingToOpenedAt, 0.5)} ` +
            `p99 ${f(r.firingToOpenedAt, 0.99)}, openedAt->stream p50 ${f(r.openedAtToStream, 0.5)} ` +
            `p99 ${f(r.openedAtToStream, 0.99)}; openedAt->guide created p50 ${f(r.openedAtToGuide, 0.5)} ` +
            `p99 ${f(r.openedAtToGuide, 0.99)}, created->app p50 ${f(r.guideToApp, 0.5)} p99 ${f(r.guideToApp, 0.99)}; ` +
            `firing PUBACK p99 ${f(r.puback, 0.99)}] ms` +
            (r.firingFrom === 'puback' ? ' (firing taken at the PUBACK: no ruleEventAt on the ticket)' : ''),
        );
        if (r.cpu) {
          const c = r.cpu;
          console.log(
            `  cpu (% of a core): bridge ${c.bridge.toFixed(0)}, postgres ${c.postgres.toFixed(0)}, ` +
              `load generator ${c.load.toFixed(0)}, bench ${c.bench.toFixed(0)}; machine busy ${c.machine.toFixed(0)}% ` +
              `of all cores; bridge event-loop delay p99 ${r.loopLagP99?.toFixed(0)} ms`,
          );
        }
      }
    };
    detail('idle', idle);
    detail(`load ${RATE}/s`, loaded);
    console.log(
      `background load: ${LOAD_DEVICES} devices connected in ${(loadConnected / 1000).toFixed(1)} s; ` +
        `sent ${report.sent}, acked ${report.acked}, errors ${report.errors}, held by the in-flight cap ${report.heldByInflightCap}; ` +
        `achieved ${rates.map((r) => Math.round(r)).join(', ')} msg/s in the rounds (asked ${RATE}); ` +
        `PUBACK p50 ${report.pubackP50.toFixed(1)} p99 ${report.pubackP99.toFixed(1)} ms`,
    );

    const over = (rs: RoundResult[], pick: (r: RoundResult) => number[], q: number) =>
      summarize(rs.map((r) => percentile(pick(r), q)));
    const n = (rs: RoundResult[], pick: (r: RoundResult) => number[]) =>
      Math.min(...rs.map((r) => pick(r).length));
    const estimated = [...idle, ...loaded].some((r) => r.firingFrom === 'puback');
    const bg = `${RATE.toLocaleString('en-US')} msg/s background, ${backend}`;
    const fig = (name: string, pick: (r: RoundResult) => number[], q: number, budget?: number): Figure => {
      const value = over(loaded, pick, q);
      const reference = over(idle, pick, q);
      return {
        name,
        unit: 'ms',
        ...value,
        reference: { name: 'idle bridge', ...reference },
        ratio: value.value / reference.value,
        ...(budget === undefined ? {} : { target: `<= ${budget} ms`, met: value.value <= budget }),
      };
    };
    const toTicket = (r: RoundResult) => r.toTicket;
    const toNotify = (r: RoundResult) => r.toNotify;
    const ticketName = `firing${estimated ? ' (~PUBACK)' : ''} -> ticket on API stream`;
    const notifyName = 'ticket openedAt -> guide at MQTT.js owner app';
    const figures: Figure[] = [
      fig(`${ticketName}, p50, n>=${n(loaded, toTicket)}/round, ${bg}`, toTicket, 0.5),
      fig(`${ticketName}, p99, ${bg}`, toTicket, 0.99, BUDGET.ticketP99),
      fig(`${ticketName}, max, ${bg}`, toTicket, 1),
      fig(`${notifyName}, p50, n>=${n(loaded, toNotify)}/round, ${bg}`, toNotify, 0.5),
      fig(`${notifyName}, p99, ${bg}`, toNotify, 0.99, BUDGET.notifyP99),
      fig(`${notifyName}, max, ${bg}`, toNotify, 1),
      fig(`firing message publish -> PUBACK, p99, ${bg}`, (r) => r.puback, 0.99),
      {
        name: `background load achieved during the rounds (QoS 1 acked, ${LOAD_DEVICES} devices)`,
        unit: 'msg/s',
        ...summarize(rates),
        target: `>= ${Math.round(RATE * 0.95).toLocaleString('en-US')} msg/s (95% of asked)`,
        met: summarize(rates).min >= RATE * 0.95,
      },
      {
        name: `firings whose ticket or guide never arrived (${SETTLE_MS / 1000} s wait), all ${2 * ROUNDS} rounds, ${backend}`,
        unit: 'firings',
        ...summarize([[...idle, ...loaded].reduce((n, r) => n + r.missing.length, 0)]),
        target: '= 0',
        met: [...idle, ...loaded].every((r) => r.missing.length === 0),
      },
    ];
    const missing = [...idle, ...loaded].flatMap((r) => r.missing);
    if (missing.length > 0) {
      console.error(`WARNING: ${missing.length} tickets or guides did not arrive within ${SETTLE_MS} ms:`);
      for (const m of missing.slice(0, 5)) {
        const q = m.ticketId ? `ticketId=${m.ticketId}` : `ownerId=${m.ownerId}`;
        const res = await fetch(`${apiUrl}/api/v1/notifications?${q}`, {
          headers: { authorization: `Bearer ${TOKEN}` },
        });
        console.error(
          `  ${m.deviceId}: ticket ${m.ticketId ?? 'none on the stream'}, app got [${m.received.join(', ')}]; ` +
            `bridge: ${(await res.text()).slice(0, 400)}`,
        );
      }
      const metrics = await (await fetch(`${apiUrl}/metrics`)).text();
      console.error(
        `  guide outcomes counted by the bridge: ${metrics
          .split('\n')
          .filter((l) => l.startsWith('faultline_owner_notifications_total{kind="guide"'))
          .join('; ')}`,
      );
    }
    const warnings = bridge.server
      .output()
      .split('\n')
      .filter((l) => /^\{"level":(40|50|60),/.test(l));
    if (warnings.length > 0) {
      console.error(`the bridge logged ${warnings.length} warnings or errors; the first ones:`);
      for (const w of warnings.slice(0, 5)) console.error(`  ${w.slice(0, 300)}`);
    }
    printTable(
      `Latency (${ROUNDS} rounds of ${FAULTY} firings over ${ROUND_SECONDS} s; ${bg}; bench wall ${((performance.now() - wall0) / 1000).toFixed(0)} s)`,
      figures,
    );
    console.log(`results: ${writeResults('latency', figures)}`);
  } finally {
    stream.stop();
    await load.stop().catch(() => undefined);
    await disconnectFaulty([phases.warm, ...phases.idle, ...phases.loaded].flat()).catch(() => undefined);
    await bridge.server.stop();
    await pg?.stop();
    dir.remove();
  }
}

await main();
