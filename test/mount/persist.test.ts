/**
 * Persistent handles that persist (issue 17), through a real mount: a client's FUSE export handles
 * (name_to_handle_at on the mount) still open the right files after the kernel forgot them, after
 * an unmount and a new server with the same key file and --state-file, and after that server was
 * SIGKILLed without --supervise; hard-linked files whose original names were unlinked, and files
 * renamed across directories, included. A deleted file, a file the host moved outside the share,
 * and every handle under another key give ESTALE: nothing outside the share is opened.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../helpers/child.js';
import { mountSkipReason, withMount, startMount } from '../helpers/mount.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const PY = path.join(here, 'fixtures/handles.py');
const skip = mountSkipReason();
const N = 1000;
const STALE = 'Stale file handle';

interface Opened {
  ok: number;
  nfailed: number;
  failed: Array<[string, string]>;
}

describe.skipIf(skip !== null)(`persistent handles across servers${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('1,000 handles (hard links with the first name unlinked, renames across directories) survive drop caches, a new server, and a SIGKILLed one', async () => {
    const content = (i: number): string => `content of ${i}\n`;
    const args = ['--handle-key-file', '{dir}/key', '--state-file', '{dir}/state', '--stats-file', '{dir}/stats'];
    const m = await startMount({
      args,
      setup: (orig) => {
        for (let d = 0; d < 10; d++) fs.mkdirSync(path.join(orig, `d${d}`));
        for (let i = 0; i < N; i++) fs.writeFileSync(path.join(orig, `d${i % 10}`, `f${i}`), content(i));
      },
    });
    try {
      const { dir, mnt, orig } = m;
      const outside = path.join(dir, 'outside');
      fs.mkdirSync(outside);
      const rels = Array.from({ length: N }, (_, i) => `d${i % 10}/f${i}`);
      // through the mount: a second link for every even file, in another directory
      const client = async (script: string): Promise<void> => {
        const r = await run('sh', ['-ec', script, 'client', mnt], { timeoutMs: 60_000 });
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
      };
      await client(`cd "$1"; ${rels.filter((_, i) => i % 2 === 0).map((rel, k) => `ln ${rel} d${(k * 2 + 3) % 10}/link${k * 2}`).join('; ')}`);
      const list = path.join(dir, 'list');
      fs.writeFileSync(list, rels.join('\n'));
      const take = await run('python3', [PY, 'take', mnt, list], { timeoutMs: 60_000 });
      expect(JSON.parse(take.stdout)).toEqual({ taken: N });
      // then the original names of the linked files go, a tenth of the files move across
      // directories, one file is deleted, and the host moves one outside the share
      await client(`cd "$1"; ${rels.filter((_, i) => i % 2 === 0).map((rel) => `rm ${rel}`).join('; ')}`);
      await client(`cd "$1"; ${rels.filter((_, i) => i % 10 === 1).map((rel, k) => `mv ${rel} d7/moved${k}`).join('; ')}; rm d3/f3`);
      fs.renameSync(path.join(orig, 'd5/f5'), path.join(outside, 'f5'));
      const expected: Record<string, string> = {};
      for (let i = 0; i < N; i++) if (i !== 3 && i !== 5) expected[rels[i]!] = content(i);
      fs.writeFileSync(path.join(dir, 'expect.json'), JSON.stringify(expected));
      const openAll = async (): Promise<Opened> => {
        const r = await run('python3', [PY, 'open', mnt, `${list}.handles`, path.join(dir, 'expect.json')], { timeoutMs: 60_000 });
        expect(r.stderr).toBe('');
        return JSON.parse(r.stdout) as Opened;
      };
      const check = async (when: string): Promise<void> => {
        const r = await openAll();
        expect({ when, ok: r.ok, failed: r.failed }).toEqual({ when, ok: N - 2, failed: [['d3/f3', STALE], ['d5/f5', STALE]] });
      };

      // (a) the kernel forgot every inode (handles.py drops the caches)
      await check('after drop caches');
      // (b) unmount, a new server with the same key file and state file
      await m.restart('unmount');
      await check('a new server after an unmount');
      const stats = JSON.parse(fs.readFileSync(path.join(dir, 'stats'), 'utf8')) as Record<string, number>;
      expect(stats.stateLoaded).toBeGreaterThan(N);
      expect(stats.sealFailures).toBe(0);
      // (c) that server is SIGKILLed (no --supervise, no clean stop): what it learnt is on disk already
      await client(`cd "$1"; mv d9/f9 d0/late9`);
      await m.restart('kill');
      await check('a new server after a SIGKILL');
      expect(fs.readFileSync(path.join(mnt, 'd0/late9'), 'utf8')).toBe(content(9));
      // (d) a server with another key (and its own state file) opens none of them
      fs.writeFileSync(path.join(dir, 'expect.json'), '{}');
      await m.restart('unmount', ['--handle-key-file', '{dir}/key2', '--state-file', '{dir}/state2']);
      const r = await openAll();
      expect(r.ok).toBe(0);
      expect(r.nfailed).toBe(N);
      expect(new Set(r.failed.map(([, why]) => why))).toEqual(new Set([STALE]));
      // the file outside was never read through the mount, and is intact
      expect(fs.readFileSync(path.join(outside, 'f5'), 'utf8')).toBe(content(5));
      expect(fs.statSync(path.join(dir, 'state')).mode & 0o777).toBe(0o600);
    } finally {
      await m.cleanup();
    }
  }, 240_000);

  it('a state file sealed under another key is refused at start, with one line, and left as it was', async () => {
    await withMount({ args: ['--handle-key-file', '{dir}/key', '--state-file', '{dir}/state'] }, async ({ dir, mnt }) => {
      fs.writeFileSync(path.join(mnt, 'x'), 'x');
      const before = fs.readFileSync(path.join(dir, 'state'));
      const other = path.join(dir, 'mnt2');
      fs.mkdirSync(other);
      const r = await run(process.execPath, [path.join(here, '../../dist/cli/main.js'), 'mount', path.join(dir, 'orig'), other,
        '--handle-key-file', path.join(dir, 'key2'), '--state-file', path.join(dir, 'state')], { timeoutMs: 20_000 });
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n').filter((l) => l.startsWith('handlefs:'))).toHaveLength(1);
      expect(r.stderr).toMatch(/does not verify under this key/);
      expect(fs.readFileSync(path.join(dir, 'state')).equals(before)).toBe(true);
    });
  }, 60_000);
});
