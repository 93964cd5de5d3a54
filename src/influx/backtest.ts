/**
 * `faultline rules backtest`: runs rules over the history in InfluxDB, with the
 * same engine and a virtual clock (src/rules/replay.ts), and reports per rule the
 * tickets that would have opened and how many per day. It is how a hardware
 * engineer tunes a threshold before shipping it: "at 95 °C for 10 minutes, how
 * many tickets would last month have opened, and on which units?"
 *
 * History carries no server arrival time, so each sample counts as arriving at its
 * device time (a device with an exact clock and no delay).
 */
import type { Config } from '../config/schema.js';
import type { LoadedRule } from '../rules/compile.js';
import { DURATION_PATTERN, parseDuration } from '../rules/duration.js';
import { formatIssue, loadRuleFiles } from '../rules/loader.js';
import { type ReplayItem, replayHistory } from '../rules/replay.js';
import type { EngineDevice, RuleEvent, RuleFired, RuleResolved } from '../rules/types.js';
import { MEASUREMENTS } from './line-protocol.js';
import { type HistoryRow, InfluxReader, type ReaderSettings } from './reader.js';
import { DISABLED_MESSAGE } from './routes.js';

export const DEFAULT_MAX_ITEMS = 1_000_000;

export interface BacktestOptions {
  rules: LoadedRule[];
  reader: InfluxReader;
  from: number;
  to: number;
  /** One device; else every device with history (of `model`, when given). */
  device?: string | undefined;
  model?: string | undefined;
  /** Refuse to load more samples and faults than this (they are replayed in memory). */
  maxItems?: number;
  progress?: (message: string) => void;
}

export interface BacktestTicket {
  device: string;
  model: string;
  /** Device time the incident opened. */
  openedAt: string;
  severity: string;
  title: string;
  /** When it cleared within the range; null if it would still be open at `to`. */
  resolvedAt: string | null;
  durationMs: number | null;
}

export interface BacktestRuleReport {
  id: string;
  title: string;
  severity: string;
  /** Whether an incident of this rule opens a ticket (actions.ticket). */
  opensTickets: boolean;
  incidents: number;
  /** Incidents per UTC day of opening, YYYY-MM-DD → count, days without any left out. */
  perDay: Record<string, number>;
  tickets: BacktestTicket[];
}

export interface BacktestReport {
  from: string;
  to: string;
  devices: number;
  samples: number;
  faults: number;
  rules: BacktestRuleReport[];
}

export class BacktestTooLargeError extends Error {}

export async function runBacktest(o: BacktestOptions): Promise<BacktestReport> {
  const maxItems = o.maxItems ?? DEFAULT_MAX_ITEMS;
  const ids = o.device ? [o.device] : await o.reader.devices(o.model);
  o.progress?.(`${ids.length} device(s) with history${o.model ? ` of model ${o.model}` : ''}`);
  const metrics = metricsToRead(o.rules);
  const devices = new Map<string, EngineDevice>();
  const perDevice: ReplayItem[][] = [];
  let samples = 0;
  let faults = 0;
  for (const id of ids) {
    const items: ReplayItem[] = [];
    const remember = (row: HistoryRow) => {
      if (!devices.has(id)) devices.set(id, engineDevice(id, row.tags));
    };
    if (metrics === undefined || metrics.length > 0) {
      for await (const page of o.reader.scan(MEASUREMENTS.telemetry, id, o.from, o.to, metrics)) {
        for (const row of page) {
          remember(row);
          items.push({ deviceId: id, ts: row.ts, metrics: row.fields });
        }
        samples += page.length;
        if (samples + faults > maxItems) throw tooLarge(maxItems);
      }
    }
    for await (const page of o.reader.scan(MEASUREMENTS.faults, id, o.from, o.to)) {
      for (const row of page) {
        remember(row);
        const code = row.fields.code;
        if (typeof code !== 'string') continue;
        const detail = row.fields.detail;
        items.push(
          typeof detail === 'string'
            ? { deviceId: id, ts: row.ts, code, detail }
            : { deviceId: id, ts: row.ts, code },
        );
        faults++;
      }
      if (samples + faults > maxItems) throw tooLarge(maxItems);
    }
    if (items.length > 0) perDevice.push(items.sort((a, b) => a.ts - b.ts));
  }
  o.progress?.(`replaying ${samples} sample(s) and ${faults} fault event(s)`);
  const ordered = mergeByTime(perDevice);
  const events = replayHistory(o.rules, [...devices.values()], ordered, { start: o.from, until: o.to });
  return {
    from: new Date(o.from).toISOString(),
    to: new Date(o.to).toISOString(),
    devices: devices.size,
    samples,
    faults,
    rules: report(o.rules, events),
  };
}

