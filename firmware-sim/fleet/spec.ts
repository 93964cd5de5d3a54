/**
 * Fleet description: the YAML fleet file, or the same thing built from flags,
 * expanded into one DeviceSpec per device. Expansion is deterministic: ids,
 * owners, regions, batches and fault assignments follow from seed and id alone.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DEVICE_ID_PATTERN, OWNER_ID_PATTERN } from '../../src/contract/index.js';
import { FAULTS, getFault, timingParams } from '../faults/catalogue.js';
import { getModel, MODELS, modelSlug } from '../models/index.js';
import { hash32, Rng } from '../rng.js';
import { parseDuration, parseRate } from '../units.js';

const weights = z.union([z.string().min(1), z.record(z.string().min(1), z.number().nonnegative())]);

const faultEntry = z.union([z.number().min(0).max(1), z.record(z.string(), z.unknown())]);

const groupSchema = z.strictObject({
  model: z.string().refine((m) => MODELS.has(m), {
    message: `unknown model; known models: ${[...MODELS.keys()].join(', ')}`,
  }),
  count: z.number().int().min(1).max(1_000_000),
  idPrefix: z.string().optional().describe('replaces "<fleet idPrefix><model slug>-" for this group'),
  firmware: z.string().max(64).optional(),
  region: weights.default('cn-east'),
  batch: weights.optional(),
  faults: z.record(z.string(), faultEntry).default({}),
});

const durationField = z.union([z.string(), z.number()]);

export const fleetFileSchema = z.strictObject({
  seed: z.union([z.string(), z.number()]).transform(String).default('1'),
  idPrefix: z.string().default('dev-'),
  ownerPrefix: z.string().default('owner-'),
  /** Devices share owners when there are fewer households than devices (an AC and a vacuum in one home). */
  households: z.number().int().min(1).optional(),
  locales: z.record(z.string(), z.number().nonnegative()).default({ 'zh-CN': 0.7, en: 0.3 }),
  start: z.string().optional(),
  duration: durationField.optional(),
  speed: z.union([z.number().positive(), z.literal('max')]).optional(),
  qos: z.union([z.literal(0), z.literal(1)]).optional(),
  connectRate: z.union([z.string(), z.number()]).optional(),
  groups: z.array(groupSchema).min(1),
});

export type FleetFile = z.infer<typeof fleetFileSchema>;
export type FleetGroup = z.infer<typeof groupSchema>;

export interface FaultAssignment {
  name: string;
  params: Record<string, unknown>;
  /** Offset from the run start, ms; filled in at expansion. */
  atMs: number;
  /** How long it lasts, ms; undefined: to the end of the run. */
  forMs: number | undefined;
}

export interface DeviceSpec {
  id: string;
  model: string;
  firmware: string;
  ownerId: string;
  ownerLocale: string;
  region: string;
  batch: string;
  faults: FaultAssignment[];
}

interface FaultRule {
  name: string;
  fraction: number | undefined;
  count: number | undefined;
  batch: string | undefined;
  region: string | undefined;
  atMs: number | undefined;
  forMs: number | undefined;
  params: Record<string, unknown>;
}

