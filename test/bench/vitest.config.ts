import { defineConfig } from 'vitest/config';

// scripts/bench-vqueues: the benchmarks under test/bench, one file at a time; never part of the test command
export default defineConfig({
  test: { include: ['test/bench/**/*.bench.ts'], pool: 'forks', fileParallelism: false, testTimeout: 600_000 },
});
