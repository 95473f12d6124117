/**
 * A scaled-down run of the stress tool, scripts/stress-fds (issue 6): 3,000 files in 30 directories, 500 held open
 * at once by 4 client processes with the server's fd budget at 32 and RLIMIT_NOFILE at 256, the
 * host renaming directories and replacing files behind the server's back; with and without
 * CAP_DAC_READ_SEARCH. The tool itself verifies every byte; here we check its verdict and the
 * numbers that show the fd cache did its work.
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { run } from '../helpers/child.js';
import { mountSkipReason } from '../helpers/mount.js';
import { forceUnmount, mountsUnder } from '../../tools/lib/mounts.js';
import { TOOLS_OUT } from '../../tools/lib/repo.js';
import { uringParam } from '../helpers/uring.js';

const skip = mountSkipReason();
const TOOL = join(TOOLS_OUT, 'stress-fds.js');
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

describe.skipIf(skip !== null)(`stress-fds, scaled down${skip ? ` (skipped: ${skip})` : ''}`, () => {
  for (const cap of [true, false]) {
    it(`3,000 files, 500 open, budget ${BUDGET}, ${cap ? 'with' : 'without'} CAP_DAC_READ_SEARCH: no corruption, no unexpected error, fds within budget`, { timeout: 90_000 }, async () => {
      expect(fs.existsSync(TOOL), `${TOOL} is missing: run scripts/setup`).toBe(true);
      // the tool makes its work directory inside this one: the test judges only what it made
      const base = fs.realpathSync(fs.mkdtempSync(join(os.tmpdir(), 'handlefs-stresstest-')));
      try {
        const args = [TOOL, '--files', '3000', '--dirs', '30', '--open', '500', '--budget', String(BUDGET), '--nofile', '256', '--workers', '4', '--hold-seconds', '6', '--timeout', '80', '--dir', base, '--json'];
        if (!cap) args.push('--no-cap');
        // the mount-threads project: the server with serving threads (test/helpers/mount.ts)
        if (process.env.HANDLEFS_TEST_THREADS) args.push('--threads', process.env.HANDLEFS_TEST_THREADS);
        // the mount-uring project: over FUSE over io_uring (the tool turns the kernel's switch on for the start)
        const ring = process.env.HANDLEFS_TEST_IO_URING === 'on' && uringParam() !== null;
        if (ring) args.push('--io-uring', 'on');
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
        // the server's --stats-file, which the tool always asks for
        expect(s.counters).not.toBeNull();
        const counters = s.counters!;
        expect(counters.evictions).toBeGreaterThan(500);
        if (cap) expect(counters.reopenByHandle).toBeGreaterThan(0);
        else {
          expect(counters.reopenByPath).toBeGreaterThan(0);
          expect(counters.reopenByHandle).toBe(0);
        }
        if (ring) expect(counters.ioUring).toBe(true);
        expect(counters.sealFailures).toBe(0);
        expect(counters.emfile).toBe(0);
        // nothing the tool mounted may stay mounted
        expect(mountsUnder(base)).toEqual([]);
      } finally {
        for (const m of mountsUnder(base).reverse()) await forceUnmount(m);
        if (mountsUnder(base).length === 0) fs.rmSync(base, { recursive: true, force: true });
      }
    });
  }
});
