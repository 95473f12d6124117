/**
 * The core without CAP_DAC_READ_SEARCH: open_by_handle_at is refused, so every reopen walks the
 * parent chain by path. Runs the compiled core (dist/, built by scripts/setup) in a child process
 * started by setpriv with the capability dropped from the bounding and inheritable sets.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runSync } from '../helpers/child.js';
import { tmpdir } from '../helpers/fs-fixture.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const dist = path.join(repo, 'dist');
const haveDist = fs.existsSync(path.join(dist, 'fs/passthrough.js'));
const isRoot = process.getuid?.() === 0;

function run(args: string[], dropCap: boolean): Record<string, any> {
  const cmd = dropCap
    ? ['setpriv', '--inh-caps=-dac_read_search', '--bounding-set=-dac_read_search', '--', process.execPath, ...args]
    : [process.execPath, ...args];
  const r = runSync(cmd[0]!, cmd.slice(1), { timeoutMs: 90_000, cwd: repo });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

describe.runIf(haveDist && isRoot)('without CAP_DAC_READ_SEARCH (root group, needs dist/)', () => {
  for (const dropCap of [true, false]) {
    it(`reopens ${dropCap ? 'by path' : 'by handle'} with a budget of 8 over 500 files; a replaced file is ESTALE`, () => {
      const root = tmpdir('hfs-nocap-');
      try {
        for (let d = 0; d < 10; d++) fs.mkdirSync(path.join(root, `d${d}`));
        for (let i = 0; i < 500; i++) fs.writeFileSync(path.join(root, `d${i % 10}`, `f${i}`), `c${i}`);
        const out = run([path.join(here, 'fixtures/nocap-child.mjs'), dist, root, '8', '500'], dropCap);
        expect(out.caps.dacReadSearch).toBe(!dropCap);
        expect(out.strategy).toBe(dropCap ? 'path' : 'handle');
        expect(out.errors).toEqual([]);
        expect(out.ok).toBe(500);
        expect(out.maxFds).toBeLessThanOrEqual(8 + 8);
        expect(out.replaced).toBe('ESTALE');
        expect(out.link).toBe('c1');
        if (dropCap) {
          expect(out.counters.reopenByPath).toBeGreaterThan(400);
          expect(out.counters.reopenByHandle).toBe(0);
        } else {
          // directories reopen by handle; files are always re-walked from their directory
          expect(out.counters.reopenByHandle).toBeGreaterThan(0);
          expect(out.counters.reopenByPath).toBeGreaterThan(400);
        }
      } finally {
        fs.rmSync(root, { recursive: true, force: true });
      }
    }, 120_000);
  }
});
