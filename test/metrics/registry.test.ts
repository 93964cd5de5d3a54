import { afterEach, describe, expect, it } from 'vitest';
import { Metrics, PER_HANDLE_METRICS } from '../../src/metrics/registry.js';

describe('metrics registry', () => {
  let metrics: Metrics | undefined;
  afterEach(() => metrics?.close());

  it('keeps the process metrics but none that walk every open socket on each scrape', async () => {
    metrics = new Metrics();
    const text = await metrics.render();
    expect(text).toContain('faultline_process_process_resident_memory_bytes');
    expect(text).toContain('faultline_process_nodejs_eventloop_lag_p99_seconds');
    for (const name of PER_HANDLE_METRICS)
      expect(text).not.toMatch(new RegExp(`^faultline_process_${name}\\b`, 'm'));
  });
});
