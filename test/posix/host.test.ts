/**
 * Runs the POSIX case table on a fresh directory of the host for each case: this validates the
 * cases themselves (the mount tests run the same table through FUSE).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cases, needs, type Need } from './cases.js';
import { probeNeeds } from './needs.js';

describe('POSIX cases on a host directory', () => {
  let dir = '';
  const have = probeNeeds(os.tmpdir());

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hfs-posix-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('every `needs` key names a case', () => {
    for (const k of Object.keys(needs)) expect(cases).toHaveProperty([k]);
  });

  for (const [name, fn] of Object.entries(cases)) {
    const missing = (needs[name] ?? []).filter((n: Need) => !have.has(n));
    // Skipped only where the host lacks what the case exercises (test/posix/needs.ts probes it):
    // 'root' (chown, mknod of devices), 'user-xattr' (a filesystem mounted without user xattrs),
    // 'tmpfile' (no O_TMPFILE), 'shared-mmap'. The name says which; as root on ext4 (this machine,
    // CI) every need is met and nothing is skipped.
    if (missing.length) it.skip(`${name} (needs ${missing.join(', ')})`, () => {});
    else it(name, async () => {
      // each case gets its own empty subdirectory, as on a mount
      const d = path.join(dir, 'case');
      fs.mkdirSync(d);
      await fn(d);
    });
  }
});
