/**
 * The rule file format (apiVersion faultline/v1). This zod schema is the one
 * definition: the loader validates with it and rules/schema.json is generated
 * from it, so editors autocomplete exactly what the loader accepts.
 * It stays free of transforms so the JSON Schema export is exact; normalising
 * (durations to ms, params resolved) happens in compile.ts.
 */
import { z } from 'zod';
import { FAULT_CODE_PATTERN, METRIC_NAME_PATTERN } from '../contract/index.js';
import { DURATION_HINT, DURATION_PATTERN } from './duration.js';

export const API_VERSION = 'faultline/v1';
export const SEVERITIES = ['info', 'minor', 'major', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];
export const CATEGORIES = [
  'hardware_fault',
  'performance',
  'usability',
  'feature_request',
  'service_complaint',
] as const;
export type Category = (typeof CATEGORIES)[number];
export const COMPARISONS = ['>', '>=', '<', '<=', '==', '!='] as const;
export type Comparison = (typeof COMPARISONS)[number];
export const AGGREGATES = ['avg', 'min', 'max', 'count', 'rate'] as const;
export type AggregateFn = (typeof AGGREGATES)[number];
/** Order matters: the loader maps a failed union branch back to the kind its key names. */
export const CONDITION_KINDS = ['all', 'any', 'not', 'threshold', 'aggregate', 'faults', 'absent'] as const;
export type ConditionKind = (typeof CONDITION_KINDS)[number];

export const PARAM_REF_PATTERN = /^\$[A-Za-z_][A-Za-z0-9_]*$/;
const PARAM_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

const durationText = z
  .string({ error: `expected a duration string: ${DURATION_HINT}` })
  .regex(DURATION_PATTERN, { error: (iss) => `bad duration "${String(iss.input)}": ${DURATION_HINT}` });
const duration = durationText.describe(`How long; ${DURATION_HINT}`);
/** Durations a rule may vary per model or device through params. */
const durationOrParam = z
  .string({ error: `expected a duration string (${DURATION_HINT}) or a $param` })
  .regex(new RegExp(`${DURATION_PATTERN.source}|${PARAM_REF_PATTERN.source}`), {
    error: (iss) => `bad duration "${String(iss.input)}": ${DURATION_HINT}, or a $param naming a duration`,
  })
  .describe(`How long; ${DURATION_HINT}; or $name to take it from params`);

const metricName = z
  .string()
  .regex(METRIC_NAME_PATTERN, 'metric names are snake_case, 1-63 chars')
  .describe('Metric name as the device reports it');
const faultCode = z.string().regex(FAULT_CODE_PATTERN, 'fault codes are 1-32 chars of A-Z a-z 0-9 _ . -');
const scalar = z
  .union([z.number(), z.string(), z.boolean()], { error: 'expected a number, string or boolean' })
  .describe('A literal, or "$name" to use a parameter (write "$$" for a literal leading "$")');
const comparison = z
  .enum(COMPARISONS)
  .describe('Comparison; < <= > >= need numbers, == != work on any value');
const globs = z
  .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
  .describe('Model glob or list of globs (picomatch), e.g. "AC-*" or ["AC-9*", "AC-12*"]');

export const thresholdSchema = z
  .strictObject({
    metric: metricName,
    op: comparison,
    value: scalar,
    for: durationOrParam
      .optional()
      .describe(
        'The comparison must have held continuously this long (on device time) for the leaf to be true',
      ),
  })
  .describe(
    'Latest value of a metric compared with a value; the value is held until maxGap after its sample',
  );

export const aggregateSchema = z
  .strictObject({
    metric: metricName,
    fn: z
      .enum(AGGREGATES)
      .describe('avg, min, max, count (samples in the window), rate (change per minute, last minus first)'),
    window: duration.describe('Sliding window length'),
    step: duration
      .optional()
      .describe(
        'Bucket size the window is kept in (default window/12); the window must be a whole number of steps',
      ),
    minSamples: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe('Fewer samples in the window make the aggregate unknown (default 1, rate 2)'),
    where: z
      .strictObject({ metric: metricName, op: comparison, value: scalar })
      .optional()
      .describe('Only samples taken while this holds enter the window (e.g. compressor_freq > 0)'),
    op: comparison,
    value: scalar,
  })
  .describe('An aggregate over a sliding window compared with a value');

