import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LoadedRule } from '../../src/rules/compile.js';
import { loadRuleFiles } from '../../src/rules/loader.js';
import type { LoadIssue } from '../../src/rules/types.js';
import { type RuleWatcher, watchRules } from '../../src/rules/watch.js';
import { until } from '../helpers/net.js';
import { tempDir } from '../helpers/process.js';

const file = (threshold: number, extra = '') => `apiVersion: faultline/v1
rules:
  - id: hot
    title: t
    severity: major
    when: { threshold: { metric: compressor_temp, op: ">", value: ${threshold} } }
${extra}`;

let watcher: RuleWatcher | null = null;
let dir: { path: string; remove(): void } | null = null;
afterEach(() => {
  watcher?.close();
  watcher = null;
  dir?.remove();
  dir = null;
});

function start(paths: string[]) {
  const changes: LoadedRule[][] = [];
  const errors: LoadIssue[][] = [];
  watcher = watchRules(
    paths,
    (rules) => changes.push(rules),
    (errs) => errors.push(errs),
    { debounceMs: 30 },
  );
  return { changes, errors };
}

describe('watchRules', () => {
  it('reloads after an edit, and refuses a broken edit so the previous rules keep running', async () => {
    dir = tempDir('rules-watch');
    const path = join(dir.path, 'hot.yaml');
    writeFileSync(path, file(95));
    const initial = loadRuleFiles([path]).rules[0]?.version;
    const { changes, errors } = start([dir.path]);

    writeFileSync(path, file(97));
    const rules = await until('reload after edit', () => changes[0]);
    expect(rules.map((r) => r.id)).toEqual(['hot']);
    const version97 = rules[0]?.version;
    expect(version97).not.toBe(initial);

    const before = changes.length;
    writeFileSync(path, file(97, '  - id: broken\n    title: t\n    severity: major\n    for: 10 minutes\n'));
    const errs = await until('broken edit refused', () => errors[0]);
    expect(errs.map((e) => [e.file, e.line])).toEqual([
      [path, 7],
      [path, 10],
    ]);
    expect(errs.map((e) => e.message)).toEqual([
      'missing required key "when"',
      'for: bad duration "10 minutes": a duration is an integer with a unit: ms, s, m, h or d (e.g. 90s, 10m, 1h30m), or a $param naming a duration',
    ]);
    // the refused edit did not reach onChange
    expect(changes.length).toBe(before);
  });

  it('follows a file replaced by rename, the way editors save', async () => {
    dir = tempDir('rules-watch-rename');
    const path = join(dir.path, 'hot.yaml');
    writeFileSync(path, file(95));
    const initial = loadRuleFiles([path]).rules[0]?.version;
    const { changes } = start([path]);
    const tmp = join(dir.path, '.hot.yaml.swp');
    writeFileSync(tmp, file(99));
    renameSync(tmp, path);
    const first = await until(
      'reload after rename',
      () => changes.find((c) => c[0]?.version !== initial)?.[0],
    );
    // the second save is seen too: the watch did not die with the replaced inode
    writeFileSync(tmp, file(101));
    renameSync(tmp, path);
    const second = await until(
      'second reload',
      () => changes.find((c) => c[0] && c[0].version !== initial && c[0].version !== first.version)?.[0],
    );
    expect(second.id).toBe('hot');
  });

  it('ignores files that are not rule files', async () => {
    dir = tempDir('rules-watch-ignore');
    writeFileSync(join(dir.path, 'hot.yaml'), file(95));
    const { changes, errors } = start([dir.path]);
    writeFileSync(join(dir.path, 'notes.txt'), 'hello');
    writeFileSync(join(dir.path, 'hot.test.yaml'), 'not: rules');
    // a real change afterwards proves the watcher is alive; the ignored ones did not trigger a load
    writeFileSync(join(dir.path, 'other.yaml'), file(90).replace('id: hot', 'id: other'));
    const rules = await until('reload for other.yaml', () => changes[0]);
    expect(rules.map((r) => r.id).sort()).toEqual(['hot', 'other']);
    expect(errors).toEqual([]);
  });
});
