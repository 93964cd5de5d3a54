/**
 * `faultline guides check [paths]`: validates guide files and, given rule files,
 * that every rule has a guide in every required locale. Prints file:line:col
 * diagnostics (an editor's problem matcher reads them) and returns an exit code.
 */
import { expandPaths, formatIssue, formatWarning, loadRuleFiles } from '../rules/loader.js';
import type { LoadIssue } from '../rules/types.js';
import { expandGuidePaths, loadGuideFiles } from './loader.js';
import { canonicalLocale } from './locale.js';
import type { Guide } from './model.js';

export interface CheckOutput {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

export interface GuidesCheckOptions {
  /** Rule files or directories: each rule must have a guide in every required locale. */
  rules?: string[];
  /** Default zh-CN and en. */
  requireLocales?: string[];
  /** Warnings fail the check too. */
  strict?: boolean;
}

export interface Coverage {
  ruleId: string;
  file: string | null;
  line: number | null;
  /** locale -> guide id, or null when none covers the rule in that locale. */
  locales: Record<string, string | null>;
}

/** Which guide covers each rule in each locale: the one the rule names, else one listing the rule. */
export function ruleCoverage(
  rules: Array<{ id: string; file: string | null; line: number | null; actions: { guide: string | null } }>,
  guides: Guide[],
  locales: string[],
): Coverage[] {
  return rules.map((r) => {
    const out: Record<string, string | null> = {};
    for (const locale of locales) {
      const inLocale = guides.filter((g) => g.locale === locale);
      const named = r.actions.guide ? inLocale.find((g) => g.id === r.actions.guide) : undefined;
      out[locale] = (named ?? inLocale.find((g) => g.rules.includes(r.id)))?.id ?? null;
    }
    return { ruleId: r.id, file: r.file, line: r.line, locales: out };
  });
}

export function runGuidesCheck(paths: string[], out: CheckOutput, opts: GuidesCheckOptions = {}): number {
  const files = expandGuidePaths(paths);
  if (files.length === 0) {
    out.stderr.write(`no guide files (*.md) in ${paths.join(', ')}\n`);
    return 1;
  }
  const result = loadGuideFiles(files);
  const errors: LoadIssue[] = [...result.errors];
  const warnings: LoadIssue[] = [...result.warnings];
  let covered = '';
  if (opts.rules && opts.rules.length > 0) {
    const locales = (opts.requireLocales ?? ['zh-CN', 'en']).map((l) => canonicalLocale(l) ?? l);
    const ruleFiles = expandPaths(opts.rules);
    const rules = loadRuleFiles(ruleFiles);
    errors.push(...rules.errors);
    const ruleIds = new Set(rules.rules.map((r) => r.id));
    for (const cov of ruleCoverage(rules.rules, result.guides, locales)) {
      const missing = Object.entries(cov.locales)
        .filter(([, id]) => id === null)
        .map(([l]) => l);
      if (missing.length === 0) continue;
      errors.push({
        file: cov.file ?? ruleFiles[0] ?? 'rules',
        line: cov.line ?? 1,
        col: 1,
        message: `rule ${cov.ruleId} has no guide in ${missing.join(', ')} (name it in actions.guide or list the rule under rules: in a guide)`,
      });
    }
    for (const g of result.guides) {
      for (const r of g.rules) {
        if (!ruleIds.has(r)) {
          warnings.push({ file: g.file, line: 1, col: 1, message: `rules: no loaded rule is called ${r}` });
        }
      }
    }
    covered = `, ${rules.rules.length} rule(s) covered in ${locales.join(', ')}`;
  }
  const problems = [
    ...errors.map((e) => ({ ...e, kind: 'error' as const })),
    ...warnings.map((w) => ({ ...w, kind: 'warning' as const })),
  ].sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col);
  for (const p of problems) out.stderr.write(`${p.kind === 'warning' ? formatWarning(p) : formatIssue(p)}\n`);
  const failed = errors.length > 0 || (opts.strict === true && warnings.length > 0);
  const ids = new Set(result.guides.map((g) => g.id)).size;
  out.stdout.write(
    `${failed ? 'FAILED' : 'OK'}: ${files.length} file(s), ${ids} guide(s)${failed ? '' : covered}, ` +
      `${errors.length} error(s), ${warnings.length} warning(s)\n`,
  );
  return failed ? 1 : 0;
}
