/**
 * When a notification may go out: quiet hours in the owner's local time, a
 * per-owner rate limit over a rolling hour, and at most one notification per
 * incident (collapse key) within a window. Safety signal words bypass all three.
 * Pure functions over an explicit clock, so tests drive them with any time.
 */

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

export interface QuietHours {
  /** Minutes after local midnight. */
  start: number;
  end: number;
}

/** 'HH:MM-HH:MM' → minutes; 'off', null or an empty window → null. */
export function parseQuietHours(text: string | null | undefined): QuietHours | null {
  if (!text || text === 'off') return null;
  const m = /^(\d\d):(\d\d)-(\d\d):(\d\d)$/.exec(text);
  if (!m) return null;
  const start = Number(m[1]) * 60 + Number(m[2]);
  const end = Number(m[3]) * 60 + Number(m[4]);
  return start === end ? null : { start, end };
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** Minutes after local midnight at `ms` in `timeZone`. */
export function localMinutes(ms: number, timeZone: string): number {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-GB', { timeZone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    formatters.set(timeZone, f);
  }
  let h = 0;
  let min = 0;
  for (const p of f.formatToParts(ms)) {
    if (p.type === 'hour') h = Number(p.value);
    else if (p.type === 'minute') min = Number(p.value);
  }
  return h * 60 + min;
}

export function inQuietHours(minutes: number, q: QuietHours): boolean {
  return q.start < q.end ? minutes >= q.start && minutes < q.end : minutes >= q.start || minutes < q.end;
}

/** The first whole minute at or after `now` outside the quiet window. */
export function quietEndsAt(now: number, timeZone: string, q: QuietHours): number {
  const local = localMinutes(now, timeZone);
  if (!inQuietHours(local, q)) return now;
  const delta = (q.end - local + 1440) % 1440;
  let t = Math.floor(now / MINUTE) * MINUTE + delta * MINUTE;
  // A DST change inside the window moves local time by up to an hour: walk to the real end.
  for (let i = 0; i < 180 && inQuietHours(localMinutes(t, timeZone), q); i++) t += MINUTE;
  for (let i = 0; i < 180 && t - MINUTE > now && !inQuietHours(localMinutes(t - MINUTE, timeZone), q); i++) {
    t -= MINUTE;
  }
  return t;
}

export interface PolicyInput {
  now: number;
  signal: string;
  bypass: readonly string[];
  quiet: QuietHours | null;
  timeZone: string;
  perHour: number;
  /** When the owner's notifications were sent within the last hour. */
  recentSends: readonly number[];
  perIncidentMs: number;
  /** When the last notification with the same collapse key was sent, if any. */
  lastSameIncident: number | null;
}

export type HoldReason = 'quiet_hours' | 'rate_limit' | 'incident_limit';
export type PolicyDecision =
  | { send: true; bypassed: boolean }
  | { send: false; until: number; reasons: HoldReason[] };

export function decide(p: PolicyInput): PolicyDecision {
  if (p.bypass.includes(p.signal)) return { send: true, bypassed: true };
  const holds: Array<{ reason: HoldReason; until: number }> = [];
  if (p.quiet) {
    const end = quietEndsAt(p.now, p.timeZone, p.quiet);
    if (end > p.now) holds.push({ reason: 'quiet_hours', until: end });
  }
  const window = p.recentSends.filter((t) => t > p.now - HOUR).sort((a, b) => a - b);
  if (window.length >= p.perHour) {
    // Free again once enough of the hour's sends have aged out.
    holds.push({ reason: 'rate_limit', until: window[window.length - p.perHour]! + HOUR });
  }
  if (p.lastSameIncident !== null && p.perIncidentMs > 0 && p.now - p.lastSameIncident < p.perIncidentMs) {
    holds.push({ reason: 'incident_limit', until: p.lastSameIncident + p.perIncidentMs });
  }
  if (holds.length === 0) return { send: true, bypassed: false };
  return { send: false, until: Math.max(...holds.map((h) => h.until)), reasons: holds.map((h) => h.reason) };
}
