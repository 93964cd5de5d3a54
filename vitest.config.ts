import { defineConfig } from 'vitest/config';

// Integration tests start real servers (PostgreSQL, Mosquitto, influxd) on free
// loopback ports; files run in parallel across 2 cores, tests in a file serially.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'firmware-sim/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
  },
});
