/**
 * Runs the rule engine inside the bridge: feeds it accepted samples and faults
 * from the bus, fires its timers, saves its state with every pipeline
 * checkpoint (so a restart resumes pending timers with the downtime counted),
 * hot-reloads rule files (a broken change is refused and the old rules keep
 * running), and publishes its events on the bus for tickets and pushes.
 */
import type { FastifyInstance } from 'fastify';
import type { EventBus } from '../events/bus.js';
import type { DeviceInfo, FaultlineEvents } from '../events/types.js';
import type { Checkpointed } from '../ingest/pipeline.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/registry.js';
import type { LoadedRule } from './compile.js';
import { RuleEngine } from './engine.js';
import { formatIssue, formatWarning, type LoadResult, loadRuleFiles } from './loader.js';
import type { EngineDevice, LoadIssue, RuleEvent, RuleStateSnapshot } from './types.js';
import { type RuleWatcher, watchRules } from './watch.js';

export interface RulesServiceOptions {
  paths: string[];
  watch: boolean;
  bus: EventBus<FaultlineEvents>;
  metrics: Metrics;
  log: Logger;
  now?: () => number;
  /** Longest a timer waits, so a clock jump is noticed within this bound. */
  maxTickMs?: number;
}

export interface RegisteredDevice extends DeviceInfo {
  createdAt: string;
}

export class RulesService implements Checkpointed {
  readonly engine: RuleEngine;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private armedAt = Number.POSITIVE_INFINITY;
  private watcher: RuleWatcher | null = null;
  private loadErrors: LoadIssue[] = [];
  private loadWarnings: LoadIssue[] = [];
  private lastReloadAt: number | null = null;
  private stopped = false;

  constructor(private readonly o: RulesServiceOptions) {
    this.now = o.now ?? Date.now;
    const initial = this.load();
    this.engine = new RuleEngine({
      rules: initial.rules,
      now: this.now,
      emit: (e) => this.emit(e),
      observer: {
        evaluated: () => undefined, // counted inside the engine; read at scrape time (describeRules)
        fired: () => undefined,
        error: (ruleId, err) => this.o.log.warn({ err, ruleId }, `rule ${ruleId} failed at runtime`),
      },
    });
    o.bus.on('telemetry.accepted', 'rules', (e) => {
      this.engine.ingestTelemetry(engineDevice(e.device), e.samples, e.receivedAt);
      this.schedule();
    });
    o.bus.on('fault.accepted', 'rules', (e) => {
      this.engine.ingestFaults(engineDevice(e.device), e.faults, e.receivedAt);
      this.schedule();
    });
    o.metrics.sources.rules = () => this.engine.describeRules();
    o.metrics.sources.ruleStateBytes = () => this.engine.stateBytesEstimate();
  }

  /** Tells the engine about registered devices, so absence rules cover devices that never reported. */
  registerDevices(devices: Iterable<RegisteredDevice>): void {
    for (const d of devices)
      this.engine.registerDevice({ ...engineDevice(d), registeredAt: Date.parse(d.createdAt) });
    this.schedule();
  }

  removeDevice(id: string): void {
    this.engine.removeDevice(id);
  }

  start(): void {
    if (this.o.watch) {
      this.watcher = watchRules(
        this.o.paths,
        (rules) => this.replace(rules),
        (errors) => this.refuse(errors),
      );
    }
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.watcher?.close();
  }

  /** Reloads now (used by the API and tests; the watcher does the same on file changes). */
  reload(): LoadResult {
    const result = loadRuleFiles(this.o.paths);
    if (result.errors.length > 0) this.refuse(result.errors);
    else this.replace(result.rules, result);
    return result;
  }

  snapshot(): RuleStateSnapshot {
    return this.engine.snapshot();
  }

  restore(state: unknown): void {
    this.engine.restore(state as RuleStateSnapshot, this.now());
    this.schedule();
  }

