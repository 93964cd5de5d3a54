/**
 * Locale, translation and formatting for the page. The default comes from the
 * browser's language; the toggle's choice is remembered in localStorage.
 */
import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import { en, type Key } from './en.js';
import { zh } from './zh.js';

export type Locale = 'en' | 'zh';
export type { Key };

const DICTS: Record<Locale, Record<Key, string>> = { en, zh };
const LOCALE_KEY = 'faultline.locale';

export function detectLocale(): Locale {
  const saved = localStorage.getItem(LOCALE_KEY);
  if (saved === 'en' || saved === 'zh') return saved;
  return navigator.language.toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

export function saveLocale(locale: Locale): void {
  localStorage.setItem(LOCALE_KEY, locale);
}

export type Vars = Record<string, string | number>;

export interface I18n {
  locale: Locale;
  /** BCP 47 tag for Intl and the document. */
  tag: string;
  t(key: Key, vars?: Vars): string;
  /** A key built at run time (a status, an event kind); falls back to the raw value. */
  tx(prefix: string, value: string, vars?: Vars): string;
  duration(ms: number): string;
  time(at: string | number): string;
  dateTime(at: string | number): string;
  number(n: number, digits?: number): string;
  percent(ratio: number): string;
}

export function makeI18n(locale: Locale): I18n {
  const dict = DICTS[locale];
  const tag = locale === 'zh' ? 'zh-CN' : 'en-GB';
  const fill = (text: string, vars?: Vars) =>
    vars ? text.replace(/\{(\w+)\}/g, (m, name: string) => (name in vars ? String(vars[name]) : m)) : text;
  const t = (key: Key, vars?: Vars) => fill(dict[key], vars);
  const timeFmt = new Intl.DateTimeFormat(tag, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  const dateTimeFmt = new Intl.DateTimeFormat(tag, {
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
  });
  const toDate = (at: string | number) => new Date(typeof at === 'number' ? at : Date.parse(at));
  return {
    locale,
    tag,
    t,
    tx(prefix, value, vars) {
      const key = `${prefix}.${value}`;
      return key in dict ? fill(dict[key as Key], vars) : value;
    },
    duration(ms) {
      const s = Math.max(0, Math.round(Math.abs(ms) / 1000));
      const parts: Array<[number, Key]> = [
        [Math.floor(s / 86_400), 'unit.d'],
        [Math.floor((s % 86_400) / 3_600), 'unit.h'],
        [Math.floor((s % 3_600) / 60), 'unit.m'],
        [s % 60, 'unit.s'],
      ];
      const first = parts.findIndex(([n]) => n > 0);
      // Two units are enough to act on: "2h 05m", "3d 4h", "45s".
      const shown = first < 0 ? [parts[3]!] : parts.slice(first, first + 2);
      return shown
        .map(([n, unit], i) => `${i > 0 && locale === 'en' ? String(n).padStart(2, '0') : n}${dict[unit]}`)
        .join(dict['unit.sep']);
    },
    time: (at) => timeFmt.format(toDate(at)),
    dateTime: (at) => dateTimeFmt.format(toDate(at)),
    number: (n, digits = 0) =>
      new Intl.NumberFormat(tag, { maximumFractionDigits: digits, minimumFractionDigits: 0 }).format(n),
    percent: (ratio) =>
      new Intl.NumberFormat(tag, { style: 'percent', maximumFractionDigits: 1 }).format(ratio),
  };
}

export const I18nContext = createContext<I18n>(makeI18n('en'));
export const useI18n = (): I18n => useContext(I18nContext);
