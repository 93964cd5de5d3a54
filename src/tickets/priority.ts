/**
 * Priority: a weighted score of affected customers, severity and urgency, each
 * on a 1-5 scale, banded into P1-P4. Safety faults are P1 whatever the score.
 * Pure functions, so docs/tickets.md's worked example is a unit test.
 */
import picomatch from 'picomatch';
import type { Category, Severity } from '../rules/types.js';
import { PRIORITIES, type Priority, type TicketsConfig } from './config.js';

export interface PriorityInput {
  severity: Severity;
  category: Category;
  /** Distinct owners affected: 1 for a device ticket, the count for a fleet incident. */
  customers: number;
  safety: boolean;
}

export interface PriorityResult {
  priority: Priority;
  /** The weighted score, 1..5, rounded to two decimals; safety does not change it. */
  score: number;
  parts: { customers: number; severity: number; urgency: number };
}

export function customerScore(customers: number, scale: readonly number[]): number {
  let s = 1;
  for (const threshold of scale) if (customers >= threshold) s++;
  return s;
}

export function priorityOf(input: PriorityInput, config: TicketsConfig['priority']): PriorityResult {
  const parts = {
    customers: customerScore(input.customers, config.customers),
    severity: config.severity[input.severity],
    urgency: config.urgency[input.category],
  };
  const raw =
    parts.customers * config.weights.customers +
    parts.severity * config.weights.severity +
    parts.urgency * config.weights.urgency;
  // Rounded before banding, so 0.3+0.4+... landing at 3.9999999 does not miss the P1 band at 4.
  const score = Math.round(raw * 100) / 100;
  const banded: Priority =
    score >= config.bands.P1
      ? 'P1'
      : score >= config.bands.P2
        ? 'P2'
        : score >= config.bands.P3
          ? 'P3'
          : 'P4';
  return { priority: input.safety ? 'P1' : banded, score, parts };
}

/** One band more urgent; P1 stays P1. */
export function raiseOneBand(p: Priority): Priority {
  return PRIORITIES[Math.max(0, PRIORITIES.indexOf(p) - 1)]!;
}

/** The more urgent of two priorities. */
export function higherPriority(a: Priority, b: Priority): Priority {
  return PRIORITIES.indexOf(a) <= PRIORITIES.indexOf(b) ? a : b;
}

const CJK = /[\u3000-\u9fff\uf900-\ufaff]/;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Builds the safety-word matcher. Latin keywords match as whole words, case-insensitively, with
 * any run of spaces between the words of a phrase; CJK ones, which have no word boundaries,
 * match as substrings. Returns the keyword that matched, or null.
 */
export function safetyMatcher(keywords: readonly string[]): (text: string) => string | null {
  const compiled = keywords.map((kw) => {
    const body = kw.trim().split(/\s+/).map(escapeRegExp).join('\\s+');
    const re = CJK.test(kw)
      ? new RegExp(body, 'u')
      : new RegExp(`(?<![\\p{L}\\p{N}])${body}(?![\\p{L}\\p{N}])`, 'iu');
    return { kw, re };
  });
  return (text) => {
    for (const { kw, re } of compiled) if (re.test(text)) return kw;
    return null;
  };
}

export interface RouteSubject {
  category: Category;
  model: string;
  region: string | null;
}

/** First matching routing rule's team, else the default team. */
export function teamRouter(
  config: Pick<TicketsConfig, 'routing' | 'defaultTeam'>,
): (s: RouteSubject) => string {
  const list = (v: string | readonly string[] | undefined): readonly string[] | undefined =>
    v === undefined ? undefined : typeof v === 'string' ? [v] : v;
  const routes = config.routing.map((r) => {
    const models = list(r.match.model);
    return {
      team: r.team,
      categories: list(r.match.category),
      regions: list(r.match.region),
      model: models ? picomatch(models as string[]) : null,
    };
  });
  return (s) => {
    for (const r of routes) {
      if (r.categories && !r.categories.includes(s.category)) continue;
      if (r.regions && (s.region === null || !r.regions.includes(s.region))) continue;
      if (r.model && !r.model(s.model)) continue;
      return r.team;
    }
    return config.defaultTeam;
  };
}