  describe(): {
    rules: ReturnType<RuleEngine['describeRules']>;
    loadErrors: LoadIssue[];
    warnings: LoadIssue[];
    lastReloadAt: string | null;
    devices: number;
    stateBytes: number;
  } {
    return {
      rules: this.engine.describeRules(),
      loadErrors: this.loadErrors,
      warnings: this.loadWarnings,
      lastReloadAt: this.lastReloadAt === null ? null : new Date(this.lastReloadAt).toISOString(),
      devices: this.engine.deviceCount(),
      stateBytes: this.engine.stateBytesEstimate(),
    };
  }

  routes = (app: FastifyInstance): void => {
    app.get(
      '/api/v1/rules',
      {
        config: { roles: ['admin', 'engineer', 'staff'] },
        schema: { summary: 'Loaded rules with versions, firing counts and last errors', tags: ['rules'] },
      },
      async () => this.describe(),
    );
    app.post(
      '/api/v1/rules/reload',
      {
        config: { roles: ['admin', 'engineer'] },
        schema: {
          summary: 'Reload rule files now; a broken change is refused and the old rules keep running',
          tags: ['rules'],
        },
      },
      async () => {
        const r = this.reload();
        return {
          applied: r.errors.length === 0,
          errors: r.errors.map((i) => formatIssue(i)),
          warnings: r.warnings.map(formatWarning),
        };
      },
    );
  };

  private load(): LoadResult {
    const result = loadRuleFiles(this.o.paths);
    this.loadErrors = result.errors;
    this.loadWarnings = result.warnings;
    for (const e of result.errors)
      this.o.log.error({ component: 'rules' }, `rule file error: ${formatIssue(e)}`);
    this.o.log.info(
      { component: 'rules', paths: this.o.paths, rules: result.rules.length, errors: result.errors.length },
      `loaded ${result.rules.length} rules from ${this.o.paths.join(', ')}`,
    );
    return result;
  }

  private replace(rules: LoadedRule[], result?: LoadResult): void {
    const r = this.engine.replaceRules(rules);
    this.loadErrors = [];
    this.loadWarnings = result?.warnings ?? this.loadWarnings;
    this.lastReloadAt = this.now();
    this.o.log.info(
      { component: 'rules', ...r },
      `rules reloaded: ${r.kept.length} kept, ${r.reset.length} changed, ${r.added.length} added, ${r.removed.length} removed`,
    );
    this.schedule();
  }

  private refuse(errors: LoadIssue[]): void {
    this.loadErrors = errors;
    for (const e of errors)
      this.o.log.error(
        { component: 'rules' },
        `rule change refused, previous rules keep running: ${formatIssue(e)}`,
      );
  }

  private emit(e: RuleEvent): void {
    // The bus isolates listener errors; the engine never sees them.
    if (e.type === 'rule.fired') this.o.bus.emit('rule.fired', e);
    else if (e.type === 'rule.updated') this.o.bus.emit('rule.updated', e);
    else this.o.bus.emit('rule.resolved', e);
  }

  /**
   * Keeps one timer armed for the engine's next deadline (bounded). Called after every message,
   * so it only re-arms when the deadline moved earlier: a timer per message would cost more than
   * the rules.
   */
  private schedule(): void {
    if (this.stopped) return;
    const now = this.now();
    const next = this.engine.nextDeadline();
    const max = this.o.maxTickMs ?? 1_000;
    const at = next === null ? now + max : Math.min(now + max, Math.max(now, next));
    if (this.timer && this.armedAt <= at) return;
    if (this.timer) clearTimeout(this.timer);
    this.armedAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      try {
        this.engine.tick(this.now());
      } catch (err) {
        this.o.log.error({ err, component: 'rules' }, 'rule engine tick failed');
      }
      this.schedule();
    }, at - now);
    this.timer.unref();
  }
}

function engineDevice(d: DeviceInfo): EngineDevice {
  return {
    id: d.id,
    model: d.model,
    firmware: d.firmware,
    region: d.region,
    batch: d.batch,
    ownerId: d.ownerId,
    ownerLocale: d.ownerLocale,
  };
}
