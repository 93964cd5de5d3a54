/**
 * What each appliance family reports, for the rule checker: which metrics exist,
 * their types and plausible ranges, the fault codes, and how often a device
 * reports. It mirrors firmware-sim/models (a test keeps the two in step), but lives
 * here because the bridge must not depend on the simulator.
 */
import picomatch from 'picomatch';

export interface MetricSpec {
  type: 'number' | 'string' | 'boolean';
  unit?: string;
  /** Physical bounds; a condition outside them can never hold. */
  min?: number;
  max?: number;
  /** The closed set of states a string metric takes. */
  values?: readonly string[];
  description: string;
}

export interface ModelFamily {
  family: 'ac' | 'rv';
  name: string;
  /** Glob over model ids, as rule scopes write it. */
  pattern: string;
  /** Known model ids, used to decide whether a rule's model glob covers this family. */
  models: readonly string[];
  reportingIntervalMs: number;
  metrics: Readonly<Record<string, MetricSpec>>;
  faultCodes: Readonly<Record<string, string>>;
}

export const MODEL_CATALOGUE: readonly ModelFamily[] = [
  {
    family: 'ac',
    name: 'air conditioner',
    pattern: 'AC-*',
    models: ['AC-9000', 'AC-12000'],
    reportingIntervalMs: 10_000,
    metrics: {
      room_temp: { type: 'number', unit: '°C', min: -50, max: 80, description: 'indoor room temperature' },
      outdoor_temp: { type: 'number', unit: '°C', min: -50, max: 70, description: 'outdoor air temperature' },
      compressor_temp: {
        type: 'number',
        unit: '°C',
        min: -50,
        max: 150,
        description: 'compressor discharge temperature',
      },
      compressor_freq: {
        type: 'number',
        unit: 'Hz',
        min: 0,
        max: 130,
        description: 'inverter compressor frequency',
      },
      discharge_pressure: { type: 'number', unit: 'bar', min: 0, max: 60, description: 'discharge pressure' },
      current: { type: 'number', unit: 'A', min: 0, max: 40, description: 'unit supply current' },
      fan_rpm: { type: 'number', unit: 'rpm', min: 0, max: 3000, description: 'indoor fan speed' },
      mode: { type: 'string', values: ['cool', 'heat', 'fan', 'dry', 'off'], description: 'operating mode' },
    },
    faultCodes: {
      E01: 'indoor room temperature sensor open or short circuit',
      E02: 'indoor coil temperature sensor fault',
      E05: 'indoor/outdoor unit communication error',
      E07: 'indoor fan motor fault (no speed feedback)',
      EC: 'refrigerant leak detected',
      P1: 'supply voltage protection',
      P2: 'compressor overcurrent protection',
      P4: 'compressor discharge overheat protection (derating)',
    },
  },
  {
    family: 'rv',
    name: 'robot vacuum',
    pattern: 'RV-*',
    models: ['RV-200'],
    reportingIntervalMs: 5_000,
    metrics: {
      battery_temp: {
        type: 'number',
        unit: '°C',
        min: -30,
        max: 120,
        description: 'battery pack temperature',
      },
      battery_level: { type: 'number', unit: '%', min: 0, max: 100, description: 'state of charge' },
      main_brush_current: {
        type: 'number',
        unit: 'A',
        min: 0,
        max: 5,
        description: 'main brush motor current',
      },
      wheel_current_left: {
        type: 'number',
        unit: 'A',
        min: 0,
        max: 5,
        description: 'left drive wheel current',
      },
      wheel_current_right: {
        type: 'number',
        unit: 'A',
        min: 0,
        max: 5,
        description: 'right drive wheel current',
      },
      suction: { type: 'number', unit: 'Pa', min: 0, max: 10_000, description: 'suction pressure' },
      dock_state: {
        type: 'string',
        values: ['docked', 'cleaning', 'returning'],
        description: 'where the robot is in its run',
      },
      cleaning: { type: 'boolean', description: 'a cleaning run is in progress' },
    },
    faultCodes: {
      W01: 'drive wheel stuck',
      W02: 'drive wheel motor overcurrent',
      B01: 'side brush jammed',
      B02: 'main brush jammed',
      C01: 'battery low, cannot reach dock',
      C02: 'charging fault',
      C03: 'battery overheat: charging and cleaning stopped',
      S01: 'cliff sensor dirty',
      D01: 'dust bin missing',
      F01: 'suction fan fault',
    },
  },
];

/** Literal text before the first glob metacharacter. */
function literalPrefix(glob: string): string {
  const i = glob.search(/[*?[\]{}()!+@]/);
  return i < 0 ? glob : glob.slice(0, i);
}

/**
 * Families a rule's model glob can reach. A glob covers a family when it matches
 * one of the family's known models, or when the two literal prefixes overlap
 * (AC-9* reaches the AC family even if no catalogued AC model starts with AC-9).
 */
export function familiesForGlobs(globs: readonly string[]): ModelFamily[] {
  return MODEL_CATALOGUE.filter((fam) =>
    globs.some((g) => {
      const isMatch = picomatch(g);
      if (fam.models.some((m) => isMatch(m))) return true;
      const a = literalPrefix(g);
      const b = literalPrefix(fam.pattern);
      return a.startsWith(b) || (b.startsWith(a) && a !== g);
    }),
  );
}

export function familyForModel(model: string): ModelFamily | undefined {
  return MODEL_CATALOGUE.find((fam) => picomatch(fam.pattern)(model));
}
