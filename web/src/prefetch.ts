/**
 * A request started before the page knows it needs it: on load with a stored
 * token, the queue is asked for together with /api/v1/me instead of after it,
 * which is one round trip less before the first rows show.
 */
import { api } from './api.js';

const started = new Map<string, Promise<unknown>>();

export function prefetch(path: string): void {
  const p = api(path);
  // Whoever takes it handles a failure; an untaken one must not be an unhandled rejection.
  p.catch(() => undefined);
  started.set(path, p);
}

/** The prefetched answer for `path`, once; null when none was started. */
export function takePrefetched<T>(path: string): Promise<T> | null {
  const p = started.get(path);
  started.delete(path);
  return (p as Promise<T> | undefined) ?? null;
}
