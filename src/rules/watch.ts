/**
 * Hot reload: watches rule files and reloads them after edits settle. A change
 * that does not load is reported through onError and onChange is not called, so
 * the integrator keeps running the previous rules.
 *
 * Directories are watched rather than files: editors save by writing a new file
 * and renaming it over the old one, which silently ends a watch on the file itself.
 */
import { type FSWatcher, statSync, watch } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import type { LoadedRule } from './compile.js';
import { isRuleFile, type LoadResult, loadRuleFiles } from './loader.js';
import type { LoadIssue } from './types.js';

export interface RuleWatcher {
  /** Loads now (outside the debounce) and reports like a file change would. */
  reload(): LoadResult;
  close(): void;
}

export interface WatchOptions {
  /** Quiet time after the last file event before reloading (default 250 ms). */
  debounceMs?: number;
}

export function watchRules(
  paths: string[],
  onChange: (rules: LoadedRule[], result: LoadResult) => void,
  onError: (errors: LoadIssue[], result: LoadResult) => void,
  opts: WatchOptions = {},
): RuleWatcher {
  const debounceMs = opts.debounceMs ?? 250;
  const dirs = new Map<string, { all: boolean; names: Set<string> }>();
  for (const p of paths) {
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

  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  const reload = (): LoadResult => {
    const result = loadRuleFiles(paths);
    if (result.errors.length > 0) onError(result.errors, result);
    else onChange(result.rules, result);
    return result;
  };
  const schedule = () => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      if (!closed) reload();
    }, debounceMs);
  };

  const watchers: FSWatcher[] = [];
  for (const [dir, entry] of dirs) {
    try {
      const w = watch(dir, (_event, filename) => {
        // Some platforms omit the name; reload then, to be safe.
        const name = filename?.toString();
        if (name === undefined || (entry.all && isRuleFile(name)) || entry.names.has(name)) schedule();
      });
      w.on('error', (err) =>
        onError([{ file: dir, line: 1, col: 1, message: `watch failed: ${err.message}` }], {
          rules: [],
          errors: [],
          warnings: [],
        }),
      );
      watchers.push(w);
    } catch (err) {
      onError([{ file: dir, line: 1, col: 1, message: `cannot watch: ${(err as Error).message}` }], {
        rules: [],
        errors: [],
        warnings: [],
      });
    }
  }

  return {
    reload,
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
