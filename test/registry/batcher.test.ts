import { afterEach, describe, expect, it, vi } from 'vitest';
import { Batcher } from '../../src/registry/batcher.js';

describe('Batcher', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends calls made together as one batch and answers each in order', async () => {
    const batches: number[][] = [];
    const b = new Batcher(async (items: number[]) => {
      batches.push(items);
      return items.map((n) => n * 10);
    }, 100);
    const results = await Promise.all([1, 2, 3].map((n) => b.add(n)));
    expect(results).toEqual([10, 20, 30]);
    expect(batches).toEqual([[1, 2, 3]]);
  });

  it('splits at the batch size, and collects calls made while a batch runs into the next', async () => {
    const batches: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const b = new Batcher(async (items: number[]) => {
      batches.push(items);
      if (batches.length === 1) await gate;
      return items;
    }, 2);
    const first = b.add(1);
    // Let the first batch start, then queue more while it waits on the gate.
    await new Promise((r) => setImmediate(r));
    expect(batches).toEqual([[1]]);
    const rest = [2, 3, 4, 5, 6].map((n) => b.add(n));
    release();
    expect(await Promise.all([first, ...rest])).toEqual([1, 2, 3, 4, 5, 6]);
    expect(batches).toEqual([[1], [2, 3], [4, 5], [6]]);
  });

  it('fails only the callers of a failed batch, and keeps working', async () => {
    let calls = 0;
    const b = new Batcher(async (items: string[]) => {
      calls++;
      if (calls === 1) throw new Error('db down');
      return items.map((s) => s.toUpperCase());
    }, 10);
    const failed = await Promise.allSettled([b.add('a'), b.add('b')]);
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(await b.add('c')).toBe('C');
  });

  /** One call per millisecond for 30 ms (connects paced 1,000/s), then a quiet spell and one more. */
  async function steadyStream(minIntervalMs?: number): Promise<number[][]> {
    vi.useFakeTimers({ toFake: ['setTimeout', 'setImmediate', 'performance'] });
    const batches: number[][] = [];
    const b = new Batcher(
      async (items: number[]) => {
        batches.push(items);
        return items.map((n) => n * 10);
      },
      100,
      minIntervalMs === undefined ? {} : { minIntervalMs },
    );
    const answers: Array<Promise<number>> = [];
    for (let i = 0; i < 30; i++) {
      answers.push(b.add(i));
      await vi.advanceTimersByTimeAsync(1);
    }
    await vi.advanceTimersByTimeAsync(100);
    expect(await Promise.all(answers)).toEqual(Array.from({ length: 30 }, (_, i) => i * 10));
    const lone = b.add(99);
    await vi.advanceTimersByTimeAsync(0); // one setImmediate: no interval wait after a quiet spell
    expect(batches.at(-1)).toEqual([99]);
    expect(await lone).toBe(990);
    return batches.slice(0, -1);
  }

  it('without an interval, a steady stream of calls becomes one batch per call', async () => {
    expect(await steadyStream()).toHaveLength(30);
  });

  it('with minIntervalMs, batches start at most that often and carry the calls made in between', async () => {
    const batches = await steadyStream(10);
    expect(batches[0]).toEqual([0]); // the first call of a stream goes out at once
    expect(batches.length).toBeLessThanOrEqual(4);
    expect(batches.flat()).toEqual(Array.from({ length: 30 }, (_, i) => i));
  });
});
