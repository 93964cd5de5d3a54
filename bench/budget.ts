/**
 * The suite's order and time limits, and for each budget figure that misses its
 * target on the reference machine (2 cores), why, and what would reach it.
 * bench/README.md has the long form and the profiles behind these lines.
 */
export interface BenchEntry {
  file: string;
  args: string[];
  /** Expected wall time on 2 cores; the runner kills a bench at twice this. */
  maxSeconds: number;
}

export const BENCHES: BenchEntry[] = [
  { file: 'ingest.ts', args: [], maxSeconds: 60 },
  { file: 'influx.ts', args: ['300000'], maxSeconds: 60 },
  { file: 'latency.ts', args: [], maxSeconds: 90 },
  { file: 'scale.ts', args: ['--node-options', '--max-semi-space-size=64'], maxSeconds: 150 },
  { file: 'startup.ts', args: [], maxSeconds: 60 },
  { file: 'rules.ts', args: [], maxSeconds: 20 },
  { file: 'wal.ts', args: [], maxSeconds: 10 },
  { file: 'import.ts', args: [], maxSeconds: 25 },
  { file: 'sim.ts', args: [], maxSeconds: 45 },
  { file: 'web.ts', args: [], maxSeconds: 90 },
];

/** Keyed by figure name, as the bench writes it. */
export const MISSED_BECAUSE: Record<string, string> = {};