export const faultsSchema = z
  .strictObject({
    code: faultCode.optional().describe('One fault code'),
    codes: z.array(faultCode).min(1).optional().describe('A set of fault codes; any of them counts'),
    count: z
      .union([z.number().int().min(1).max(1000), z.string().regex(PARAM_REF_PATTERN)])
      .optional()
      .describe('At least this many occurrences (default 1), or a $param'),
    within: duration.describe('Window the occurrences must fall in'),
  })
  .describe('A fault code (or any of a set) reported at least count times within a window');

export const absentSchema = z
  .strictObject({
    metric: metricName.optional().describe('Without metric: no message at all'),
    for: durationOrParam.describe(
      'Silence longer than this makes the leaf true; or $name to take it from params (per model, region or device)',
    ),
  })
  .describe(
    'No message (or no value of one metric) for a duration; counts from registration for a device that never reported',
  );

export type ThresholdInput = z.input<typeof thresholdSchema>;
export type AggregateInput = z.input<typeof aggregateSchema>;
export type FaultsInput = z.input<typeof faultsSchema>;
export type AbsentInput = z.input<typeof absentSchema>;
export type ConditionInput =
  | { all: ConditionInput[] }
  | { any: ConditionInput[] }
  | { not: ConditionInput }
  | { threshold: ThresholdInput }
  | { aggregate: AggregateInput }
  | { faults: FaultsInput }
  | { absent: AbsentInput };

// The union is built once and the lazy returns that same object: zod's JSON Schema
// export detects the recursion by identity, and a getter building new schemas never ends.
export const conditionSchema: z.ZodType<ConditionInput, ConditionInput> = z.lazy(() => conditionUnion);
const conditionUnion: z.ZodType<ConditionInput, ConditionInput> = z
  .union([
    z.strictObject({ all: z.array(conditionSchema).min(1).describe('True when every condition is true') }),
    z.strictObject({ any: z.array(conditionSchema).min(1).describe('True when one condition is true') }),
    z.strictObject({ not: conditionSchema.describe('True when the condition is false') }),
    z.strictObject({ threshold: thresholdSchema }),
    z.strictObject({ aggregate: aggregateSchema }),
    z.strictObject({ faults: faultsSchema }),
    z.strictObject({ absent: absentSchema }),
  ])
  .describe(`A condition: exactly one of ${CONDITION_KINDS.join(', ')}`)
  .meta({ id: 'condition' });

const paramValue = z.union([z.number(), z.string(), z.boolean()]);
const paramRecord = z.record(
  z.string().regex(PARAM_NAME_PATTERN, 'parameter names are identifiers'),
  paramValue,
);

