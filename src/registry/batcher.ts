/**
 * Group commit for small queries. On PGlite every statement costs ~1 ms whatever
 * it does, so a storm of 10k reconnects doing one lookup each takes 10 s; one
 * statement for 1,000 ids costs about as much as a few single ones. Calls made
 * while a batch is running (or in the same event-loop turn) are sent together
 * as the next batch; a lone call goes out after one setImmediate, so quiet
 * periods keep their latency.
 *
 * With minIntervalMs, batches start at least that far apart: under a steady
 * stream of calls (connects paced 1,000/s arrive one by one, each lookup done
 * before the next arrives) batches would otherwise stay at one item, one
 * statement per call. A call after a quiet spell still goes out at once.
 */
interface Pending<T, R> {
  item: T;
  resolve: (value: R) => void;
  reject: (err: unknown) => void;
}

export interface BatcherOptions {
  /** Least time between the starts of two batches; 0 (the default): none. */
  minIntervalMs?: number;
}

export class Batcher<T, R> {
  readonly #run: (items: T[]) => Promise<R[]>;
  readonly #max: number;
  readonly #minIntervalMs: number;
  #queue: Array<Pending<T, R>> = [];
  #busy = false;
  #lastStart = Number.NEGATIVE_INFINITY;

  /** run receives up to maxBatch items and must return one result per item, in order. */
  constructor(run: (items: T[]) => Promise<R[]>, maxBatch: number, options: BatcherOptions = {}) {
    this.#run = run;
    this.#max = maxBatch;
    this.#minIntervalMs = options.minIntervalMs ?? 0;
  }

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject });
      if (!this.#busy) {
        this.#busy = true;
        setImmediate(() => {
          void this.#drain();
        });
      }
    });
  }

  /** Never rejects: a failed batch fails its own callers only. */
  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const wait = this.#lastStart + this.#minIntervalMs - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        this.#lastStart = performance.now();
        const batch = this.#queue.splice(0, this.#max);
        try {
          const results = await this.#run(batch.map((p) => p.item));
          batch.forEach((p, i) => {
            p.resolve(results[i] as R);
          });
        } catch (err) {
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      this.#busy = false;
    }
  }
}
