/**
 * The POSIX case table (test/posix/cases.ts) on a mount of the real CLI, once per frontend
 * (--frontend raw and --frontend fuse-native): one mount per frontend, each case in a fresh
 * subdirectory, then what the mount leaves in orig/. Cases a frontend cannot pass are listed with
 * the reason in ./frontends.ts and run as expected failures, named with the reason.
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect } from 'vitest';
import { cases, needs, type Need } from '../posix/cases.js';
import { probeNeeds } from '../posix/needs.js';
import { mountSkipReason, useMount } from '../helpers/mount.js';
import { FRONTENDS, frontendArgs, itOn, knownFailure } from './frontends.js';

const skip = mountSkipReason();

for (const frontend of FRONTENDS) {
  describe.skipIf(skip !== null)(`POSIX cases on a ${frontend} mount${skip ? ` (skipped: ${skip})` : ''}`, () => {
    const mount = useMount({ args: frontendArgs(frontend) });
    let have = new Set<Need>();
    let n = 0;

    beforeAll(() => {
      have = probeNeeds(mount().mnt);
    });

    for (const [name, fn] of Object.entries(cases)) {
      // a case listed as failing on this frontend runs anyway (it must fail: see ./frontends.ts)
      const wanted = knownFailure(frontend, name) === undefined ? (needs[name] ?? []) : [];
      itOn(frontend, name, { timeout: 120_000 }, async (ctx) => {
        const missing = wanted.filter((x) => !have.has(x));
        // skipped only where the mount cannot offer what the case exercises (probed on the mount by
        // test/posix/needs.ts: root, user xattrs, O_TMPFILE, shared mmap); as root on ext4 (this
        // machine, CI) every need is met and nothing is skipped
        if (missing.length) ctx.skip(`needs ${missing.join(', ')}`);
        const sub = `case-${n++}`;
        const m = mount();
        const d = join(m.mnt, sub);
        fs.mkdirSync(d);
        await fn(d);
        // what the client sees is what the host has
        expect(fs.readdirSync(d).sort()).toEqual(fs.readdirSync(join(m.orig, sub)).sort());
        expect(m.exited()).toBeNull();
      });
    }
  });
}