export const ruleSchema = z
  .strictObject({
    id: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'rule ids are 1-64 chars of a-z 0-9 . _ - (lowercase)')
      .describe('Stable id: part of the fingerprint, so renaming a rule opens new incidents'),
    title: z
      .string()
      .min(1)
      .max(200)
      .describe('Ticket title; {{device.id}}, {{value}}, {{duration}}, {{params.x}} ... are filled in'),
    description: z.string().max(4000).optional().describe('Ticket text; same placeholders as title'),
    enabled: z
      .boolean()
      .optional()
      .describe('false keeps the rule loaded but never evaluated (default true)'),
    scope: z
      .strictObject({
        models: globs.optional().describe('Model globs (default "*": every model)'),
        firmware: z
          .string()
          .optional()
          .describe('semver range the device firmware must satisfy, e.g. ">=3.0.0 <3.3"'),
        regions: z.array(z.string().min(1)).min(1).optional().describe('Device regions the rule applies to'),
      })
      .optional()
      .describe('Which devices the rule applies to'),
    severity: z.enum(SEVERITIES).describe('Severity when the rule fires'),
    category: z.enum(CATEGORIES).optional().describe('Ticket category (default hardware_fault)'),
    safety: z
      .boolean()
      .optional()
      .describe('A safety rule: the integrator pages at once and breaks quiet hours'),
    actions: z
      .strictObject({
        ticket: z.boolean().optional().describe('Open a service ticket (default true)'),
        guide: z
          .union([z.boolean(), z.string().min(1)])
          .optional()
          .describe(
            'Push a guide to the owner: true (the guide named like the rule) or a guide id (default false)',
          ),
        autoClose: z.boolean().optional().describe('Close the ticket when the rule resolves (default false)'),
      })
      .optional(),
    labels: z
      .record(z.string(), z.string())
      .optional()
      .describe('Free-form labels passed through on every event'),
    params: paramRecord
      .optional()
      .describe('Named values conditions refer to as "$name" and templates as {{params.name}}'),
    overrides: z
      .array(
        z.strictObject({
          models: globs.optional(),
          regions: z.array(z.string().min(1)).min(1).optional(),
          devices: z.array(z.string().min(1)).min(1).optional().describe('Device ids'),
          params: paramRecord,
        }),
      )
      .optional()
      .describe(
        'Parameter overrides; model and region overrides apply in order, then device overrides in order',
      ),
    when: conditionSchema.describe('The raise condition'),
    gate: conditionSchema
      .optional()
      .describe(
        'The rule only applies while this holds: when false, pending is reset; it never resolves an incident',
      ),
    for: durationOrParam
      .optional()
      .describe('The raise condition must hold this long before the rule fires (default 0)'),
    clear: z
      .strictObject({
        when: conditionSchema.optional().describe('Clear condition (default: the raise condition is false)'),
        for: durationOrParam.optional().describe('The clear condition must hold this long (default 0)'),
      })
      .optional()
      .describe('Hysteresis: a separate condition and duration to resolve'),
    maxGap: duration
      .optional()
      .describe(
        'A value is held this long after its sample; a longer gap resets pending and clearing timers (default 5m)',
      ),
    cooldown: duration
      .optional()
      .describe('After a resolution the rule cannot fire again for this long (default 0)'),
    escalate: z
      .array(z.strictObject({ after: duration, severity: z.enum(SEVERITIES) }))
      .optional()
      .describe('Raise the severity while an incident stays open this long'),
    flapping: z
      .union([
        z.literal(false),
        z.strictObject({
          transitions: z
            .number()
            .int()
            .min(2)
            .optional()
            .describe('Transitions that mean flapping (default 4)'),
          within: duration.optional().describe('Window the transitions are counted in (default 1h)'),
          holdOpen: duration
            .optional()
            .describe(
              'While flapping, resolve only after the condition stayed clear this long (default 30m)',
            ),
        }),
      ])
      .optional()
      .describe('Flap control (on by default); false turns it off'),
    fingerprint: z
      .enum(['rule+device', 'device+code'])
      .optional()
      .describe(
        'rule+device: "<rule>:<device>"; device+code (fault rules): "<device>:fault:<code>", one incident per code',
      ),
  })
  .describe('One rule');

export const ruleFileSchema = z
  .strictObject({
    $schema: z.string().optional().describe('Path to rules/schema.json, for editors'),
    apiVersion: z.literal(API_VERSION).describe(`Always ${API_VERSION}`),
    rules: z.array(ruleSchema).describe('The rules of this file'),
  })
  .describe('A Faultline rule file');

export type RuleInput = z.input<typeof ruleSchema>;
export type RuleFileInput = z.input<typeof ruleFileSchema>;

/** The JSON Schema of rule files, for editors (written to rules/schema.json). */
export function exportRuleJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(ruleFileSchema, { io: 'input', target: 'draft-2020-12' }) as Record<
    string,
    unknown
  >;
  return {
    ...schema,
    $id: 'https://faultline.dev/schemas/rules-v1.json',
    title: 'Faultline rule file (faultline/v1)',
  };
}

/** Stable text of the schema file: two-space JSON with a trailing newline. */
export function ruleJsonSchemaText(): string {
  return `${JSON.stringify(exportRuleJsonSchema(), null, 2)}\n`;
}
