/**
 * Typed in-process event bus. Components publish facts; listeners react.
 * A listener that throws or rejects is isolated: the error is logged under the
 * listener's name and counted, and the other listeners still run.
 */
import type { Logger } from '../log/logger.js';

export type Listener<T> = (payload: T) => void | Promise<void>;

export interface BusObserver {
  listenerError(event: string, listener: string, err: unknown): void;
}

export class EventBus<Events extends { [K in keyof Events]: unknown }> {
  private readonly listeners = new Map<keyof Events, Array<{ name: string; fn: Listener<never> }>>();
  private readonly pending = new Set<Promise<void>>();

  constructor(
    private readonly log: Logger,
    private readonly observer?: BusObserver,
  ) {}

  /** Registers a named listener; returns a function that removes it. */
  on<K extends keyof Events>(event: K, name: string, fn: Listener<Events[K]>): () => void {
    const list = this.listeners.get(event) ?? [];
    const entry = { name, fn: fn as Listener<never> };
    list.push(entry);
    this.listeners.set(event, list);
    return () => {
      const current = this.listeners.get(event);
      if (current)
        this.listeners.set(
          event,
          current.filter((e) => e !== entry),
        );
    };
  }

  emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    const list = this.listeners.get(event);
    if (!list) return;
    for (const { name, fn } of list) {
      try {
        const result = (fn as Listener<Events[K]>)(payload);
        if (result instanceof Promise) {
          const tracked: Promise<void> = result
            .catch((err: unknown) => this.fail(String(event), name, err))
            .finally(() => this.pending.delete(tracked));
          this.pending.add(tracked);
        }
      } catch (err) {
        this.fail(String(event), name, err);
      }
    }
  }

  /** Resolves when every asynchronous listener started so far has settled (used at shutdown and in tests). */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  listenerCount(event: keyof Events): number {
    return this.listeners.get(event)?.length ?? 0;
  }

  private fail(event: string, listener: string, err: unknown): void {
    this.log.error({ err, event, listener }, `listener ${listener} failed on ${event}`);
    this.observer?.listenerError(event, listener, err);
  }
}
