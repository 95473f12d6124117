/**
 * A scaled-down run of scripts/stress-fds (issue 6): 3,000 files in 30 directories, 500 held open
 * at once by 4 client processes with the server's fd budget at 32 and RLIMIT_NOFILE at 256, the
 * host renaming directories and replacing files behind the server's back; with and without
 * CAP_DAC_READ_SEARCH. The tool itself verifies every byte; here we check its verdict and the
 * numbers that show the fd cache did its work.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { mountSkipReason, REPO, run } from '../helpers/mount.js';

const skip = mountSkipReason();
const TOOL = join(REPO, 'scripts', 'stress-fds.mjs');
const BUDGET = 32;
const RESERVE = 8;

interface Summary {
  ok: boolean;
  phases: Record<string, { ops: number; opsPerSec: number; held?: number; hostRenames?: number; hostReplaces?: number }>;
  server: { maxTreeFds: number; maxFds: number; exit: { code: number | null; signal: string | null } | null };
  counters: Record<string, number> | null;
  clients: { expectedEstale: number; unexpectedErrors: number; samples: unknown[] };
  corruption: { count: number; samples: unknown[] };
  failures: string[];
}

function mountsLeft(): string[] {
  // our work dirs are named handlefs-stress-*: nothing of ours may stay mounted
  return fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.includes('handlefs-stress-'));
}

describe.skipIf(skip !== null)(`stress-fds, scaled down${skip ? ` (skipped: ${skip})` : ''}`, () => {
  for (const cap of [true, false]) {
    it(`3,000 files, 500 open, budget ${BUDGET}, ${cap ? 'with' : 'without'} CAP_DAC_READ_SEARCH: no corruption, no unexpected error, fds within budget`, { timeout: 90_000 }, async () => {
      const args = [TOOL, '--files', '3000', '--dirs', '30', '--open', '500', '--budget', String(BUDGET), '--nofile', '256', '--workers', '4', '--hold-seconds', '6', '--timeout', '80', '--json'];
      if (!cap) args.push('--no-cap');
      const r = await run(process.execPath, args, { timeoutMs: 88_000 });
      expect(r.timedOut).toBe(false);
      const line = r.stdout.trim().split('\n').pop() ?? '';
      let s: Summary;
      try {
        s = JSON.parse(line) as Summary;
      } catch {
        throw new Error(`no JSON summary (status ${r.status}); stderr:\n${r.stderr.slice(-3000)}`);
      }
      const detail = JSON.stringify({ failures: s.failures, errors: s.clients.samples.slice(0, 5), corruption: s.corruption.samples.slice(0, 5) }, null, 1);
      expect(s.failures, detail).toEqual([]);
      expect(s.ok).toBe(true);
      expect(r.status).toBe(0);
      expect(s.corruption.count).toBe(0);
      expect(s.clients.unexpectedErrors).toBe(0);
      expect(s.phases.hold!.held).toBe(500);
      expect(s.phases.hold!.hostRenames).toBeGreaterThan(0);
      expect(s.phases.hold!.hostReplaces).toBeGreaterThan(0);
      // the replaced files that were held open, at least, cannot be reopened once evicted
      expect(s.clients.expectedEstale).toBeGreaterThan(0);
      expect(s.server.maxTreeFds).toBeLessThanOrEqual(BUDGET + RESERVE);
      expect(s.server.maxTreeFds).toBeGreaterThan(BUDGET / 2);
      expect(s.server.exit).toEqual({ code: 0, signal: null });
      if (s.counters) {
        // present once the CLI has --stats-file
        expect(s.counters.evictions).toBeGreaterThan(500);
        if (cap) expect(s.counters.reopenByHandle).toBeGreaterThan(0);
        else {
          expect(s.counters.reopenByPath).toBeGreaterThan(0);
          expect(s.counters.reopenByHandle).toBe(0);
        }
        expect(s.counters.sealFailures).toBe(0);
        expect(s.counters.emfile).toBe(0);
      }
      expect(mountsLeft()).toEqual([]);
    });
  }
});