/**
 * The metrics the rules read, so a backtest does not pull every field of every sample.
 * Undefined (read every field) when a rule watches for silence: any message counts then.
 */
function metricsToRead(rules: LoadedRule[]): string[] | undefined {
  if (rules.some((r) => r.messageAbsence)) return undefined;
  return [...new Set(rules.flatMap((r) => r.metrics))].sort();
}

function engineDevice(id: string, tags: Record<string, string>): EngineDevice {
  return {
    id,
    model: tags.model ?? 'unknown',
    firmware: tags.firmware ?? null,
    region: tags.region ?? null,
    batch: tags.batch ?? null,
    ownerId: null,
    ownerLocale: null,
  };
}

function tooLarge(max: number): BacktestTooLargeError {
  return new BacktestTooLargeError(
    `more than ${max} samples and fault events in range: narrow it with --from/--to, --device or --model, or raise --max-items`,
  );
}

/** Merges per-device lists, each already in time order, into one (device order breaks ties). */
function mergeByTime(lists: ReplayItem[][]): ReplayItem[] {
  const out: ReplayItem[] = [];
  const heads = lists.map(() => 0);
  // A binary heap of list indexes keyed by their head item's ts.
  const heap: number[] = [];
  const key = (l: number) => lists[l]![heads[l]!]!.ts;
  const less = (a: number, b: number) => key(a) < key(b) || (key(a) === key(b) && a < b);
  const push = (l: number) => {
    heap.push(l);
    for (let i = heap.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (!less(heap[i]!, heap[p]!)) break;
      [heap[i], heap[p]] = [heap[p]!, heap[i]!];
      i = p;
    }
  };
  const pop = (): number => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && less(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && less(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    return top;
  };
  lists.forEach((list, l) => {
    if (list.length > 0) push(l);
  });
  while (heap.length > 0) {
    const l = pop();
    out.push(lists[l]![heads[l]!]!);
    heads[l]!++;
    if (heads[l]! < lists[l]!.length) push(l);
  }
  return out;
}

function report(rules: LoadedRule[], events: RuleEvent[]): BacktestRuleReport[] {
  const resolved = new Map<string, RuleResolved>();
  for (const e of events) if (e.type === 'rule.resolved') resolved.set(e.incidentId, e);
  const byRule = new Map<string, RuleFired[]>();
  for (const e of events) {
    if (e.type !== 'rule.fired') continue;
    const list = byRule.get(e.ruleId) ?? [];
    list.push(e);
    byRule.set(e.ruleId, list);
  }
  return rules.map((rule) => {
    const fired = byRule.get(rule.id) ?? [];
    const perDay: Record<string, number> = {};
    for (const f of fired) {
      const day = new Date(f.firingSince).toISOString().slice(0, 10);
      perDay[day] = (perDay[day] ?? 0) + 1;
    }
    return {
      id: rule.id,
      title: rule.title,
      severity: rule.severity,
      opensTickets: rule.actions.ticket,
      incidents: fired.length,
      perDay,
      tickets: fired.map((f) => {
        const end = resolved.get(f.incidentId);
        return {
          device: f.device.id,
          model: f.device.model,
          openedAt: new Date(f.firingSince).toISOString(),
          severity: f.severity,
          title: f.title,
          resolvedAt: end ? new Date(end.resolvedAt).toISOString() : null,
          durationMs: end ? end.durationMs : null,
        };
      }),
    };
  });
}

/** The report as text: per rule, the count, the days, and one line per ticket. */
export function formatBacktest(r: BacktestReport): string {
  const out: string[] = [
    `Backtest ${r.from} .. ${r.to}: ${r.devices} device(s), ${r.samples} sample(s), ${r.faults} fault event(s)`,
    '',
  ];
  for (const rule of r.rules) {
    const noun = rule.opensTickets ? 'ticket' : 'incident (no ticket)';
    out.push(`${rule.id} [${rule.severity}]: ${rule.incidents} ${noun}${rule.incidents === 1 ? '' : 's'}`);
    const days = Object.entries(rule.perDay).sort(([a], [b]) => a.localeCompare(b));
    if (days.length > 0) out.push(`  per day: ${days.map(([d, n]) => `${d} ${n}`).join(', ')}`);
    for (const t of rule.tickets) {
      const end = t.resolvedAt ? `cleared ${t.resolvedAt}` : 'still open at the end';
      out.push(`  ${t.openedAt}  ${t.device} (${t.model})  ${t.severity}  ${t.title}  [${end}]`);
    }
  }
  return `${out.join('\n')}\n`;
}

export interface BacktestCommandOptions {
  config: Readonly<Config>;
  paths: string[];
  from: string;
  to?: string | undefined;
  device?: string | undefined;
  model?: string | undefined;
  json?: boolean | undefined;
  maxItems?: string | undefined;
  now?: number;
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

/** A time on the command line: ISO 8601 (a date alone is UTC midnight) or a duration back from now (7d, 36h). */
export function parseTime(text: string, now: number): number {
  if (DURATION_PATTERN.test(text.trim())) return now - parseDuration(text);
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) throw new Error(`"${text}" is neither an ISO 8601 time nor a duration such as 7d`);
  return ms;
}

/** Runs the command; resolves with the exit code (0 done, 1 InfluxDB failed, 2 bad rules or usage). */
export async function backtestCommand(o: BacktestCommandOptions): Promise<number> {
  const now = o.now ?? Date.now();
  let from: number;
  let to: number;
  try {
    from = parseTime(o.from, now);
    to = o.to === undefined ? now : parseTime(o.to, now);
  } catch (err) {
    o.stderr.write(`faultline rules backtest: ${(err as Error).message}\n`);
    return 2;
  }
  if (!(from < to)) {
    o.stderr.write('faultline rules backtest: --from must be before --to\n');
    return 2;
  }
  if (!o.config.influx.url) {
    o.stderr.write(`faultline rules backtest: ${DISABLED_MESSAGE}\n`);
    return 2;
  }
  const configured = (o.config as { rules?: { paths?: string[] } }).rules?.paths;
  const paths = o.paths.length > 0 ? o.paths : (configured ?? ['rules']);
  const loaded = loadRuleFiles(paths);
  for (const w of loaded.warnings) o.stderr.write(`${formatIssue(w, 'warning')}\n`);
  if (loaded.errors.length > 0) {
    for (const e of loaded.errors) o.stderr.write(`${formatIssue(e)}\n`);
    o.stderr.write(`faultline rules backtest: the rules in ${paths.join(', ')} do not load\n`);
    return 2;
  }
  const rules = loaded.rules.filter((r) => r.enabled);
  if (rules.length === 0) {
    o.stderr.write(`faultline rules backtest: no enabled rules in ${paths.join(', ')}\n`);
    return 2;
  }
  const reader = new InfluxReader(o.config.influx as ReaderSettings);
  let result: BacktestReport;
  try {
    result = await runBacktest({
      rules,
      reader,
      from,
      to,
      device: o.device,
      model: o.model,
      maxItems: o.maxItems === undefined ? DEFAULT_MAX_ITEMS : Number(o.maxItems),
      progress: (m) => o.stderr.write(`${m}\n`),
    });
  } catch (err) {
    o.stderr.write(`faultline rules backtest: ${(err as Error).message}\n`);
    return err instanceof BacktestTooLargeError ? 2 : 1;
  }
  o.stdout.write(o.json ? `${JSON.stringify(result, null, 2)}\n` : formatBacktest(result));
  return 0;
}
