/**
 * Durations in rule files: an integer with a unit, optionally chained
 * (`90s`, `10m`, `1h30m`, `500ms`, `2d`). A bare number is refused on purpose:
 * `for: 600` reads as seconds to some authors and milliseconds to others.
 */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export const DURATION_PATTERN = /^(?:0|(?:\d+(?:ms|s|m|h|d))+)$/;
export const DURATION_HINT = 'a duration is an integer with a unit: ms, s, m, h or d (e.g. 90s, 10m, 1h30m)';

export function parseDuration(text: string): number {
  const trimmed = text.trim();
  if (!DURATION_PATTERN.test(trimmed)) throw new Error(`bad duration "${text}": ${DURATION_HINT}`);
  if (trimmed === '0') return 0;
  let total = 0;
  for (const m of trimmed.matchAll(/(\d+)(ms|s|m|h|d)/g)) {
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  }
  if (!Number.isSafeInteger(total)) throw new Error(`duration "${text}" is too long`);
  return total;
}

/** The shortest exact spelling, so messages and rendered titles read like the rule file. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return 'n/a';
  if (ms === 0) return '0s';
  const sign = ms < 0 ? '-' : '';
  let rest = Math.round(Math.abs(ms));
  let out = '';
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
  ] as const) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  if (rest > 0) out += `${rest}ms`;
  return sign + out;
}
