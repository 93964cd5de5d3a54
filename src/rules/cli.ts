/**
 * Tools for rule authors: `rules check` (validate, warn) and `rules test` (run
 * *.test.yaml cases). Both print file:line:col diagnostics and return an exit
 * code, so they work in CI and in an editor's problem matcher. Runnable as
 * `npx tsx src/rules/cli.ts check rules/` until the main CLI mounts them.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Command } from 'commander';
import { parseDuration } from './duration.js';
import {
  expandPaths,
  formatIssue,
  formatWarning,
  isRuleTestFile,
  loadRuleFiles,
  parseYamlWith,
} from './loader.js';
import { replayHistory } from './replay.js';
import { ruleJsonSchemaText } from './schema.js';
import {
  buildCase,
  compareExpectations,
  DEFAULT_TEST_START,
  describeEvents,
  resolveRuleFiles,
  ruleTestFileSchema,
} from './testfile.js';
import type { RuleEvent } from './types.js';

export interface Output {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
}

export interface CheckOptions {
  /** Warnings fail the check too. */
  strict?: boolean;
}

export async function runRulesCheck(paths: string[], out: Output, opts: CheckOptions = {}): Promise<number> {
  const files = expandPaths(paths);
  if (files.length === 0) {
    out.stderr.write(`no rule files in ${paths.join(', ')}\n`);
    return 1;
  }
  const result = loadRuleFiles(files);
  const problems = [
    ...result.errors.map((e) => ({ ...e, kind: 'error' as const })),
    ...result.warnings.map((w) => ({ ...w, kind: 'warning' as const })),
  ].sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col);
  for (const p of problems) out.stderr.write(`${p.kind === 'warning' ? formatWarning(p) : formatIssue(p)}\n`);
  const failed = result.errors.length > 0 || (opts.strict === true && result.warnings.length > 0);
  out.stdout.write(
    `${failed ? 'FAILED' : 'OK'}: ${files.length} file(s), ${result.rules.length} rule(s), ` +
      `${result.errors.length} error(s), ${result.warnings.length} warning(s)\n`,
  );
  return failed ? 1 : 0;
}

export async function runRulesTest(paths: string[], out: Output): Promise<number> {
  const files = expandPaths(paths, isRuleTestFile).filter(isRuleTestFile);
  if (files.length === 0) {
    out.stderr.write(`no *.test.yaml files in ${paths.join(', ')}\n`);
    return 1;
  }
  let cases = 0;
  let failures = 0;
  let brokenFiles = 0;
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      out.stderr.write(`${file}:1:1: cannot read: ${(err as Error).message}\n`);
      brokenFiles++;
      continue;
    }
    const parsed = parseYamlWith(text, file, ruleTestFileSchema);
    if (!parsed.data) {
      for (const e of parsed.errors) out.stderr.write(`${formatIssue(e)}\n`);
      brokenFiles++;
      continue;
    }
    const spec = parsed.data;
    const loaded = loadRuleFiles(resolveRuleFiles(file, spec), { catalogueChecks: false });
    if (loaded.errors.length > 0) {
      for (const e of loaded.errors) out.stderr.write(`${formatIssue(e)}\n`);
      out.stderr.write(`${file}:1:1: the rules under test do not load\n`);
      brokenFiles++;
      continue;
    }
    const start = spec.start ? Date.parse(spec.start) : DEFAULT_TEST_START;
    for (const [i, tc] of spec.tests.entries()) {
      cases++;
      const where = parsed.at(['tests', i]);
      const label = `${file}:${where.line}:${where.col}: test "${tc.name}"`;
      let events: RuleEvent[];
      try {
        const unknown = (tc.rules ?? []).filter((id) => !loaded.rules.some((r) => r.id === id));
        if (unknown.length > 0) throw new Error(`rules not loaded: ${unknown.join(', ')}`);
        const built = buildCase(tc, start);
        events = replayHistory(loaded.rules, [built.device], built.items, {
          until: built.until,
          start,
          staleAfterMs: tc.staleAfter ? parseDuration(tc.staleAfter) : undefined,
        });
      } catch (err) {
        failures++;
        out.stderr.write(`${label}: ${(err as Error).message}\n`);
        continue;
      }
      const mismatches = compareExpectations(tc, events, start);
      if (mismatches.length === 0) {
        out.stdout.write(`ok   ${tc.name}\n`);
        continue;
      }
      failures++;
      out.stdout.write(`FAIL ${tc.name}\n`);
      for (const m of mismatches) {
        const at = parsed.at(['tests', i, 'expect', m.expectation]);
        out.stderr.write(`${file}:${at.line}:${at.col}: test "${tc.name}" ${m.lines[0]}\n`);
        for (const l of m.lines.slice(1)) out.stderr.write(`    ${l}\n`);
      }
      const shown = tc.rules ? events.filter((e) => tc.rules?.includes(e.ruleId)) : events;
      out.stderr.write(`    all events of this test (device time from start):\n`);
      for (const l of describeEvents(shown, start)) out.stderr.write(`      ${l}\n`);
      if (shown.length === 0) out.stderr.write('      (none)\n');
    }
  }
  const ok = failures === 0 && brokenFiles === 0;
  const broken = brokenFiles > 0 ? `, ${brokenFiles} file(s) could not run` : '';
  out.stdout.write(`${ok ? 'OK' : 'FAILED'}: ${cases} test(s), ${failures} failed${broken}\n`);
  return ok ? 0 : 1;
}

/** `tsx src/rules/cli.ts check|test <paths...>` */
export async function main(argv: string[]): Promise<number> {
  let code = 0;
  const io: Output = { stdout: process.stdout, stderr: process.stderr };
  const program = new Command('rules').description('Faultline rule tools').exitOverride();
  program
    .command('check')
    .argument('<paths...>', 'rule files or directories')
    .option('--strict', 'fail on warnings too')
    .action(async (paths: string[], o: { strict?: boolean }) => {
      code = await runRulesCheck(paths, io, { strict: o.strict === true });
    });
  program
    .command('schema')
    .description('write the JSON Schema of rule files (rules/schema.json)')
    .argument('[file]', 'output file (default: stdout)')
    .action((file?: string) => {
      if (file) writeFileSync(file, ruleJsonSchemaText());
      else io.stdout.write(ruleJsonSchemaText());
    });
  program
    .command('test')
    .argument('<paths...>', '*.test.yaml files or directories')
    .action(async (paths: string[]) => {
      code = await runRulesTest(paths, io);
    });
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    const exit = (err as { exitCode?: number }).exitCode;
    return typeof exit === 'number' ? exit : 2;
  }
  return code;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (c) => {
      process.exitCode = c;
    },
    (err: unknown) => {
      console.error(err);
      process.exitCode = 2;
    },
  );
}
