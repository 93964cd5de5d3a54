/**
 * The loaded guides, selection, and hot reload. A reload that does not load
 * cleanly is refused whole and the previous guides stay in use, as with rules.
 */
import { type FSWatcher, statSync, watch } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import picomatch from 'picomatch';
import semver from 'semver';
import type { Logger } from '../log/logger.js';
import { formatIssue } from '../rules/loader.js';
import type { LoadIssue } from '../rules/types.js';
import { type GuideLoadResult, isGuideFile, loadGuideFiles } from './loader.js';
import { canonicalLocale, fallbackChain } from './locale.js';
import type { Guide, GuideChoice, GuideQuery } from './model.js';

interface Entry {
  /** locale -> guide */
  locales: Map<string, Guide>;
  /** Any locale: applicability is the same in all of them (the loader checks). */
  any: Guide;
  matchesModel: (model: string) => boolean;
}

export interface GuideLibraryOptions {
  paths: string[];
  /** Locale of last resort, and the preferred variant of its language (zh-CN for a bare zh). */
  defaultLocale?: string;
  watch?: boolean;
  log?: Logger;
  /** Quiet time after the last file event before reloading. */
  debounceMs?: number;
}

export class GuideLibrary {
  #entries = new Map<string, Entry>();
  #loadErrors: LoadIssue[] = [];
  #warnings: LoadIssue[] = [];
  #lastReloadAt: string | null = null;
  #watchers: FSWatcher[] = [];
  #timer: NodeJS.Timeout | null = null;
  readonly defaultLocale: string;

  constructor(private readonly o: GuideLibraryOptions) {
    this.defaultLocale = canonicalLocale(o.defaultLocale) ?? 'zh-CN';
    const first = loadGuideFiles(o.paths);
    if (first.errors.length > 0) this.#refuse(first, 'guide file error');
    else this.#replace(first);
    o.log?.info(
      { component: 'guides', paths: o.paths, guides: first.guides.length, errors: first.errors.length },
      `loaded ${first.errors.length > 0 ? 0 : first.guides.length} guide files from ${o.paths.join(', ')}`,
    );
  }

