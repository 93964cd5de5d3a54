/** The per-device window of sequence numbers that turns QoS 1 redeliveries into one message. */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { Deduplicator } from '../../src/ingest/dedup.js';

describe('Deduplicator', () => {
  it('drops a redelivery within the window and lets a reset counter through', () => {
    const d = new Deduplicator(16);
    for (let seq = 1; seq <= 10; seq++) expect(d.firstTime('ac-1', seq)).toBe(true);
    expect(d.firstTime('ac-1', 7)).toBe(false);
    expect(d.firstTime('ac-2', 7)).toBe(true);
    for (let seq = 11; seq <= 40; seq++) d.firstTime('ac-1', seq);
    // 7 left the window: a device that rebooted and counts from the start again is not refused.
    expect(d.firstTime('ac-1', 7)).toBe(true);
  });

  it('holds at most the default window per device however long the device reports', () => {
    const { dedupWindow } = loadConfig({ env: {}, overrides: {} }).ingest;
    // Every device keeps its window for as long as the bridge runs: 4,096 numbers were ~80 KB per
    // device, 820 MB for 10,000 devices once each had sent that many messages.
    expect(dedupWindow).toBeLessThanOrEqual(256);
    const d = new Deduplicator(dedupWindow);
    for (let seq = 1; seq <= 10_000; seq++) d.firstTime('ac-1', seq);
    expect(d.snapshot().devices['ac-1']).toHaveLength(dedupWindow);
    expect(d.firstTime('ac-1', 10_000 - dedupWindow + 1)).toBe(false);
  });
});
