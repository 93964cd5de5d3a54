/** The rule author's commands, as `faultline rules ...` processes. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/process.js';

const dir = tempDir('rules-cli');
afterAll(() => dir.remove());

describe('faultline rules', { timeout: 60_000 }, () => {
  it('check and test pass on the shipped rules', async () => {
    const check = await runCli(['rules', 'check', 'rules/']);
    expect(check.code).toBe(0);
    expect(check.stdout).toMatch(/^OK: \d+ file\(s\), 8 rule\(s\), 0 error\(s\)/);
    const test = await runCli(['rules', 'test', 'rules/']);
    expect(test.code).toBe(0);
    expect(test.stdout).toMatch(/OK: \d+ test\(s\), 0 failed/);
  });

  it('check exits non-zero on a broken file and names file:line:col', async () => {
    const file = join(dir.path, 'broken.yaml');
    writeFileSync(
      file,
      'apiVersion: faultline/v1\nrules:\n  - id: x\n    title: t\n    severity: major\n    when: { threshold: { metric: a, op: "~", value: 1 } }\n',
    );
    const check = await runCli(['rules', 'check', file]);
    expect(check.code).toBe(1);
    expect(check.stderr).toContain(`${file}:6:41: op:`);
  });

  it('writes the JSON Schema for editors', async () => {
    const out = await runCli(['rules', 'schema']);
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout)).toHaveProperty('$schema');
  });
});