  /** Guides by id: every locale of each. */
  list(): Array<{ id: string; locales: string[]; guide: Guide }> {
    return [...this.#entries.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([id, e]) => ({ id, locales: [...e.locales.keys()].sort(), guide: e.any }));
  }

  get size(): number {
    return this.#entries.size;
  }

  locales(id: string): string[] {
    return [...(this.#entries.get(id)?.locales.keys() ?? [])].sort();
  }

  /** One guide in the best locale for `locale` (see fallbackChain), or null for an unknown id. */
  get(id: string, locale: string | null): Guide | null {
    const e = this.#entries.get(id);
    if (!e) return null;
    const chosen = fallbackChain(locale, [...e.locales.keys()], this.defaultLocale)[0];
    return chosen ? (e.locales.get(chosen) ?? null) : null;
  }

  /**
   * The guide for a fault: the one the rule names, else one written for the rule, else one for
   * the fault code; each must apply to the device's model and firmware. Among equals the more
   * specific (a firmware range, a model list) wins, then the id in order, so the choice is stable.
   */
  select(q: GuideQuery, locale: string | null): GuideChoice | null {
    let best: { e: Entry; rank: number; matchedBy: GuideChoice['matchedBy'] } | null = null;
    for (const [id, e] of this.#entries) {
      const g = e.any;
      const matchedBy: GuideChoice['matchedBy'] | null =
        q.guideId && id === q.guideId
          ? 'id'
          : q.ruleId && g.rules.includes(q.ruleId)
            ? 'rule'
            : q.code && g.codes.includes(q.code)
              ? 'code'
              : null;
      if (!matchedBy) continue;
      if (q.model && !e.matchesModel(q.model)) continue;
      if (!q.model && g.models !== null) continue;
      if (!firmwareMatches(g.firmware, q.firmware ?? null)) continue;
      const rank = { id: 300, rule: 200, code: 100 }[matchedBy] + (g.firmware ? 2 : 0) + (g.models ? 1 : 0);
      if (!best || rank > best.rank || (rank === best.rank && id < best.e.any.id)) {
        best = { e, rank, matchedBy };
      }
    }
    if (!best) return null;
    const guide = this.get(best.e.any.id, locale);
    if (!guide) return null;
    return {
      guide,
      requestedLocale: canonicalLocale(locale) ?? this.defaultLocale,
      matchedBy: best.matchedBy,
    };
  }

  describe(): { guides: number; loadErrors: string[]; warnings: string[]; lastReloadAt: string | null } {
    return {
      guides: this.#entries.size,
      loadErrors: this.#loadErrors.map((e) => formatIssue(e)),
      warnings: this.#warnings.map((w) => formatIssue(w, 'warning')),
      lastReloadAt: this.#lastReloadAt,
    };
  }

  /** Loads the files now; a set with any error is refused and the current guides stay. */
  reload(): GuideLoadResult {
    const result = loadGuideFiles(this.o.paths);
    if (result.errors.length > 0) this.#refuse(result, 'guide change refused, previous guides stay in use');
    else {
      this.#replace(result);
      this.o.log?.info(
        { component: 'guides', guides: this.#entries.size },
        `guides reloaded: ${result.guides.length} files, ${this.#entries.size} guides`,
      );
    }
    return result;
  }

  /** Watches the guide directories (not files: editors save by renaming over them). */
  startWatching(): void {
    if (this.#watchers.length > 0) return;
    const dirs = new Map<string, { all: boolean; names: Set<string> }>();
    for (const p of this.o.paths) {
      const abs = resolve(p);
      let isDir = false;
      try {
        isDir = statSync(abs).isDirectory();
      } catch {
        // A file that does not exist yet is watched through its directory.
      }
      const dir = isDir ? abs : dirname(abs);
      const entry = dirs.get(dir) ?? { all: false, names: new Set<string>() };
      if (isDir) entry.all = true;
      else entry.names.add(basename(abs));
      dirs.set(dir, entry);
    }
    for (const [dir, entry] of dirs) {
      try {
        const w = watch(dir, (_event, filename) => {
          const name = filename?.toString();
          if (name === undefined || (entry.all && isGuideFile(name)) || entry.names.has(name))
            this.#schedule();
        });
        w.on('error', (err) => this.o.log?.warn({ err, dir }, 'guide directory watch failed'));
        this.#watchers.push(w);
      } catch (err) {
        this.o.log?.warn({ err, dir }, 'cannot watch guide directory; reload through the API');
      }
    }
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    for (const w of this.#watchers) w.close();
    this.#watchers = [];
  }

  #schedule(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.reload();
    }, this.o.debounceMs ?? 250);
  }

  #replace(result: GuideLoadResult): void {
    const entries = new Map<string, Entry>();
    for (const g of result.guides) {
      const e = entries.get(g.id);
      if (e) e.locales.set(g.locale, g);
      else {
        const globs = g.models ?? ['*'];
        const fns = globs.map((m) => picomatch(m));
        entries.set(g.id, {
          locales: new Map([[g.locale, g]]),
          any: g,
          matchesModel: (model) => fns.some((f) => f(model)),
        });
      }
    }
    this.#entries = entries;
    this.#loadErrors = [];
    this.#warnings = result.warnings;
    this.#lastReloadAt = new Date().toISOString();
  }

  #refuse(result: GuideLoadResult, what: string): void {
    this.#loadErrors = result.errors;
    for (const e of result.errors) this.o.log?.error({ component: 'guides' }, `${what}: ${formatIssue(e)}`);
  }
}

/** Same reading as rule scopes: a firmware-scoped guide does not apply to an unknown firmware. */
export function firmwareMatches(range: string | null, firmware: string | null): boolean {
  if (range === null) return true;
  if (firmware === null) return false;
  const version = semver.valid(firmware, { loose: true }) ?? semver.coerce(firmware)?.version ?? null;
  return version !== null && semver.satisfies(version, range, { loose: true, includePrerelease: true });
}
