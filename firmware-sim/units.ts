/** Parsing of the human units used on the command line and in fleet files. */

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/** `90s`, `15m`, `2h`, `1d`, `1h30m`, or a bare number of milliseconds. */
export function parseDuration(text: string | number): number {
  if (typeof text === 'number') {
    if (!Number.isFinite(text) || text < 0) throw new Error(`invalid duration: ${text}`);
    return text;
  }
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const parts = trimmed.match(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g);
  if (!parts || parts.join('') !== trimmed) {
    throw new Error(`invalid duration "${text}": use e.g. 90s, 15m, 2h, 1h30m, 1d`);
  }
  let total = 0;
  for (const part of parts) {
    const [, amount, unit] = part.match(/^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/)!;
    total += Number(amount) * DURATION_UNITS[unit!]!;
  }
  return Math.round(total);
}

/** Signed durations for clock skew: `+10m`, `-2h`. */
export function parseSignedDuration(text: string | number): number {
  if (typeof text === 'number') return text;
  const trimmed = text.trim();
  if (trimmed.startsWith('-')) return -parseDuration(trimmed.slice(1));
  if (trimmed.startsWith('+')) return parseDuration(trimmed.slice(1));
  return parseDuration(trimmed);
}

export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
}

/** `200/s`, `200`, `12000/m`: returns events per second. */
export function parseRate(text: string | number): number {
  if (typeof text === 'number') {
    if (!(text > 0)) throw new Error(`rate must be positive: ${text}`);
    return text;
  }
  const match = text.trim().match(/^(\d+(?:\.\d+)?)(?:\/(s|m|h))?$/);
  if (!match) throw new Error(`invalid rate "${text}": use e.g. 200/s or 6000/m`);
  const perUnit = { s: 1, m: 60, h: 3600 }[(match[2] ?? 's') as 's' | 'm' | 'h'];
  const rate = Number(match[1]) / perUnit;
  if (!(rate > 0)) throw new Error(`rate must be positive: ${text}`);
  return rate;
}

/** ISO 8601 with an explicit zone; a zone-less string would silently mean local time. */
export function parseInstant(text: string): number {
  if (!/(Z|[+-]\d{2}:?\d{2})$/i.test(text.trim())) {
    throw new Error(`start time "${text}" needs a time zone, e.g. 2026-01-01T00:00:00Z`);
  }
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) throw new Error(`invalid start time "${text}"`);
  return ms;
}

export function round(value: number, decimals: number): number {
  const f = 10 ** decimals;
  // Normalises -0 so serialised output does not depend on which side of zero noise landed.
  return Math.round(value * f) / f + 0;
}

export function clamp(value: number, min: number, max: number): number {
  return Math.min(Math.max(value, min), max);
}
