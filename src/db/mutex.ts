/** A FIFO async mutex: callers run one at a time, in the order they asked. */
export class Mutex {
  #tail: Promise<void> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    // The chain must survive a rejected holder, or one failed query would wedge every later one.
    this.#tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
