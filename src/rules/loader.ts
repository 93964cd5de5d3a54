/**
 * Loads rule files and reports every problem as file:line:col, using the yaml
 * parser's node ranges. A file with an error contributes no rules at all, so a
 * half-valid edit never changes what runs; the caller decides whether to keep the
 * previous rules (the watcher does).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  type Document,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseAllDocuments,
} from 'yaml';
import { z } from 'zod';
import { checkRule } from './check.js';
import { compileRule, type LoadedRule } from './compile.js';
import {
  absentSchema,
  aggregateSchema,
  CONDITION_KINDS,
  faultsSchema,
  type RuleInput,
  ruleFileSchema,
  ruleSchema,
  thresholdSchema,
} from './schema.js';
import type { LoadIssue } from './types.js';

export interface LoadResult {
  rules: LoadedRule[];
  errors: LoadIssue[];
  warnings: LoadIssue[];
}

export function isRuleFile(name: string): boolean {
  return /\.ya?ml$/.test(name) && !/\.test\.ya?ml$/.test(name);
}

export function isRuleTestFile(name: string): boolean {
  return /\.test\.ya?ml$/.test(name);
}

/** Files and directories to rule files: a directory means its *.yaml (not *.test.yaml), sorted. */
export function expandPaths(
  paths: readonly string[],
  accept: (name: string) => boolean = isRuleFile,
): string[] {
  const out: string[] = [];
  for (const p of paths) {
    let isDir = false;
    try {
      isDir = statSync(p).isDirectory();
    } catch {
      // A missing path is reported by the reader with its name.
    }
    if (isDir) {
      for (const name of readdirSync(p).sort()) if (accept(name)) out.push(join(p, name));
    } else out.push(p);
  }
  return out;
}

type Path = Array<string | number>;

interface Located {
  node: Node | null;
  /** The key node when the path ends at a map entry. */
  key: Node | null;
  /** How much of the path was found. */
  depth: number;
}

function locate(doc: Document, path: Path): Located {
  let node = doc.contents as Node | null;
  let key: Node | null = null;
  let depth = 0;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find(
        (p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg),
      );
      if (!pair) break;
      key = pair.key as Node;
      node = (pair.value as Node | null) ?? (pair.key as Node);
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as Node | undefined;
      if (!item) break;
      key = null;
      node = item;
    } else break;
    depth++;
  }
  return { node, key, depth };
}

function valueAt(root: unknown, path: Path): unknown {
  let v = root;
  for (const seg of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string | number, unknown>)[seg];
  }
  return v;
}

interface FlatIssue {
  path: Path;
  message: string;
  /** Point at this key of the object at path instead of the object. */
  key?: string;
}

const KEYS_BY_PARENT: Record<string, readonly string[]> = {
  threshold: Object.keys(thresholdSchema.shape),
  aggregate: Object.keys(aggregateSchema.shape),
  faults: Object.keys(faultsSchema.shape),
  absent: Object.keys(absentSchema.shape),
  scope: ['models', 'firmware', 'regions'],
  actions: ['ticket', 'guide', 'autoClose'],
  clear: ['when', 'for'],
  flapping: ['transitions', 'within', 'holdOpen'],
  where: ['metric', 'op', 'value'],
};

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) (d[0] as number[])[j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i] as number[];
      const prev = d[i - 1] as number[];
      row[j] = Math.min(
        (prev[j] as number) + 1,
        (row[j - 1] as number) + 1,
        (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
  }
  return (d[a.length] as number[])[b.length] as number;
}

function knownKeys(path: Path): readonly string[] | null {
  if (path.length === 0) return Object.keys(ruleFileSchema.shape);
  if (path.length === 2 && path[0] === 'rules') return Object.keys(ruleSchema.shape);
  const last = path[path.length - 1];
  if (typeof last === 'string' && KEYS_BY_PARENT[last]) return KEYS_BY_PARENT[last] ?? null;
  if (typeof last === 'number' && path[path.length - 2] === 'overrides')
    return ['models', 'regions', 'devices', 'params'];
  return null;
}

function unknownKeyMessage(path: Path, key: string): string {
  const known = knownKeys(path);
  if (known) {
    const best = known
      .map((k) => ({ k, d: distance(key.toLowerCase(), k.toLowerCase()) }))
      .sort((a, b) => a.d - b.d)[0];
    if (best && best.d <= 2) return `unknown key "${key}" (did you mean "${best.k}"?)`;
    return `unknown key "${key}"; expected one of: ${known.join(', ')}`;
  }
  return `unknown key "${key}"`;
}

