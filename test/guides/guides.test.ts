/**
 * Guide files: the shipped set (every shipped rule in zh-CN and en), validation
 * with file:line:col, selection by rule / code / model / firmware, the locale
 * fallback, hot reload, and `faultline guides check` as a real process.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ruleCoverage, runGuidesCheck } from '../../src/guides/check.js';
import { GuideLibrary } from '../../src/guides/library.js';
import { loadGuideFiles, parseGuide } from '../../src/guides/loader.js';
import { fallbackChain } from '../../src/guides/locale.js';
import { expandPaths, loadRuleFiles } from '../../src/rules/loader.js';
import { runCli } from '../helpers/cli.js';
import { until } from '../helpers/net.js';
import { tempDir } from '../helpers/process.js';

function capture() {
  let stdout = '';
  let stderr = '';
  return {
    out: {
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
    },
    text: () => ({ stdout, stderr }),
  };
}

const guide = (o: Record<string, string> = {}, body = 'Why it happens.') => {
  const fm: Record<string, string> = {
    id: 'filter-clogged',
    locale: 'en',
    title: 'Filter clogged',
    summary: 'Clean the filter.',
    signal: 'CAUTION',
    rules: '[fan-slow]',
    codes: '[E07]',
    models: '"AC-*"',
    ownerFixable: 'true',
    steps: '\n  - Switch off.\n  - Wash the filter.',
    stopAndCall: 'Call service if it comes back.',
    ...o,
  };
  const lines = Object.entries(fm)
    .filter(([, v]) => v !== '')
    .map(([k, v]) => `${k}: ${v}`);
  return `---\n${lines.join('\n')}\n---\n${body}\n`;
};

let dirs: Array<{ path: string; remove(): void }> = [];
let libraries: GuideLibrary[] = [];
afterEach(() => {
  for (const l of libraries) l.stop();
  for (const d of dirs) d.remove();
  dirs = [];
  libraries = [];
});

function dirWith(files: Record<string, string>): string {
  const d = tempDir('guides');
  dirs.push(d);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(d.path, name), text);
  return d.path;
}

describe('the shipped guides', () => {
  it('load without errors or warnings', () => {
    const r = loadGuideFiles(['guides']);
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.guides.length).toBe(16);
  });

  it('cover every shipped rule in zh-CN and en', () => {
    const rules = loadRuleFiles(expandPaths(['rules'])).rules;
    expect(rules.map((r) => r.id).sort()).toEqual([
      'ac-compressor-overheat',
      'ac-fan-stall',
      'ac-fault-e05-repeat',
      'ac-refrigerant-low',
      'device-silent',
      'rv-battery-overheat',
      'rv-brush-overcurrent',
      'rv-wheel-stuck-repeat',
    ]);
    const coverage = ruleCoverage(rules, loadGuideFiles(['guides']).guides, ['zh-CN', 'en']);
    const missing = coverage.flatMap((c) =>
      Object.entries(c.locales)
        .filter(([, id]) => id === null)
        .map(([locale]) => `${c.ruleId} ${locale}`),
    );
    expect(missing).toEqual([]);
  });

  it('warn with DANGER exactly where the rule is a safety rule', () => {
    const rules = loadRuleFiles(expandPaths(['rules'])).rules;
    const guides = loadGuideFiles(['guides']).guides;
    for (const r of rules) {
      const signals = new Set(guides.filter((g) => g.rules.includes(r.id)).map((g) => g.signal));
      expect([...signals], r.id).toEqual([
        r.safety ? 'DANGER' : expect.stringMatching(/^(WARNING|CAUTION|NOTICE)$/),
      ]);
    }
  });

  it('pass `faultline guides check guides/` (a real process), coverage included', async () => {
    const plain = await runCli(['guides', 'check', 'guides/']);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain('OK: 16 file(s), 8 guide(s)');
    const covered = await runCli(['guides', 'check', 'guides/', '--rules', 'rules']);
    expect(covered.code).toBe(0);
    expect(covered.stdout).toContain('8 rule(s) covered in zh-CN, en');
  });
});

describe('validation', () => {
  it('reports schema problems as file:line:col and exits non-zero', async () => {
    const dir = dirWith({
      'filter-clogged.en.md': guide({ signal: 'DANGRE', firmware: '">=2"', colour: 'red', steps: '[]' }),
    });
    const file = join(dir, 'filter-clogged.en.md');
    const c = capture();
    expect(runGuidesCheck([dir], c.out)).toBe(1);
    const lines = c.text().stderr.trim().split('\n');
    expect(lines).toEqual([
      expect.stringMatching(new RegExp(`^${file}:6:9: signal: `)),
      expect.stringMatching(new RegExp(`^${file}:11:8: steps: `)),
      `${file}:14:9: unknown key "colour"; expected one of: id, locale, title, summary, signal, rules, codes, models, firmware, ownerFixable, steps, stopAndCall`,
    ]);
    const cli = await runCli(['guides', 'check', dir]);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain(`${file}:6:9: signal:`);
    expect(cli.stdout).toContain('FAILED');
  });

  it('suggests the key an author meant, checks ranges, and refuses an owner-fixable DANGER', () => {
    const p = parseGuide(
      guide({ firmware: '">=banana"', signal: 'DANGER', stopandcall: 'x' }).replace(/^stopAndCall:.*\n/m, ''),
      'g.md',
    );
    expect(p.guide).toBeNull();
    expect(p.errors.map((e) => `${e.line}: ${e.message}`)).toEqual([
      expect.stringMatching(/^\d+: missing required key "stopAndCall"/),
      expect.stringMatching(/^15: unknown key "stopandcall" \(did you mean "stopAndCall"\?\)/),
    ]);
    const q = parseGuide(guide({ firmware: '">=banana"', signal: 'DANGER' }), 'g.md');
    expect(q.errors.map((e) => `${e.line}: ${e.message}`)).toEqual([
      '15: firmware: ">=banana" is not a semver range (e.g. ">=2.0.0 <3")',
      '10: a DANGER guide cannot be ownerFixable: it tells the owner to stop, not to repair',
    ]);
  });

  it('needs front matter, and warns about an empty body and an unexpected file name', () => {
    expect(parseGuide('# just markdown\n', 'x.md').errors[0]).toMatchObject({ line: 1, col: 1 });
    expect(parseGuide('---\nid: x\n', 'x.md').errors[0]?.message).toContain('no closing "---"');
    const p = parseGuide(guide({}, ''), '/g/other-name.md');
    expect(p.guide).not.toBeNull();
    expect(p.warnings.map((w) => w.message)).toEqual([
      'no Markdown below the front matter: say what the condition is and why it happens',
      'name the file filter-clogged.en.md, so the tree shows what is covered',
    ]);
  });

  it('refuses a second file for the same guide and locale, and locales that disagree', () => {
    const dir = dirWith({
      'a.en.md': guide(),
      'b.en.md': guide(),
      'filter-clogged.zh-CN.md': guide({ locale: 'zh-CN', signal: 'WARNING' }),
    });
    const r = loadGuideFiles([dir]);
    expect(
      r.errors.map((e) => `${e.file.slice(dir.length + 1)}:${e.line}: ${e.message.split(':')[0]}`),
    ).toEqual([
      `b.en.md:3: guide filter-clogged in en is also in ${join(dir, 'a.en.md')}`,
      `filter-clogged.zh-CN.md:6: signal differs from ${join(dir, 'a.en.md')} ("CAUTION")`,
    ]);
  });

  it('with --rules, names each rule without a guide in a required locale at its line', () => {
    const guides = dirWith({ 'filter-clogged.en.md': guide() });
    const rules = dirWith({
      'r.yaml': `apiVersion: faultline/v1
rules:
  - id: fan-slow
    title: t
    severity: minor
    when: { threshold: { metric: fan_rpm, op: "<", value: 100 } }
`,
    });
    const c = capture();
    expect(runGuidesCheck([guides], c.out, { rules: [rules] })).toBe(1);
    expect(c.text().stderr).toContain(
      `${join(rules, 'r.yaml')}:3:1: rule fan-slow has no guide in zh-CN (name it in actions.guide or list the rule under rules: in a guide)`,
    );
    expect(runGuidesCheck([guides], capture().out, { rules: [rules], requireLocales: ['en'] })).toBe(0);
  });
});

describe('selection', () => {
  function library(files: Record<string, string>) {
    const lib = new GuideLibrary({ paths: [dirWith(files)] });
    libraries.push(lib);
    return lib;
  }

  it('prefers the guide the rule names, then one for the rule, then one for the fault code', () => {
    const lib = library({
      'by-rule.en.md': guide({ id: 'by-rule', rules: '[fan-slow]', codes: '[]' }),
      'by-code.en.md': guide({ id: 'by-code', rules: '[]', codes: '[E07]' }),
      'named.en.md': guide({ id: 'named', rules: '[]', codes: '[]' }),
    });
    const q = { ruleId: 'fan-slow', code: 'E07', model: 'AC-9000', firmware: '2.1.0' };
    expect(lib.select({ ...q, guideId: 'named' }, 'en')).toMatchObject({
      guide: { id: 'named' },
      matchedBy: 'id',
    });
    expect(lib.select(q, 'en')).toMatchObject({ guide: { id: 'by-rule' }, matchedBy: 'rule' });
    expect(lib.select({ ...q, ruleId: 'other' }, 'en')).toMatchObject({
      guide: { id: 'by-code' },
      matchedBy: 'code',
    });
    expect(lib.select({ ...q, ruleId: 'other', code: 'E99' }, 'en')).toBeNull();
  });

  it('applies model globs and firmware ranges, the more specific guide winning', () => {
    const lib = library({
      'old.en.md': guide({ id: 'old', firmware: '"<2.0.0"' }),
      'new.en.md': guide({ id: 'new', firmware: '">=2.0.0"' }),
      'any.en.md': guide({ id: 'any' }),
      'rv.en.md': guide({ id: 'rv', models: '"RV-*"', rules: '[brush]' }),
    });
    const q = { ruleId: 'fan-slow', model: 'AC-9000' };
    expect(lib.select({ ...q, firmware: '1.9.3' }, 'en')?.guide.id).toBe('old');
    expect(lib.select({ ...q, firmware: 'v2.4' }, 'en')?.guide.id).toBe('new');
    expect(lib.select({ ...q, firmware: null }, 'en')?.guide.id).toBe('any');
    expect(lib.select({ ruleId: 'brush', model: 'AC-9000' }, 'en')).toBeNull();
    expect(lib.select({ ruleId: 'brush', model: 'RV-200' }, 'en')?.guide.id).toBe('rv');
  });

  it('falls back zh-CN → zh → en, a bare zh reads zh-CN, and anything else reads en', () => {
    expect(fallbackChain('zh-CN', ['en', 'zh', 'zh-CN'])).toEqual(['zh-CN', 'zh', 'en']);
    expect(fallbackChain('zh-cn', ['en', 'zh'])).toEqual(['zh', 'en']);
    expect(fallbackChain('zh-Hant-TW', ['en', 'zh-CN'], 'zh-CN')).toEqual(['zh-CN', 'en']);
    expect(fallbackChain('fr-FR', ['en', 'zh-CN'], 'zh-CN')).toEqual(['en', 'zh-CN']);
    expect(fallbackChain(null, ['zh-CN'], 'zh-CN')).toEqual(['zh-CN']);
    const lib = library({
      'g.en.md': guide({ id: 'g', title: 'English' }),
      'g.zh-CN.md': guide({ id: 'g', locale: 'zh-CN', title: '中文' }),
    });
    expect(lib.select({ ruleId: 'fan-slow', model: 'AC-1' }, 'zh')?.guide.title).toBe('中文');
    expect(lib.select({ ruleId: 'fan-slow', model: 'AC-1' }, 'de-DE')?.guide.title).toBe('English');
    expect(lib.select({ ruleId: 'fan-slow', model: 'AC-1' }, 'zh-CN')).toMatchObject({
      requestedLocale: 'zh-CN',
      guide: { locale: 'zh-CN' },
    });
  });
});

describe('hot reload', () => {
  it('picks up an edit, and refuses a broken one so the previous guides stay', async () => {
    const dir = dirWith({ 'filter-clogged.en.md': guide({ title: 'Before' }) });
    const lib = new GuideLibrary({ paths: [dir], debounceMs: 30 });
    libraries.push(lib);
    lib.startWatching();
    const file = join(dir, 'filter-clogged.en.md');
    writeFileSync(file, guide({ title: 'After' }));
    await until('edit loaded', () => lib.get('filter-clogged', 'en')?.title === 'After');
    writeFileSync(file, guide({ title: 'Broken', signal: 'LOUD' }));
    await until('broken edit refused', () => lib.describe().loadErrors.length > 0);
    expect(lib.describe().loadErrors[0]).toMatch(new RegExp(`^${file}:6:9: signal:`));
    expect(lib.get('filter-clogged', 'en')?.title).toBe('After');
    writeFileSync(join(dir, 'notes.txt'), 'not a guide');
    writeFileSync(file, guide({ title: 'Fixed' }));
    await until('fixed edit loaded', () => lib.get('filter-clogged', 'en')?.title === 'Fixed');
    expect(lib.describe().loadErrors).toEqual([]);
  });
});
