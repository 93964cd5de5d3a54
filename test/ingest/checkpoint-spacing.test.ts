import { describe, expect, it } from 'vitest';
import { checkpointDue } from '../../src/ingest/pipeline.js';

describe('pipeline checkpoint spacing', () => {
  it('checkpoints every tick while the state is cheap to save', () => {
    expect(checkpointDue(1_000, 0)).toBe(true);
    expect(checkpointDue(1_000, 2)).toBe(true);
  });

  it('spaces checkpoints 300 times their cost apart once the state is large', () => {
    // 70 ms to copy and serialise (10k devices): at most one every 21 s.
    expect(checkpointDue(1_000, 70)).toBe(false);
    expect(checkpointDue(20_000, 70)).toBe(false);
    expect(checkpointDue(21_000, 70)).toBe(true);
  });
});
