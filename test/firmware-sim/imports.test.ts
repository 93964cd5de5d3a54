/**
 * The hard boundary: the simulator stands in for third-party firmware, so from the
 * bridge it may use the wire contract (src/contract/) and nothing else.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = process.cwd();
const CONTRACT = join(ROOT, 'src', 'contract') + sep;
const SRC = join(ROOT, 'src') + sep;

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return tsFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Every module specifier: static imports and re-exports, dynamic import(), require(). */
function specifiers(source: string): string[] {
  const found: string[] = [];
  const patterns = [
    /\b(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]/g,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
    /\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) found.push(m[1]!);
  return found;
}

/** Bridge modules a file imports other than the contract, as paths relative to the repository. */
function forbiddenImports(file: string, source: string): string[] {
  return specifiers(source)
    .filter((s) => s.startsWith('.') || s.startsWith('/'))
    .map((s) => resolve(dirname(file), s))
    .filter(
      (target) =>
        (target + sep).startsWith(SRC) &&
        !(target + sep).startsWith(CONTRACT) &&
        !target.startsWith(CONTRACT),
    )
    .map((target) => relative(ROOT, target));
}

describe('firmware-sim import boundary', () => {
  it('imports nothing from src/ but src/contract/', () => {
    const files = tsFiles(join(ROOT, 'firmware-sim'));
    expect(files.length).toBeGreaterThan(10);
    const offences = files.flatMap((f) =>
      forbiddenImports(f, readFileSync(f, 'utf8')).map((target) => `${relative(ROOT, f)} -> ${target}`),
    );
    expect(offences).toEqual([]);
    // The scan does see the contract imports the simulator is built on.
    const contractUsers = files.filter((f) =>
      specifiers(readFileSync(f, 'utf8')).some((s) => s.includes('src/contract')),
    );
    expect(contractUsers.length).toBeGreaterThan(3);
  });

  it('catches every form of a forbidden import', () => {
    const file = join(ROOT, 'firmware-sim', 'fleet', 'x.ts');
    const bad = [
      "import { x } from '../../src/rules/compile.js';",
      "import type { Y } from '../../src/events/types.js';",
      "export * from '../../src/db/index.js';",
      "import '../../src/log/logger.js';",
      "const m = await import('../../src/app.js');",
      "const c = require('../../src/config/load.js');",
      "import {\n  a,\n  b,\n} from '../../src/contractual/x.js';",
    ];
    for (const line of bad) expect(forbiddenImports(file, line), line).toHaveLength(1);
    const good = [
      "import { topics } from '../../src/contract/index.js';",
      "import type { TelemetrySample } from '../../src/contract/payloads.js';",
      "import mqtt from 'mqtt';",
      "import { Rng } from '../rng.js';",
    ];
    for (const line of good) expect(forbiddenImports(file, line), line).toEqual([]);
  });
});
