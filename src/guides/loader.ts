/**
 * Reads guide files (Markdown with YAML front matter) and reports every problem
 * as file:line:col. The front matter is parsed with the rule loader's YAML+zod
 * reader, with the opening "---" line blanked so its line numbers are the file's.
 * Any error means the set does not load: the caller keeps the guides it had.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import picomatch from 'picomatch';
import semver from 'semver';
import { parse as parseYaml } from 'yaml';
import { parseYamlWith } from '../rules/loader.js';
import type { LoadIssue } from '../rules/types.js';
import { canonicalLocale } from './locale.js';
import { type Guide, type GuideFrontMatter, guideFrontMatterSchema } from './model.js';

export interface GuideLoadResult {
  guides: Guide[];
  errors: LoadIssue[];
  warnings: LoadIssue[];
  /** Files read. */
  files: string[];
}

export function isGuideFile(name: string): boolean {
  return /\.md$/i.test(name) && !/^readme\.md$/i.test(name);
}

/** Files and directories to guide files: a directory means its *.md (not README.md), sorted. */
export function expandGuidePaths(paths: readonly string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    let isDir = false;
    try {
      isDir = statSync(p).isDirectory();
    } catch {
      // Reported by the reader with its name.
    }
    if (isDir) {
      for (const name of readdirSync(p).sort()) if (isGuideFile(name)) out.push(join(p, name));
    } else out.push(p);
  }
  return out;
}

const KNOWN_KEYS = Object.keys(guideFrontMatterSchema.shape);

/** One edit apart (a typo), or one a prefix of the other (ownerFix for ownerFixable). */
function closeTo(a: string, b: string): boolean {
  const x = a.toLowerCase();
  const y = b.toLowerCase();
  if (x.startsWith(y) || y.startsWith(x)) return Math.min(x.length, y.length) >= 4;
  if (Math.abs(x.length - y.length) > 1) return false;
  let i = 0;
  while (i < x.length && x[i] === y[i]) i++;
  return x.slice(i + (x.length >= y.length ? 1 : 0)) === y.slice(i + (y.length >= x.length ? 1 : 0));
}

interface Parsed {
  guide: Guide | null;
  errors: LoadIssue[];
  warnings: LoadIssue[];
  at(path: Array<string | number>): { line: number; col: number };
}

