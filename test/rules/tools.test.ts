/** rules check, rules test, the series notation, the JSON Schema file and the model catalogue. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MODELS } from '../../firmware-sim/models/index.js';
import { main, runRulesCheck, runRulesTest } from '../../src/rules/cli.js';
import { MODEL_CATALOGUE } from '../../src/rules/models.js';
import { replayHistory } from '../../src/rules/replay.js';
import { exportRuleJsonSchema } from '../../src/rules/schema.js';
import { expandSeries } from '../../src/rules/testfile.js';
import { tempDir } from '../helpers/process.js';
import { device, MIN, rules, T0 } from './harness.js';

function capture() {
  const o: string[] = [];
  const e: string[] = [];
  return {
    out: {
      stdout: {
        write(s: string) {
          o.push(s);
          return true;
        },
      },
      stderr: {
        write(s: string) {
          e.push(s);
          return true;
        },
      },
    },
    stdout: () => o.join(''),
    stderr: () => e.join(''),
  };
}

const head = 'apiVersion: faultline/v1\nrules:\n';

describe('rules check', () => {
  it('passes on the shipped rules', async () => {
    const c = capture();
    expect(await runRulesCheck(['rules'], c.out)).toBe(0);
    expect(c.stdout()).toBe('OK: 3 file(s), 8 rule(s), 0 error(s), 0 warning(s)\n');
    expect(c.stderr()).toBe('');
  });

  it('fails on a broken file with file:line:col, and prints warnings without failing', async () => {
    const dir = tempDir('rules-check');
    try {
      const broken = join(dir.path, 'broken.yaml');
      const warned = join(dir.path, 'warned.yaml');
      writeFileSync(
        broken,
        `${head}  - id: x\n    title: t\n    severity: urgent\n    when: { absent: { for: 1m } }\n`,
      );
      writeFileSync(
        warned,
        `${head}  - id: y\n    title: t\n    severity: minor\n    scope: { models: "AC-*" }\n    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }\n    for: 5s\n`,
      );
      const c = capture();
      expect(await runRulesCheck([dir.path], c.out)).toBe(1);
      expect(c.stderr()).toBe(
        `${broken}:5:15: severity: Invalid option: expected one of "info"|"minor"|"major"|"critical"\n` +
          `${warned}:8:10: warning: for 5s is shorter than the AC-* reporting interval (10s): it completes on the first sample that holds\n`,
      );
      expect(c.stdout()).toBe('FAILED: 2 file(s), 1 rule(s), 1 error(s), 1 warning(s)\n');

      const w = capture();
      expect(await runRulesCheck([warned], w.out)).toBe(0);
      expect(await runRulesCheck([warned], capture().out, { strict: true })).toBe(1);
    } finally {
      dir.remove();
    }
  });

  it('fails when there is nothing to check', async () => {
    const dir = tempDir('rules-empty');
    try {
      const c = capture();
      expect(await runRulesCheck([dir.path], c.out)).toBe(1);
      expect(c.stderr()).toContain('no rule files');
    } finally {
      dir.remove();
    }
  });
});

describe('rules test', () => {
  it('passes on the shipped rules and their tests', async () => {
    const c = capture();
    expect(await runRulesTest(['rules'], c.out)).toBe(0);
    expect(c.stderr()).toBe('');
    expect(c.stdout()).toMatch(/^OK: \d+ test\(s\), 0 failed\n$/m);
    expect(
      c
        .stdout()
        .split('\n')
        .filter((l) => l.startsWith('ok ')).length,
    ).toBeGreaterThanOrEqual(20);
  });

  it('fails with a readable expected-vs-got diff at the expectation line', async () => {
    const dir = tempDir('rules-test');
    try {
      writeFileSync(
        join(dir.path, 'hot.yaml'),
        `${head}  - id: hot\n    title: t\n    severity: major\n    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }\n    for: 10m\n`,
      );
      const testFile = join(dir.path, 'hot.test.yaml');
      writeFileSync(
        testFile,
        `apiVersion: faultline/v1
tests:
  - name: fires too early
    device: { model: AC-9000 }
    series:
      compressor_temp: "96x70"
    expect:
      - at: 5m
        fired: [hot]
      - at: 11m
`,
      );
      const c = capture();
      expect(await runRulesTest([dir.path], c.out)).toBe(1);
      expect(c.stdout()).toBe('FAIL fires too early\nFAILED: 1 test(s), 1 failed\n');
      expect(c.stderr()).toBe(
        `${testFile}:8:9: test "fires too early" at 5m (up to 5m):\n` +
          '      fired: expected [hot]\n' +
          '             got      []\n' +
          `${testFile}:10:9: test "fires too early" at 11m (after 5m, up to 11m):\n` +
          '      fired: expected []\n' +
          '             got      [10m rule.fired hot (severity=major, value=96)]\n' +
          '    all events of this test (device time from start):\n' +
          '      10m rule.fired hot (severity=major, value=96)\n',
      );
    } finally {
      dir.remove();
    }
  });

  it('reports a broken test file and broken rules under test with positions', async () => {
    const dir = tempDir('rules-test-bad');
    try {
      writeFileSync(
        join(dir.path, 'x.yaml'),
        `${head}  - id: x\n    title: "{{nope}}"\n    severity: minor\n    when: { absent: { for: 1m } }\n`,
      );
      writeFileSync(
        join(dir.path, 'x.test.yaml'),
        'apiVersion: faultline/v1\ntests:\n  - name: n\n    device: { model: AC-9000 }\n    expect: [{ at: 1m }]\n',
      );
      writeFileSync(
        join(dir.path, 'y.test.yaml'),
        'apiVersion: faultline/v1\ntests:\n  - name: n\n    device: { model: AC-9000 }\n    expect: [{ at: soon }]\n',
      );
      const c = capture();
      expect(await runRulesTest([dir.path], c.out)).toBe(1);
      expect(c.stdout()).toBe('FAILED: 0 test(s), 0 failed, 2 file(s) could not run\n');
      const lines = c.stderr().split('\n');
      expect(lines).toContain(
        `${join(dir.path, 'x.yaml')}:4:13: unknown placeholder {{nope}}: known placeholders: device.id, device.model, device.firmware, device.region, device.batch, device.ownerId, rule.id, severity, category, metric, value, threshold, duration, occurrences, code, params.<name>`,
      );
      expect(lines).toContain(
        `${join(dir.path, 'y.test.yaml')}:5:20: at: bad duration "soon": a duration is an integer with a unit: ms, s, m, h or d (e.g. 90s, 10m, 1h30m)`,
      );
    } finally {
      dir.remove();
    }
  });

  it('the CLI entry point maps commands to exit codes', async () => {
    expect(await main(['check', 'rules'])).toBe(0);
    expect(await main(['test', 'rules/fleet.test.yaml'])).toBe(0);
    expect(await main(['frobnicate'])).not.toBe(0);
  });
});

describe('series notation (promtool style)', () => {
  it('expands values, ramps, repeats and missing samples', () => {
    expect(expandSeries('80 85 90 96x3')).toEqual([80, 85, 90, 96, 96, 96, 96]);
    expect(expandSeries('-2+4x3')).toEqual([-2, 2, 6, 10]);
    expect(expandSeries('1-2x4')).toEqual([1, -1, -3, -5, -7]);
    expect(expandSeries('0.1+0.1x2')).toEqual([0.1, 0.2, 0.3]);
    expect(expandSeries('1 _x3 2 _')).toEqual([1, undefined, undefined, undefined, 2, undefined]);
    expect(expandSeries("coolx2 off true falsex1 'fix3'")).toEqual([
      'cool',
      'cool',
      'cool',
      'off',
      true,
      false,
      false,
      'fix3',
    ]);
  });

  it('refuses what it cannot read', () => {
    expect(() => expandSeries('1+2')).toThrow(/needs a count/);
    expect(() => expandSeries('1,2')).toThrow(/cannot read/);
  });
});

describe('replayHistory', () => {
  it('runs rules over recorded history on a virtual clock, timers included', () => {
    const rs = rules(`
  - id: hot
    title: t
    severity: major
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
    for: 10m
  - id: silent
    title: t
    severity: minor
    when: { absent: { for: 30m } }
`);
    const d = { ...device('ac-1'), registeredAt: T0 };
    const items = Array.from({ length: 10 }, (_, i) => ({
      deviceId: 'ac-1',
      ts: T0 + i * MIN,
      metrics: { compressor_temp: 99 },
    }));
    const events = replayHistory(rs, [d, { ...device('ac-2'), registeredAt: T0 }], items, {
      until: T0 + HOUR_,
    });
    expect(events.map((e) => `${e.type} ${e.ruleId} ${e.device.id} @${(e.deviceTime - T0) / MIN}m`)).toEqual([
      'rule.fired hot ac-1 @10m',
      'rule.fired silent ac-2 @30m',
      'rule.fired silent ac-1 @39m',
    ]);
  });

  it('delivers items sharing an explicit receivedAt as one batch', () => {
    const rs = rules(`
  - id: hot
    title: t
    severity: major
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
    for: 2m
`);
    // one live message sets the clock offset, then the buffered minutes arrive two hours later
    const items = [
      { deviceId: 'ac-1', ts: T0, metrics: { compressor_temp: 80 } },
      ...Array.from({ length: 5 }, (_, i) => ({
        deviceId: 'ac-1',
        ts: T0 + (i + 1) * MIN,
        metrics: { compressor_temp: 99 },
        receivedAt: T0 + 2 * HOUR_,
      })),
    ];
    const events = replayHistory(rs, [device('ac-1')], items, { staleAfterMs: 30 * MIN });
    expect(events.map((e) => [e.deviceTime - T0, e.serverTime - T0, e.late, e.stale])).toEqual([
      [3 * MIN, 2 * HOUR_, true, false],
    ]);
  });
});
const HOUR_ = 60 * MIN;

describe('generated files and catalogues', () => {
  it('rules/schema.json is the schema generated from the zod definition', () => {
    const committed = JSON.parse(readFileSync('rules/schema.json', 'utf8')) as unknown;
    // Compared as data: Biome formats the committed file.
    expect(committed).toEqual(exportRuleJsonSchema());
  });

  it('the schema describes every condition kind and rule field', () => {
    const s = exportRuleJsonSchema() as {
      $defs: { condition: { anyOf: Array<{ required: string[] }> } };
      properties: { rules: { items: { properties: Record<string, unknown> } } };
    };
    expect(s.$defs.condition.anyOf.map((b) => b.required[0])).toEqual([
      'all',
      'any',
      'not',
      'threshold',
      'aggregate',
      'faults',
      'absent',
    ]);
    expect(Object.keys(s.properties.rules.items.properties)).toEqual(
      expect.arrayContaining([
        'id',
        'title',
        'scope',
        'severity',
        'category',
        'safety',
        'actions',
        'params',
        'overrides',
        'when',
        'gate',
        'for',
        'clear',
        'maxGap',
        'cooldown',
        'escalate',
        'flapping',
        'fingerprint',
      ]),
    );
  });

  it('the rule catalogue matches the simulator models (metrics, fault codes, reporting interval)', () => {
    for (const model of MODELS.values()) {
      const family = MODEL_CATALOGUE.find((f) => f.models.includes(model.id));
      expect(family, `catalogue family for ${model.id}`).toBeDefined();
      expect(Object.keys(family?.metrics ?? {}).sort()).toEqual([...model.metrics].sort());
      expect(Object.keys(family?.faultCodes ?? {}).sort()).toEqual(Object.keys(model.faultCodes).sort());
      expect(family?.reportingIntervalMs).toBe(model.reportIntervalMs);
    }
    const simulated = new Set([...MODELS.keys()]);
    for (const f of MODEL_CATALOGUE) for (const m of f.models) expect(simulated.has(m), m).toBe(true);
  });
});
