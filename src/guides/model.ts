/**
 * Troubleshooting guides: one Markdown file per guide and locale, with YAML front
 * matter saying what the guide applies to and how dangerous the situation is.
 * The shapes here are shared by the loader, the selection, the API and the push.
 */
import { z } from 'zod';

/** ANSI Z535 signal words, most severe first. */
export const SIGNAL_WORDS = ['DANGER', 'WARNING', 'CAUTION', 'NOTICE'] as const;
export type SignalWord = (typeof SIGNAL_WORDS)[number];

export const GUIDE_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,127}$/;
/** BCP 47 as apps send it (zh-CN, en, zh-Hant-TW); canonicalised with Intl before use. */
export const LOCALE_PATTERN = /^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$/;

const globs = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);

export const guideFrontMatterSchema = z.strictObject({
  id: z.string().regex(GUIDE_ID_PATTERN, 'lowercase letters, digits, ".", "_" and "-"'),
  locale: z.string().regex(LOCALE_PATTERN, 'a BCP 47 tag such as zh-CN or en'),
  title: z.string().min(1).max(120),
  summary: z
    .string()
    .min(1)
    .max(300)
    .describe('one or two sentences: the push notification text, so it must stand alone'),
  signal: z.enum(SIGNAL_WORDS).describe('ANSI Z535 signal word'),
  rules: z.array(z.string().min(1)).default([]).describe('rule ids this guide answers'),
  codes: z
    .array(z.string().regex(/^[A-Za-z0-9_-]{1,32}$/))
    .default([])
    .describe('fault codes this guide answers'),
  models: globs.optional().describe('model globs (picomatch), e.g. "RV-*"; default every model'),
  firmware: z.string().min(1).optional().describe('semver range, e.g. ">=2.0.0 <3"; default every version'),
  ownerFixable: z
    .boolean()
    .default(false)
    .describe('the owner can fix this; a "fixed" receipt may then mark the ticket recovered'),
  steps: z.array(z.string().min(1).max(500)).min(1).max(30),
  stopAndCall: z.string().min(1).max(500).describe('the point at which the owner must stop and call service'),
});

export type GuideFrontMatter = z.infer<typeof guideFrontMatterSchema>;

export interface Guide {
  id: string;
  /** Canonical BCP 47 (Intl.getCanonicalLocales). */
  locale: string;
  title: string;
  summary: string;
  signal: SignalWord;
  rules: string[];
  codes: string[];
  /** null: every model. */
  models: string[] | null;
  /** semver range; null: every firmware. */
  firmware: string | null;
  ownerFixable: boolean;
  steps: string[];
  stopAndCall: string;
  /** Markdown below the front matter: the condition and its causes. */
  body: string;
  file: string;
}

/** What a guide is chosen for: the rule event or ticket, and the device. */
export interface GuideQuery {
  /** The guide a rule names in actions.guide; preferred when it applies. */
  guideId?: string | null;
  ruleId?: string | null;
  code?: string | null;
  model?: string | null;
  firmware?: string | null;
}

export interface GuideChoice {
  guide: Guide;
  /** The locale asked for, canonicalised. */
  requestedLocale: string;
  matchedBy: 'id' | 'rule' | 'code';
}

/** The guide as the API and the in-app notification present it. */
export function guideView(g: Guide, extra: { requestedLocale?: string; locales?: string[] } = {}) {
  return {
    id: g.id,
    locale: g.locale,
    ...(extra.requestedLocale ? { requestedLocale: extra.requestedLocale } : {}),
    ...(extra.locales ? { locales: extra.locales } : {}),
    title: g.title,
    summary: g.summary,
    signal: g.signal,
    ownerFixable: g.ownerFixable,
    appliesTo: { rules: g.rules, codes: g.codes, models: g.models, firmware: g.firmware },
    body: g.body,
    steps: g.steps,
    stopAndCall: g.stopAndCall,
  };
}

export type GuideView = ReturnType<typeof guideView>;
