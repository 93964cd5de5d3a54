import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../src/rules/duration.js';
import { formatIssue, loadRuleFiles, loadRuleText } from '../../src/rules/loader.js';
import { tempDir } from '../helpers/process.js';

const head = 'apiVersion: faultline/v1\nrules:\n';
const ok = `  - id: ok
    title: "fine"
    severity: minor
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
`;

const at = (text: string) =>
  loadRuleText(text, 'r.yaml', { catalogueChecks: false }).errors.map(
    (e) => `${e.line}:${e.col} ${e.message}`,
  );

describe('loader errors name file:line:col', () => {
  it('broken YAML', () => {
    const r = loadRuleText(`${head}  - id: x\n    title: [unclosed\n`, 'rules/broken.yaml');
    expect(r.rules).toEqual([]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ file: 'rules/broken.yaml', line: 5, col: 1 });
    expect(formatIssue(r.errors[0] as never)).toMatch(/^rules\/broken\.yaml:5:1: /);
  });

  it('unknown key, with a suggestion', () => {
    expect(
      at(`${head}  - id: x\n    titel: t\n    severity: minor\n    when: { absent: { for: 1m } }\n`),
    ).toEqual([
      '3:5 missing required key "title" (string)',
      '4:5 unknown key "titel" (did you mean "title"?)',
    ]);
  });

  it('unknown key inside a condition points at the key', () => {
    expect(
      at(
        `${head}  - id: x\n    title: t\n    severity: minor\n    when: { threshold: { metric: a, op: ">", value: 1, hold: 5m } }\n`,
      ),
    ).toEqual(['6:56 unknown key "hold"; expected one of: metric, op, value, for']);
  });

  it('bad duration', () => {
    expect(
      at(
        `${head}  - id: x\n    title: t\n    severity: minor\n    when: { absent: { for: 1m } }\n    for: 10 minutes\n`,
      ),
    ).toEqual([
      '7:10 for: bad duration "10 minutes": a duration is an integer with a unit: ms, s, m, h or d (e.g. 90s, 10m, 1h30m), or a $param naming a duration',
    ]);
  });

  it('two condition kinds in one entry', () => {
    expect(
      at(
        `${head}  - id: x\n    title: t\n    severity: minor\n    when:\n      absent: { for: 1m }\n      faults: { code: E05, within: 1h }\n`,
      ),
    ).toEqual(['7:7 one condition per entry, found absent and faults: combine them under all: or any:']);
  });

  it('unknown placeholder, at the placeholder itself', () => {
    expect(
      at(
        `${head}  - id: x\n    title: "Hot on {{devce.id}}"\n    severity: minor\n    when: { absent: { for: 1m } }\n`,
      ),
    ).toEqual([
      '4:20 unknown placeholder {{devce.id}}: known placeholders: device.id, device.model, device.firmware, device.region, device.batch, device.ownerId, rule.id, severity, category, metric, value, threshold, duration, occurrences, code, params.<name>',
    ]);
    expect(
      at(
        `${head}  - id: x\n    title: "{{params.limit}}"\n    severity: minor\n    when: { absent: { for: 1m } }\n`,
      ),
    ).toEqual(['4:13 unknown placeholder {{params.limit}}: no parameter "limit" in params']);
  });

  it('parameters: unknown reference, undeclared override, wrong type, bad duration param', () => {
    expect(
      at(`${head}  - id: x
    title: t
    severity: minor
    params: { limit: 95, hold: soon }
    overrides:
      - models: "AC-9*"
        params: { limt: 90, limit: "high" }
    when: { threshold: { metric: a, op: ">", value: $limitt } }
    for: $hold
`),
    ).toEqual([
      '10:53 unknown parameter "limitt": declare it under params',
      '9:25 override of undeclared parameter "limt": declare a default under params',
      '9:36 "limit" is a number in params but a string here',
      '6:32 parameter "hold" is used as a duration (e.g. "10m") at for',
    ]);
  });

  it('semantic errors: bad semver range, device+code without one faults leaf, window not a multiple of step', () => {
    expect(
      at(`${head}  - id: x
    title: t
    severity: minor
    scope: { firmware: "not a range" }
    fingerprint: device+code
    when: { aggregate: { metric: a, fn: avg, window: 10m, step: 3m, op: ">", value: 1 } }
`),
    ).toEqual([
      '8:65 the window (10m) must be a whole number of steps (180000 ms)',
      '6:24 "not a range" is not a semver range (e.g. ">=3.0.0 <4")',
      '7:18 device+code needs exactly one faults condition in the rule',
    ]);
  });

  it('a file with an error contributes no rules; other files still load', () => {
    const dir = tempDir('rules-load');
    try {
      writeFileSync(join(dir.path, 'good.yaml'), `${head}${ok}`);
      writeFileSync(
        join(dir.path, 'bad.yaml'),
        `${head}${ok.replace('id: ok', 'id: ok2')}  - id: y\n    severity: minor\n`,
      );
      writeFileSync(join(dir.path, 'notes.test.yaml'), 'not rules');
      const r = loadRuleFiles([dir.path]);
      expect(r.rules.map((x) => x.id)).toEqual(['ok']);
      expect(r.errors.map((e) => [e.file.endsWith('bad.yaml'), e.line, e.col, e.message])).toEqual([
        [true, 7, 5, 'missing required key "title" (string)'],
        [true, 7, 5, 'missing required key "when"'],
      ]);
    } finally {
      dir.remove();
    }
  });

  it('duplicate ids across files name both places', () => {
    const dir = tempDir('rules-dup');
    try {
      writeFileSync(join(dir.path, 'a.yaml'), `${head}${ok}`);
      writeFileSync(join(dir.path, 'b.yaml'), `${head}\n${ok}`);
      const r = loadRuleFiles([dir.path]);
      expect(r.errors).toHaveLength(1);
      expect(r.errors[0]?.file).toBe(join(dir.path, 'b.yaml'));
      expect(r.errors[0]?.line).toBe(4);
      expect(r.errors[0]?.message).toBe(
        `duplicate rule id "ok" (first defined at ${join(dir.path, 'a.yaml')}:3:5)`,
      );
    } finally {
      dir.remove();
    }
  });

  it('a missing file is an error, not a crash', () => {
    const r = loadRuleFiles(['/nonexistent/rules.yaml']);
    expect(r.errors.map((e) => [e.file, e.line, e.col])).toEqual([['/nonexistent/rules.yaml', 1, 1]]);
  });
});

