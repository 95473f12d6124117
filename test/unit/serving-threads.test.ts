// Without --threads, a raw unsupervised server starts one serving thread per CPU where root switched
// FUSE over io_uring on (and it can make a ring), one elsewhere; --threads as given always wins.
import { describe, expect, it } from 'vitest';
import { availableParallelism } from 'node:os';
import { parseCommandLine } from '../../src/cli/args.js';
import { servingThreads } from '../../src/cli/preflight.js';
import type { Config } from '../../src/config.js';

const config = (...opts: string[]): Config => {
  const c = parseCommandLine(['mount', '/s', '/m', ...opts]);
  if (c.kind !== 'mount') throw new Error(c.kind);
  return c.config;
};
const perCpu = Math.min(64, availableParallelism());
const canRing = (): null => null;
const noRing = (): string => 'EPERM';
const on = (): boolean => true;
const off = (): boolean => false;
const absent = (): null => null;

describe('serving threads without --threads', () => {
  it('follow the kernel\'s io_uring switch only when --threads is not given, raw, unsupervised, --io-uring not off', () => {
    expect(config().threadsFollowRing).toBe(true);
    expect(config('--io-uring', 'on').threadsFollowRing).toBe(true);
    for (const opts of [['--threads', '1'], ['--threads', 'auto'], ['--threads', '2'], ['--supervise'], ['--frontend', 'fuse-native'], ['--io-uring', 'off']]) {
      expect(config(...opts).threadsFollowRing, opts.join(' ')).toBe(false);
    }
  });

  it('one per CPU with the switch on and a ring to be had; one with it off, missing, or no ring', () => {
    expect(servingThreads(config(), canRing, on)).toBe(perCpu > 1 ? perCpu : 1);
    expect(servingThreads(config(), canRing, off)).toBe(1);
    expect(servingThreads(config(), canRing, absent)).toBe(1);
    expect(servingThreads(config(), noRing, on)).toBe(1);
  });

  it('--threads as given, whatever the switch', () => {
    expect(servingThreads(config('--threads', '1'), canRing, on)).toBe(1);
    expect(servingThreads(config('--threads', '3'), canRing, off)).toBe(3);
    expect(servingThreads(config('--threads', 'auto'), noRing, off)).toBe(perCpu);
    expect(servingThreads(config('--supervise'), canRing, on)).toBe(1);
    expect(servingThreads(config('--io-uring', 'off'), canRing, on)).toBe(1);
  });
});
