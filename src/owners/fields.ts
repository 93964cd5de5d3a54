/** Owner field rules that configuration shares, kept free of database imports. */

/** 'HH:MM-HH:MM' in the owner's local time (may wrap midnight), or 'off'. */
export const QUIET_HOURS_PATTERN = /^(?:off|(?:[01]\d|2[0-3]):[0-5]\d-(?:[01]\d|2[0-3]):[0-5]\d)$/;

export function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}
