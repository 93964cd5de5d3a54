/**
 * `{{name}}` templates for rule titles and descriptions. The set of names is
 * closed and checked at load time, so a typo is a load error rather than a
 * ticket titled "Overheat on {{devce.id}}".
 */
import { formatDuration } from './duration.js';

export const TEMPLATE_FIELDS = [
  'device.id',
  'device.model',
  'device.firmware',
  'device.region',
  'device.batch',
  'device.ownerId',
  'rule.id',
  'severity',
  'category',
  'metric',
  'value',
  'threshold',
  'duration',
  'occurrences',
  'code',
] as const;

const PLACEHOLDER = /\{\{\s*([^{}]*?)\s*\}\}/g;

export interface TemplatePart {
  text: string;
  field: string | null;
}

export interface TemplateProblem {
  /** Index of the placeholder in the source string. */
  index: number;
  message: string;
}

export interface CompiledTemplate {
  source: string;
  parts: TemplatePart[];
}

export function compileTemplate(
  source: string,
  paramNames: ReadonlySet<string>,
): { template: CompiledTemplate; problems: TemplateProblem[] } {
  const parts: TemplatePart[] = [];
  const problems: TemplateProblem[] = [];
  let last = 0;
  for (const m of source.matchAll(PLACEHOLDER)) {
    const index = m.index ?? 0;
    if (index > last) parts.push({ text: source.slice(last, index), field: null });
    const name = m[1] ?? '';
    const known =
      (TEMPLATE_FIELDS as readonly string[]).includes(name) ||
      (name.startsWith('params.') && paramNames.has(name.slice('params.'.length)));
    if (!known) {
      const hint = name.startsWith('params.')
        ? `no parameter "${name.slice(7)}" in params`
        : `known placeholders: ${TEMPLATE_FIELDS.join(', ')}, params.<name>`;
      problems.push({ index, message: `unknown placeholder {{${name}}}: ${hint}` });
    }
    parts.push({ text: m[0], field: name });
    last = index + m[0].length;
  }
  if (last < source.length) parts.push({ text: source.slice(last), field: null });
  return { template: { source, parts }, problems };
}

export function formatValue(value: unknown): string {
  if (value === null || value === undefined) return 'n/a';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return String(value);
    return String(Math.round(value * 100) / 100);
  }
  return String(value);
}

export interface TemplateContext {
  fields: Record<string, unknown>;
  params: Record<string, unknown>;
  /** The first leaf is an absence: show value as a duration. */
  valueIsDuration: boolean;
}

export function renderTemplate(t: CompiledTemplate, ctx: TemplateContext): string {
  let out = '';
  for (const part of t.parts) {
    if (part.field === null) {
      out += part.text;
      continue;
    }
    const f = part.field;
    if (f.startsWith('params.')) out += formatValue(ctx.params[f.slice(7)]);
    else if (f === 'duration') out += formatDuration(ctx.fields.duration as number);
    else if (f === 'value' && ctx.valueIsDuration && typeof ctx.fields.value === 'number')
      out += formatDuration(ctx.fields.value);
    else out += formatValue(ctx.fields[f]);
  }
  return out;
}