/** Parses and validates a fleet file; throws an Error naming the path of each problem. */
export function loadFleetFile(path: string): FleetFile {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read fleet file ${path}: ${(err as Error).message}`);
  }
  return parseFleet(raw, path);
}

export function parseFleet(raw: unknown, source = 'fleet'): FleetFile {
  const parsed = fleetFileSchema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new Error(`invalid ${source}:\n${lines.join('\n')}`);
  }
  const fleet = parsed.data;
  // Surface bad fault names and parameters now rather than halfway through a run.
  fleet.groups.forEach((g, gi) => {
    for (const [name, entry] of Object.entries(g.faults))
      faultRule(name, entry, g.model, `${source}: groups.${gi}.faults.${name}`);
  });
  if (fleet.duration !== undefined) parseDuration(fleet.duration);
  if (fleet.connectRate !== undefined) parseRate(fleet.connectRate);
  return fleet;
}

function faultRule(name: string, entry: unknown, model: string, where: string): FaultRule {
  const def = FAULTS.get(name);
  if (!def) throw new Error(`${where}: unknown fault; known faults: ${[...FAULTS.keys()].join(', ')}`);
  const family = getModel(model).family;
  if (!def.families.includes(family)) {
    throw new Error(
      `${where}: fault ${name} does not apply to ${model} (it is for ${def.families.join(', ')})`,
    );
  }
  const obj: Record<string, unknown> =
    typeof entry === 'number' ? { fraction: entry } : { ...(entry as object) };
  const { fraction, count, batch, region, at, for: forValue, ...rest } = obj;
  if (fraction !== undefined && (typeof fraction !== 'number' || fraction < 0 || fraction > 1)) {
    throw new Error(`${where}: fraction must be a number from 0 to 1`);
  }
  if (count !== undefined && (typeof count !== 'number' || !Number.isInteger(count) || count < 0)) {
    throw new Error(`${where}: count must be a whole number`);
  }
  if (fraction !== undefined && count !== undefined)
    throw new Error(`${where}: give fraction or count, not both`);
  const timing = timingParams.safeParse({ at, for: forValue });
  if (!timing.success) throw new Error(`${where}: ${timing.error.issues.map((i) => i.message).join('; ')}`);
  const params = def.params.safeParse(rest);
  if (!params.success) {
    const lines = params.error.issues.map((i) => `${i.path.join('.') || name}: ${i.message}`);
    throw new Error(`${where}: ${lines.join('; ')}`);
  }
  return {
    name,
    fraction: fraction as number | undefined,
    count: count as number | undefined,
    batch: batch === undefined ? undefined : String(batch),
    region: region === undefined ? undefined : String(region),
    atMs: timing.data.at,
    forMs: timing.data.for,
    params: params.data as Record<string, unknown>,
  };
}

export interface FlagFleetOptions {
  devices: number;
  model: string;
  seed?: string;
  idPrefix?: string;
  region?: string;
  batch?: string;
  firmware?: string;
  faults?: string[];
}

/**
 * `--fault` syntax: `name` (every device), `name=0.05` (a fraction of devices),
 * `name=3` (exactly three devices), followed by `,param=value` pairs:
 * `overheat=1,at=30m,peak=60`.
 */
export function parseFaultFlag(text: string): [string, Record<string, unknown>] {
  const [head, ...pairs] = text.split(',');
  const [name, selector] = head!.split('=');
  if (!name) throw new Error(`invalid --fault "${text}"`);
  const entry: Record<string, unknown> = {};
  if (selector !== undefined) {
    const n = Number(selector);
    if (!Number.isFinite(n) || n < 0)
      throw new Error(`invalid --fault "${text}": ${selector} is not a fraction or count`);
    if (Number.isInteger(n) && n >= 1 && !selector.includes('.')) entry.count = n;
    else entry.fraction = n;
  } else {
    entry.fraction = 1;
  }
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`invalid --fault "${text}": expected key=value, got "${pair}"`);
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    entry[key] = /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value;
  }
  return [name, entry];
}

export function fleetFromFlags(o: FlagFleetOptions): FleetFile {
  const faults: Record<string, unknown> = {};
  for (const f of o.faults ?? []) {
    const [name, entry] = parseFaultFlag(f);
    faults[name] = entry;
  }
  return parseFleet(
    {
      ...(o.seed !== undefined ? { seed: o.seed } : {}),
      ...(o.idPrefix !== undefined ? { idPrefix: o.idPrefix } : {}),
      groups: [
        {
          model: o.model,
          count: o.devices,
          faults,
          ...(o.region !== undefined ? { region: o.region } : {}),
          ...(o.batch !== undefined ? { batch: o.batch } : {}),
          ...(o.firmware !== undefined ? { firmware: o.firmware } : {}),
        },
      ],
    },
    'flags',
  );
}

function pickWeighted(value: string | Record<string, number>, rng: Rng): string {
  return typeof value === 'string' ? value : rng.weighted(value);
}

/** Default start of physics faults when the fleet does not say: 5-30 % into the run. */
const DEFAULT_SPAN_MS = 2 * 3_600_000;

export interface ExpandOptions {
  /** Length of the run in device time, if known; places the default fault start times. */
  durationMs?: number | undefined;
}

export function expandFleet(fleet: FleetFile, opts: ExpandOptions = {}): DeviceSpec[] {
  const seed = fleet.seed;
  const counters = new Map<string, number>();
  const total = fleet.groups.reduce((n, g) => n + g.count, 0);
  const households = fleet.households ?? total;
  const span = opts.durationMs ?? DEFAULT_SPAN_MS;
  const devices: DeviceSpec[] = [];
  const seen = new Set<string>();
  let globalIndex = 0;

  fleet.groups.forEach((group, gi) => {
    const model = getModel(group.model);
    const prefix = group.idPrefix ?? `${fleet.idPrefix}${modelSlug(group.model)}-`;
    const groupDevices: DeviceSpec[] = [];
    for (let i = 0; i < group.count; i++) {
      const n = (counters.get(prefix) ?? 0) + 1;
      counters.set(prefix, n);
      const id = `${prefix}${String(n).padStart(5, '0')}`;
      if (!DEVICE_ID_PATTERN.test(id)) throw new Error(`groups.${gi}: device id "${id}" is not valid`);
      if (seen.has(id)) throw new Error(`groups.${gi}: device id "${id}" appears twice; set idPrefix`);
      seen.add(id);
      const rng = Rng.for(seed, id, 'registry');
      const ownerIndex =
        households >= total ? globalIndex : hash32(`${seed}\u0000${id}\u0000owner`) % households;
      const ownerId = `${fleet.ownerPrefix}${String(ownerIndex + 1).padStart(5, '0')}`;
      if (!OWNER_ID_PATTERN.test(ownerId)) throw new Error(`owner id "${ownerId}" is not valid`);
      // Locale belongs to the household, so every device of one owner speaks the same language.
      const ownerLocale = Rng.for(seed, ownerId, 'locale').weighted(fleet.locales);
      globalIndex++;
      groupDevices.push({
        id,
        model: model.id,
        firmware: group.firmware ?? model.defaultFirmware,
        ownerId,
        ownerLocale,
        region: pickWeighted(group.region, rng),
        batch: pickWeighted(group.batch ?? `${model.id}-B1`, rng),
        faults: [],
      });
    }

    for (const [name, entry] of Object.entries(group.faults)) {
      const rule = faultRule(name, entry, group.model, `groups.${gi}.faults.${name}`);
      const eligible = groupDevices.filter(
        (d) =>
          (rule.batch === undefined || d.batch === rule.batch) &&
          (rule.region === undefined || d.region === rule.region),
      );
      let chosen: DeviceSpec[];
      if (rule.count !== undefined) {
        // Ranked by a hash so "count: 2" picks the same two devices on every run, independent of list order.
        const rank = (d: DeviceSpec) => hash32(`${seed}\u0000${d.id}\u0000pick:${name}`);
        chosen = [...eligible]
          .sort((a, b) => rank(a) - rank(b) || (a.id < b.id ? -1 : 1))
          .slice(0, rule.count);
      } else {
        const fraction = rule.fraction ?? 1;
        chosen = eligible.filter((d) => Rng.for(seed, d.id, `pick:${name}`).next() < fraction);
      }
      const def = getFault(name);
      for (const d of chosen) {
        const timing = Rng.for(seed, d.id, `timing:${name}`);
        const defaultAt = def.defaultAt === 'start' ? 0 : Math.round(span * timing.uniform(0.05, 0.3));
        d.faults.push({
          name,
          params: rule.params,
          atMs: rule.atMs ?? defaultAt,
          forMs: rule.forMs ?? def.defaultForMs,
        });
      }
    }
    devices.push(...groupDevices);
  });
  return devices;
}
