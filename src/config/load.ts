/** Reads the YAML file, applies environment overrides, validates, freezes. */
import { readFileSync } from 'node:fs';
import { isMap, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { FaultlineError } from '../errors/catalogue.js';
import { type Config, configSchema } from './schema.js';

type Parser = (raw: string) => unknown;
const asInt: Parser = (raw) => (/^-?\d+$/.test(raw.trim()) ? Number(raw) : raw);
const asString: Parser = (raw) => raw;
const asNullablePort: Parser = (raw) => (raw === '' || raw === 'off' ? null : asInt(raw));

/** Environment variable → config path. The table is the documentation: README lists it. */
export const ENV_OVERRIDES: ReadonlyArray<{ env: string; path: string[]; parse: Parser }> = [
  { env: 'FAULTLINE_DATA_DIR', path: ['dataDir'], parse: asString },
  { env: 'FAULTLINE_LOG_LEVEL', path: ['log', 'level'], parse: asString },
  { env: 'FAULTLINE_MQTT_MODE', path: ['mqtt', 'mode'], parse: asString },
  { env: 'FAULTLINE_MQTT_HOST', path: ['mqtt', 'host'], parse: asString },
  { env: 'FAULTLINE_MQTT_PORT', path: ['mqtt', 'port'], parse: asInt },
  { env: 'FAULTLINE_WS_PORT', path: ['mqtt', 'wsPort'], parse: asNullablePort },
  { env: 'FAULTLINE_MQTT_EXTERNAL_URL', path: ['mqtt', 'external', 'url'], parse: asString },
  { env: 'FAULTLINE_MQTT_EXTERNAL_USERNAME', path: ['mqtt', 'external', 'username'], parse: asString },
  { env: 'FAULTLINE_MQTT_EXTERNAL_PASSWORD', path: ['mqtt', 'external', 'password'], parse: asString },
  { env: 'FAULTLINE_HTTP_HOST', path: ['http', 'host'], parse: asString },
  { env: 'FAULTLINE_HTTP_PORT', path: ['http', 'port'], parse: asInt },
  { env: 'FAULTLINE_ADMIN_TOKEN', path: ['http', 'adminToken'], parse: asString },
  { env: 'FAULTLINE_DATABASE_URL', path: ['database', 'url'], parse: asString },
  {
    env: 'FAULTLINE_RULES',
    path: ['rules', 'paths'],
    parse: (raw) =>
      raw
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean),
  },
  { env: 'FAULTLINE_INFLUX_URL', path: ['influx', 'url'], parse: asString },
  { env: 'FAULTLINE_INFLUX_API', path: ['influx', 'api'], parse: asString },
  { env: 'FAULTLINE_INFLUX_DB', path: ['influx', 'database'], parse: asString },
  { env: 'FAULTLINE_INFLUX_ORG', path: ['influx', 'org'], parse: asString },
  { env: 'FAULTLINE_INFLUX_BUCKET', path: ['influx', 'bucket'], parse: asString },
  { env: 'FAULTLINE_INFLUX_TOKEN', path: ['influx', 'token'], parse: asString },
  { env: 'FAULTLINE_INFLUX_USERNAME', path: ['influx', 'username'], parse: asString },
  { env: 'FAULTLINE_INFLUX_PASSWORD', path: ['influx', 'password'], parse: asString },
  {
    env: 'FAULTLINE_GUIDES',
    path: ['guides', 'paths'],
    parse: (raw) =>
      raw
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean),
  },
  { env: 'FAULTLINE_PUSH_GATEWAY_URL', path: ['push', 'gateway', 'url'], parse: asString },
  { env: 'FAULTLINE_PUSH_GATEWAY_SECRET', path: ['push', 'gateway', 'secret'], parse: asString },
  { env: 'FAULTLINE_PUSH_PUBLIC_URL', path: ['push', 'publicUrl'], parse: asString },
  { env: 'FAULTLINE_PUSH_LINK_SECRET', path: ['push', 'linkSecret'], parse: asString },
];

export interface LoadOptions {
  /** Path of the YAML file; undefined means built-in defaults. */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Applied last; tests use it to set ports and data dirs. */
  overrides?: Record<string, unknown>;
}

export interface ConfigIssue {
  path: string;
  message: string;
  /** `file:line:col` when the bad key came from the YAML file. */
  where?: string;
}

export function loadConfig(options: LoadOptions = {}): Readonly<Config> {
  const env = options.env ?? process.env;
  let raw: Record<string, unknown> = {};
  let locate: (path: PropertyKey[]) => string | undefined = () => undefined;
  if (options.file) {
    const parsed = readYaml(options.file);
    raw = parsed.value;
    locate = parsed.locate;
  }
  const fromEnv = new Set<string>();
  for (const { env: name, path, parse } of ENV_OVERRIDES) {
    const value = env[name];
    if (value === undefined) continue;
    setPath(raw, path, parse(value));
    fromEnv.add(path.join('.'));
  }
  if (options.overrides) deepMerge(raw, options.overrides);

  const result = configSchema.safeParse(raw);
  if (!result.success) {
    throw new FaultlineError('FL_CONFIG_INVALID', describeIssues(result.error, locate, fromEnv));
  }
  return deepFreeze(result.data);
}

function describeIssues(
  error: z.ZodError,
  locate: (path: PropertyKey[]) => string | undefined,
  fromEnv: Set<string>,
): string {
  const lines = error.issues.map((issue) => {
    const key = issue.path.map(String).join('.') || '(root)';
    const envName = ENV_OVERRIDES.find((o) => o.path.join('.') === key && fromEnv.has(key))?.env;
    const where = envName ? `env ${envName}` : locate(issue.path);
    const keys = issue.code === 'unrecognized_keys' ? ` (${issue.keys.join(', ')})` : '';
    return `  ${where ? `${where}: ` : ''}${key}: ${issue.message}${keys}`;
  });
  return `invalid configuration:\n${lines.join('\n')}`;
}

function readYaml(file: string): {
  value: Record<string, unknown>;
  locate: (path: PropertyKey[]) => string | undefined;
} {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new FaultlineError(
      'FL_CONFIG_INVALID',
      `cannot read config file ${file}: ${(err as Error).message}`,
    );
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((e) => {
      const pos = e.linePos?.[0];
      return `  ${file}:${pos?.line ?? 0}:${pos?.col ?? 0}: ${e.message.split('\n')[0]}`;
    });
    throw new FaultlineError('FL_CONFIG_INVALID', `invalid configuration:\n${lines.join('\n')}`);
  }
  const value = doc.toJS() ?? {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new FaultlineError(
      'FL_CONFIG_INVALID',
      `invalid configuration:\n  ${file}:1:1: expected a mapping`,
    );
  }
  const locate = (path: PropertyKey[]): string | undefined => {
    // Walk up to the deepest node that exists, so a bad value or an unknown key points at its line.
    for (let n = path.length; n >= 0; n--) {
      const node = n === 0 ? doc.contents : doc.getIn(path.slice(0, n) as unknown[], true);
      const range = (node as { range?: [number, number, number] } | undefined)?.range;
      if (range && (n > 0 || isMap(node))) {
        const { line, col } = lineCounter.linePos(range[0]);
        return `${file}:${line}:${col}`;
      }
    }
    return undefined;
  };
  return { value: value as Record<string, unknown>, locate };
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function deepMerge(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(source)) {
    const existing = target[key];
    if (isPlainObject(value) && isPlainObject(existing)) deepMerge(existing, value);
    else target[key] = value;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function deepFreeze<T>(value: T): Readonly<T> {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child);
    Object.freeze(value);
  }
  return value;
}