/** zod issues in rule-author terms; a failed condition union is read by the key the author wrote. */
function flatten(issue: z.core.$ZodIssue, root: unknown, prefix: Path = []): FlatIssue[] {
  const path = [...prefix, ...(issue.path as Path)];
  if (issue.code === 'invalid_union') {
    const branches = (issue as unknown as { errors: z.core.$ZodIssue[][] }).errors;
    const value = valueAt(root, path);
    if (value === undefined && path.length > 0) {
      return [
        { path: path.slice(0, -1), message: `missing required key "${String(path[path.length - 1])}"` },
      ];
    }
    const isObject = value !== null && typeof value === 'object' && !Array.isArray(value);
    if (branches.length === CONDITION_KINDS.length && isObject) {
      const keys = Object.keys(value as object);
      const kinds = keys.filter((k) => (CONDITION_KINDS as readonly string[]).includes(k));
      if (kinds.length === 1) {
        const branch = branches[CONDITION_KINDS.indexOf(kinds[0] as (typeof CONDITION_KINDS)[number])] ?? [];
        return branch.flatMap((e) => flatten(e, root, path));
      }
      if (kinds.length === 0) {
        const got = keys.length > 0 ? `; got ${keys.map((k) => `"${k}"`).join(', ')}` : '';
        return [{ path, message: `a condition needs exactly one of: ${CONDITION_KINDS.join(', ')}${got}` }];
      }
      return [
        {
          path,
          message: `one condition per entry, found ${kinds.join(' and ')}: combine them under all: or any:`,
        },
      ];
    }
    // Other unions: keep the branch that accepted the value's type, if exactly one did.
    const typed = branches.filter((b) => !b.some((e) => e.code === 'invalid_type' && e.path.length === 0));
    if (typed.length === 1) return (typed[0] ?? []).flatMap((e) => flatten(e, root, path));
    return [{ path, message: issue.message === 'Invalid input' ? 'invalid value' : issue.message }];
  }
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => ({ path, key: k, message: unknownKeyMessage(path, k) }));
  }
  if (issue.code === 'invalid_type' && valueAt(root, path) === undefined) {
    const name = path[path.length - 1];
    return [
      { path: path.slice(0, -1), message: `missing required key "${String(name)}" (${issue.expected})` },
    ];
  }
  const where = path.length > 0 ? `${String(path[path.length - 1])}: ` : '';
  return [{ path, message: `${where}${issue.message}` }];
}

interface SourceFile {
  file: string;
  text: string;
  lc: LineCounter;
}

function position(src: SourceFile, offset: number): { line: number; col: number } {
  const p = src.lc.linePos(offset);
  return { line: p.line, col: p.col };
}

function issueAt(
  src: SourceFile,
  doc: Document,
  path: Path,
  message: string,
  key?: string,
  index?: number,
): LoadIssue {
  const found = locate(doc, path);
  let offset = 0;
  let node: Node | null = found.node;
  if (key !== undefined && isMap(node)) {
    const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === key);
    if (pair?.key) node = pair.key as Node;
  }
  if (node?.range) offset = node.range[0];
  if (index !== undefined && node?.range && isScalar(node) && typeof node.value === 'string') {
    // Point at the placeholder itself: find its text in the raw scalar (quotes and folding shift offsets).
    const placeholder = /^\{\{[^{}]*\}\}/.exec(node.value.slice(index))?.[0];
    const at = placeholder ? src.text.indexOf(placeholder, node.range[0]) : -1;
    if (at >= 0 && at < node.range[1]) offset = at;
  }
  const { line, col } = position(src, offset);
  return { file: src.file, line, col, message };
}

export interface ParsedYaml<T> {
  data: T | null;
  errors: LoadIssue[];
  /** line and column of a path in the document (the deepest node found). */
  at(path: Path): { line: number; col: number };
}

/** One YAML document validated with a zod schema; problems as file:line:col. */
export function parseYamlWith<T>(text: string, file: string, schema: z.ZodType<T>): ParsedYaml<T> {
  const lc = new LineCounter();
  const src: SourceFile = { file, text, lc };
  const docs = parseAllDocuments(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const errors: LoadIssue[] = [];
  const none = { data: null, errors, at: () => ({ line: 1, col: 1 }) };
  if (!Array.isArray(docs) || docs.length === 0) {
    errors.push({ file, line: 1, col: 1, message: 'the file holds no YAML document' });
    return none;
  }
  if (docs.length > 1) {
    const pos = position(src, docs[1]?.range[0] ?? 0);
    errors.push({ file, ...pos, message: 'one YAML document per file' });
  }
  const doc = docs[0] as Document;
  const at = (path: Path) => {
    const li = issueAt(src, doc, path, '');
    return { line: li.line, col: li.col };
  };
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const pos = e.linePos?.[0] ?? position(src, e.pos[0]);
      errors.push({ file, line: pos.line, col: pos.col, message: e.message.split('\n')[0] ?? e.message });
    }
    return { data: null, errors, at };
  }
  const value = doc.toJS({ maxAliasCount: 100 }) as unknown;
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      for (const f of flatten(issue, value)) errors.push(issueAt(src, doc, f.path, f.message, f.key));
    }
    return { data: null, errors, at };
  }
  return { data: errors.length > 0 ? null : parsed.data, errors, at };
}

export interface RuleSource {
  rule: LoadedRule;
  input: RuleInput;
  /** file:line:col of a path inside the rule. */
  at(path: Path): { line: number; col: number };
}