describe('catalogue warnings', () => {
  const warn = (body: string) =>
    loadRuleText(`${head}${body}`, 'w.yaml').warnings.map((w) => `${w.line}:${w.col} ${w.message}`);

  it('a metric no model in scope reports', () => {
    expect(
      warn(
        `  - id: x\n    title: t\n    severity: minor\n    scope: { models: "RV-*" }\n    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }\n`,
      ),
    ).toEqual([
      '7:34 no model in scope (RV-*) reports metric "compressor_temp" (RV-*: battery_temp, battery_level, main_brush_current, wheel_current_left, wheel_current_right, suction, dock_state, cleaning)',
    ]);
  });

  it('a for shorter than the reporting interval', () => {
    expect(
      warn(
        `  - id: x\n    title: t\n    severity: minor\n    scope: { models: "AC-*" }\n    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }\n    for: 5s\n`,
      ),
    ).toEqual([
      '8:10 for 5s is shorter than the AC-* reporting interval (10s): it completes on the first sample that holds',
    ]);
  });

  it('a condition that can never clear, and hysteresis that overlaps', () => {
    expect(
      warn(`  - id: x
    title: t
    severity: minor
    scope: { models: "AC-*" }
    when: { threshold: { metric: fan_rpm, op: ">=", value: 0 } }
  - id: y
    title: t
    severity: minor
    scope: { models: "AC-*" }
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
    clear: { when: { threshold: { metric: compressor_temp, op: ">", value: 200 } } }
  - id: z
    title: t
    severity: minor
    scope: { models: "AC-*" }
    when: { threshold: { metric: compressor_temp, op: ">", value: 95 } }
    clear: { when: { threshold: { metric: compressor_temp, op: "<", value: 97 } } }
`),
    ).toEqual([
      '7:11 the raise condition can never be false: an incident can never clear',
      '13:20 the clear condition can never be true: an incident can never clear',
      '19:20 the clear condition can hold while the raise condition holds: an incident may resolve and re-fire without the value moving (hysteresis needs disjoint conditions)',
    ]);
  });

  it('a state value the metric never takes, and a numeric comparison on a string metric', () => {
    expect(
      warn(`  - id: x
    title: t
    severity: minor
    scope: { models: "AC-*" }
    when:
      any:
        - threshold: { metric: mode, op: "==", value: cooling }
        - threshold: { metric: mode, op: ">", value: 1 }
`),
    ).toEqual([
      '9:55 "mode" takes cool, heat, fan, dry, off; "cooling" never matches',
      '10:42 "mode" is a string metric: ">" needs numbers and will fail at runtime',
    ]);
  });

  it('an unknown fault code and a model glob that matches nothing known', () => {
    expect(
      warn(
        `  - id: x\n    title: t\n    severity: minor\n    scope: { models: "DW-*" }\n    when: { faults: { code: Z99, within: 1h } }\n`,
      ),
    ).toEqual([
      '6:22 model glob DW-* matches no catalogued model family: AC-* (air conditioner), RV-* (robot vacuum)',
    ]);
    expect(
      warn(
        `  - id: x\n    title: t\n    severity: minor\n    scope: { models: "AC-*" }\n    when: { faults: { code: Z99, within: 1h } }\n`,
      ),
    ).toEqual(['7:29 no model in scope reports fault code "Z99" (AC-*: E01 E02 E05 E07 EC P1 P2 P4)']);
  });

  it('the shipped rules load without errors or warnings', () => {
    const r = loadRuleFiles(['rules']);
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.rules.map((x) => x.id).sort()).toEqual([
      'ac-compressor-overheat',
      'ac-fan-stall',
      'ac-fault-e05-repeat',
      'ac-refrigerant-low',
      'device-silent',
      'rv-battery-overheat',
      'rv-brush-overcurrent',
      'rv-wheel-stuck-repeat',
    ]);
    const battery = r.rules.find((x) => x.id === 'rv-battery-overheat');
    expect([battery?.safety, battery?.severity]).toEqual([true, 'critical']);
  });
});

describe('durations', () => {
  it('parses units and chains, refuses bare numbers', () => {
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('2d')).toBe(172_800_000);
    expect(parseDuration('0')).toBe(0);
    expect(() => parseDuration('600')).toThrow(/bad duration "600"/);
    expect(() => parseDuration('10 m')).toThrow(/bad duration/);
    expect(() => parseDuration('1.5h')).toThrow(/bad duration/);
  });

  it('formats back to the shortest exact spelling', () => {
    expect(formatDuration(5_400_000)).toBe('1h30m');
    expect(formatDuration(90_500)).toBe('1m30s500ms');
    expect(formatDuration(0)).toBe('0s');
  });
});