/** One guide file's text: its guide, or the problems that keep it out. */
export function parseGuide(text: string, file: string): Parsed {
  const errors: LoadIssue[] = [];
  const warnings: LoadIssue[] = [];
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const none = (message: string, line = 1): Parsed => ({
    guide: null,
    errors: [{ file, line, col: 1, message }],
    warnings,
    at: () => ({ line: 1, col: 1 }),
  });
  if (lines[0]?.trim() !== '---') {
    return none('a guide starts with a "---" line, then YAML front matter, then "---" and the Markdown');
  }
  const end = lines.findIndex((l, i) => i > 0 && (l.trim() === '---' || l.trim() === '...'));
  if (end < 0) return none('the front matter has no closing "---" line');
  // Blank first line instead of the "---": YAML positions are then file positions.
  const yamlText = ['', ...lines.slice(1, end)].join('\n');
  // Unknown keys are reported here, with a suggestion in guide terms; the rest by the schema.
  const parsed = parseYamlWith<GuideFrontMatter>(yamlText, file, guideFrontMatterSchema.loose());
  errors.push(...parsed.errors);
  let raw: unknown = null;
  try {
    raw = parseYaml(yamlText);
  } catch {
    // Syntax errors are in parsed.errors already.
  }
  const keys = raw && typeof raw === 'object' && !Array.isArray(raw) ? Object.keys(raw) : [];
  for (const key of keys) {
    if (KNOWN_KEYS.includes(key)) continue;
    const near = KNOWN_KEYS.find((k) => k.toLowerCase() === key.toLowerCase() || closeTo(k, key));
    errors.push({
      file,
      ...parsed.at([key]),
      message: near
        ? `unknown key "${key}" (did you mean "${near}"?)`
        : `unknown key "${key}"; expected one of: ${KNOWN_KEYS.join(', ')}`,
    });
  }
  const fm = errors.length > 0 ? null : parsed.data;
  if (!fm) return { guide: null, errors, warnings, at: parsed.at };

  const issue = (path: Array<string | number>, message: string): LoadIssue => ({
    file,
    ...parsed.at(path),
    message,
  });
  const locale = canonicalLocale(fm.locale);
  if (!locale) errors.push(issue(['locale'], `locale: "${fm.locale}" is not a BCP 47 language tag`));
  if (fm.firmware !== undefined && semver.validRange(fm.firmware, { loose: true }) === null) {
    errors.push(issue(['firmware'], `firmware: "${fm.firmware}" is not a semver range (e.g. ">=2.0.0 <3")`));
  }
  const models = fm.models === undefined ? null : Array.isArray(fm.models) ? fm.models : [fm.models];
  for (const [i, glob] of (models ?? []).entries()) {
    try {
      picomatch(glob);
    } catch (err) {
      errors.push(
        issue(Array.isArray(fm.models) ? ['models', i] : ['models'], `models: ${(err as Error).message}`),
      );
    }
  }
  if (fm.signal === 'DANGER' && fm.ownerFixable) {
    errors.push(
      issue(
        ['ownerFixable'],
        'a DANGER guide cannot be ownerFixable: it tells the owner to stop, not to repair',
      ),
    );
  }
  if (fm.rules.length === 0 && fm.codes.length === 0) {
    warnings.push(
      issue(['id'], 'no rules or codes: the guide is chosen only when a rule names it in actions.guide'),
    );
  }
  const body = lines
    .slice(end + 1)
    .join('\n')
    .trim();
  if (body === '') {
    warnings.push({
      file,
      line: end + 1,
      col: 1,
      message: 'no Markdown below the front matter: say what the condition is and why it happens',
    });
  }
  if (locale && basename(file) !== `${fm.id}.${locale}.md`) {
    warnings.push(issue(['id'], `name the file ${fm.id}.${locale}.md, so the tree shows what is covered`));
  }
  if (errors.length > 0 || !locale) return { guide: null, errors, warnings, at: parsed.at };
  return {
    guide: {
      id: fm.id,
      locale,
      title: fm.title.trim(),
      summary: fm.summary.trim(),
      signal: fm.signal,
      rules: [...fm.rules],
      codes: [...fm.codes],
      models,
      firmware: fm.firmware ?? null,
      ownerFixable: fm.ownerFixable,
      steps: fm.steps.map((s) => s.trim()),
      stopAndCall: fm.stopAndCall.trim(),
      body,
      file,
    },
    errors,
    warnings,
    at: parsed.at,
  };
}

/** Keys every locale of one guide must agree on: what it applies to and how it warns. */
const SHARED_KEYS = ['signal', 'rules', 'codes', 'models', 'firmware', 'ownerFixable'] as const;

function sharedValue(g: Guide, key: (typeof SHARED_KEYS)[number]): string {
  const v = g[key];
  return JSON.stringify(Array.isArray(v) ? [...v].sort() : v);
}

export function loadGuideFiles(paths: readonly string[]): GuideLoadResult {
  const files = expandGuidePaths(paths);
  const out: GuideLoadResult = { guides: [], errors: [], warnings: [], files };
  const byId = new Map<string, Guide[]>();
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      out.errors.push({ file, line: 1, col: 1, message: `cannot read: ${(err as Error).message}` });
      continue;
    }
    const p = parseGuide(text, file);
    out.errors.push(...p.errors);
    out.warnings.push(...p.warnings);
    if (!p.guide) continue;
    const g = p.guide;
    const siblings = byId.get(g.id) ?? [];
    const same = siblings.find((s) => s.locale === g.locale);
    if (same) {
      out.errors.push({
        file,
        ...p.at(['locale']),
        message: `guide ${g.id} in ${g.locale} is also in ${same.file}`,
      });
      continue;
    }
    const first = siblings[0];
    let consistent = true;
    if (first) {
      for (const key of SHARED_KEYS) {
        if (sharedValue(first, key) === sharedValue(g, key)) continue;
        consistent = false;
        out.errors.push({
          file,
          ...p.at([key]),
          message:
            `${key} differs from ${first.file} (${sharedValue(first, key)}): every locale of guide ` +
            `${g.id} must apply to the same faults with the same signal word`,
        });
      }
    }
    if (!consistent) continue;
    siblings.push(g);
    byId.set(g.id, siblings);
    out.guides.push(g);
  }
  return out;
}