function loadText(text: string, file: string, out: LoadResult, sources: RuleSource[]): void {
  const lc = new LineCounter();
  const src: SourceFile = { file, text, lc };
  const docs = parseAllDocuments(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (!Array.isArray(docs)) {
    out.warnings.push({ file, line: 1, col: 1, message: 'the file holds no YAML document' });
    return;
  }
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const pos = e.linePos?.[0] ?? position(src, e.pos[0]);
        out.errors.push({
          file,
          line: pos.line,
          col: pos.col,
          message: e.message.split('\n')[0] ?? e.message,
        });
      }
      continue;
    }
    for (const w of doc.warnings) {
      const pos = w.linePos?.[0] ?? position(src, w.pos[0]);
      out.warnings.push({
        file,
        line: pos.line,
        col: pos.col,
        message: w.message.split('\n')[0] ?? w.message,
      });
    }
    const value = doc.toJS({ maxAliasCount: 100 }) as unknown;
    if (value === null || value === undefined) continue;
    const report = (issues: readonly z.core.$ZodIssue[], prefix: Path) => {
      const seen = new Set<string>();
      for (const issue of issues) {
        for (const f of flatten(issue, value, prefix)) {
          const li = issueAt(src, doc, f.path, f.message, f.key);
          const k = `${li.line}:${li.col}:${li.message}`;
          if (seen.has(k)) continue;
          seen.add(k);
          out.errors.push(li);
        }
      }
    };
    // The envelope first, then each rule on its own, so one broken rule does not hide
    // the problems (or the warnings) of the others.
    const envelope = fileEnvelope.safeParse(value);
    if (!envelope.success) {
      report(envelope.error.issues, []);
      continue;
    }
    envelope.data.rules.forEach((raw, i) => {
      const base: Path = ['rules', i];
      const parsed = ruleSchema.safeParse(raw);
      if (!parsed.success) {
        report(parsed.error.issues, base);
        return;
      }
      const input = parsed.data;
      const start = locate(doc, base).node?.range?.[0] ?? 0;
      const pos = position(src, start);
      const { rule, issues } = compileRule(input, { file, line: pos.line, col: pos.col });
      for (const iss of issues)
        out.errors.push(issueAt(src, doc, [...base, ...iss.path], iss.message, undefined, iss.index));
      if (rule) {
        sources.push({
          rule,
          input,
          at: (path) => {
            const li = issueAt(src, doc, [...base, ...path], '');
            return { line: li.line, col: li.col };
          },
        });
      }
    });
  }
}

const fileEnvelope = ruleFileSchema.extend({
  rules: z.array(z.unknown()).describe('The rules of this file'),
});

function finish(sources: RuleSource[], out: LoadResult, catalogueChecks: boolean): void {
  const firstById = new Map<string, RuleSource>();
  for (const s of sources) {
    const prev = firstById.get(s.rule.id);
    if (prev) {
      const at = s.at(['id']);
      out.errors.push({
        file: s.rule.file ?? '<text>',
        ...at,
        message: `duplicate rule id "${s.rule.id}" (first defined at ${prev.rule.file}:${prev.rule.line}:${prev.rule.col})`,
      });
      continue;
    }
    firstById.set(s.rule.id, s);
    if (catalogueChecks) {
      for (const w of checkRule(s.rule, s.input)) {
        out.warnings.push({ file: s.rule.file ?? '<text>', ...s.at(w.path), message: w.message });
      }
    }
  }
  // A file with any error contributes nothing, so a half-edited file cannot change what runs.
  const broken = new Set(out.errors.map((e) => e.file));
  out.rules = [...firstById.values()].filter((s) => !broken.has(s.rule.file ?? '<text>')).map((s) => s.rule);
}

export interface LoadOptions {
  /** Warn about metrics, codes and intervals against src/rules/models.ts (default true). */
  catalogueChecks?: boolean;
}

/** Loads rule files (a directory means its *.yaml files). Rules of a file with errors are left out. */
export function loadRuleFiles(paths: readonly string[], opts: LoadOptions = {}): LoadResult {
  const out: LoadResult = { rules: [], errors: [], warnings: [] };
  const sources: RuleSource[] = [];
  for (const file of expandPaths(paths)) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      out.errors.push({ file, line: 1, col: 1, message: `cannot read: ${(err as Error).message}` });
      continue;
    }
    loadText(text, file, out, sources);
  }
  finish(sources, out, opts.catalogueChecks ?? true);
  return out;
}

/** Loads rules from YAML text (tests, the API); `file` names it in messages. */
export function loadRuleText(text: string, file = '<text>', opts: LoadOptions = {}): LoadResult {
  const out: LoadResult = { rules: [], errors: [], warnings: [] };
  const sources: RuleSource[] = [];
  loadText(text, file, out, sources);
  finish(sources, out, opts.catalogueChecks ?? true);
  return out;
}

/** `file:line:col: message` (with `warning: ` before the message for warnings). */
export function formatIssue(i: LoadIssue, kind: 'error' | 'warning' = 'error'): string {
  return `${i.file}:${i.line}:${i.col}: ${kind === 'warning' ? 'warning: ' : ''}${i.message}`;
}

/** Same as formatIssue(i, 'warning'), in a one-parameter form for Array.map. */
export function formatWarning(i: LoadIssue): string {
  return formatIssue(i, 'warning');
}
