/** The send policy on its own: quiet hours in the owner's zone (DST included), rate and incident limits, bypass. */
import { describe, expect, it } from 'vitest';
import { decide, localMinutes, parseQuietHours, quietEndsAt } from '../../src/push/policy.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const night = parseQuietHours('22:00-07:00')!;

const base = {
  signal: 'CAUTION',
  bypass: ['DANGER'],
  quiet: night,
  timeZone: 'Asia/Shanghai',
  perHour: 3,
  recentSends: [] as number[],
  perIncidentMs: 60 * MINUTE,
  lastSameIncident: null,
};

describe('quiet hours', () => {
  it('parse, and "off" or an empty window means none', () => {
    expect(parseQuietHours('22:00-07:00')).toEqual({ start: 1320, end: 420 });
    expect(parseQuietHours('13:30-14:00')).toEqual({ start: 810, end: 840 });
    expect(parseQuietHours('off')).toBeNull();
    expect(parseQuietHours('08:00-08:00')).toBeNull();
    expect(parseQuietHours(null)).toBeNull();
  });

  it("hold until the end of the window in the owner's zone, across midnight", () => {
    const at23Shanghai = Date.UTC(2026, 0, 5, 15, 0); // 23:00 in Shanghai (UTC+8)
    expect(localMinutes(at23Shanghai, 'Asia/Shanghai')).toBe(23 * 60);
    expect(quietEndsAt(at23Shanghai, 'Asia/Shanghai', night)).toBe(Date.UTC(2026, 0, 5, 23, 0));
    // The same instant is 16:00 in Berlin: not quiet there.
    expect(quietEndsAt(at23Shanghai, 'Europe/Berlin', night)).toBe(at23Shanghai);
    const at0630 = Date.UTC(2026, 0, 5, 22, 30, 15);
    expect(quietEndsAt(at0630, 'Asia/Shanghai', night)).toBe(Date.UTC(2026, 0, 5, 23, 0));
  });

  it('end at the real local time when the clocks change inside the window', () => {
    // New York falls back on 1 Nov 2026 at 02:00 EDT: 23:00 EDT to 07:00 EST is nine hours.
    const fallBack = Date.UTC(2026, 10, 1, 3, 0); // 23:00 EDT, 31 Oct
    expect(quietEndsAt(fallBack, 'America/New_York', night)).toBe(Date.UTC(2026, 10, 1, 12, 0));
    // Springs forward on 8 Mar 2026 at 02:00 EST → 03:00 EDT: a 01:00-02:30 window ends at 03:00 EDT.
    const early = parseQuietHours('01:00-02:30')!;
    const springForward = Date.UTC(2026, 2, 8, 6, 30); // 01:30 EST
    expect(quietEndsAt(springForward, 'America/New_York', early)).toBe(Date.UTC(2026, 2, 8, 7, 0));
  });
});

describe('decide', () => {
  const noon = Date.UTC(2026, 0, 5, 4, 0); // 12:00 in Shanghai

  it('sends in the day and holds at night until the window ends', () => {
    expect(decide({ ...base, now: noon })).toEqual({ send: true, bypassed: false });
    const at23 = Date.UTC(2026, 0, 5, 15, 0);
    expect(decide({ ...base, now: at23 })).toEqual({
      send: false,
      until: Date.UTC(2026, 0, 5, 23, 0),
      reasons: ['quiet_hours'],
    });
  });

  it('holds the fourth in an hour until the oldest of the last three is an hour old', () => {
    const sends = [noon - 50 * MINUTE, noon - 20 * MINUTE, noon - 5 * MINUTE];
    expect(decide({ ...base, now: noon, recentSends: sends.slice(1) })).toMatchObject({ send: true });
    expect(decide({ ...base, now: noon, recentSends: sends })).toEqual({
      send: false,
      until: noon + 10 * MINUTE,
      reasons: ['rate_limit'],
    });
    expect(decide({ ...base, now: noon + 10 * MINUTE, recentSends: sends })).toMatchObject({ send: true });
  });

  it('sends one per incident within the window, and the latest of all holds wins', () => {
    expect(decide({ ...base, now: noon, lastSameIncident: noon - 15 * MINUTE })).toEqual({
      send: false,
      until: noon + 45 * MINUTE,
      reasons: ['incident_limit'],
    });
    const late = Date.UTC(2026, 0, 5, 13, 50); // 21:50: the incident window ends in quiet hours
    expect(decide({ ...base, now: late, lastSameIncident: late - 30 * MINUTE })).toEqual({
      send: false,
      until: late + 30 * MINUTE,
      reasons: ['incident_limit'],
    });
    const later = late + 15 * MINUTE; // 22:05
    expect(decide({ ...base, now: later, lastSameIncident: late - 30 * MINUTE })).toEqual({
      send: false,
      until: Date.UTC(2026, 0, 5, 23, 0),
      reasons: ['quiet_hours', 'incident_limit'],
    });
  });

  it('lets DANGER through quiet hours and every limit', () => {
    const at23 = Date.UTC(2026, 0, 5, 15, 0);
    expect(
      decide({
        ...base,
        signal: 'DANGER',
        now: at23,
        recentSends: [at23 - MINUTE, at23 - 2 * MINUTE, at23 - 3 * MINUTE],
        lastSameIncident: at23 - MINUTE,
      }),
    ).toEqual({ send: true, bypassed: true });
    expect(decide({ ...base, signal: 'WARNING', now: at23 })).toMatchObject({ send: false });
    expect(decide({ ...base, now: at23 + 12 * HOUR, quiet: null })).toMatchObject({ send: true });
  });
});
