import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { nofileLimit, probeCaps, raiseNofileSoftLimit } from '../../src/sys/caps.js';
import { CAP_DAC_READ_SEARCH, CAP_SYS_ADMIN, O_CLOEXEC, O_RDONLY, sys } from '../../src/sys/syscalls.js';
import { expectErrno, useTmpDir } from './util.js';

const ADDON = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'build', 'Release', 'handlefs_sys.node');

function capEffMask(): bigint {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('CapEff:'))!;
  return BigInt('0x' + line.split(/\s+/)[1]!);
}

describe('process state', () => {
  const t = useTmpDir();

  it('getrlimitNofile / setrlimitNofile and the caps.ts helpers (in a child process)', () => {
    const [soft, hard] = sys.getrlimitNofile();
    expect(soft).toBeGreaterThan(0);
    expect(hard === -1 || hard >= soft).toBe(true);
    expect(nofileLimit()).toEqual({ soft, hard });
    // changing limits is process-wide: do it in a child
    const script = t.path('rl.mjs');
    writeFileSync(
      script,
      `import { createRequire } from 'node:module';
const sys = createRequire(import.meta.url)(${JSON.stringify(ADDON)});
const [, hard] = sys.getrlimitNofile();
sys.setrlimitNofile(64, hard);
const lowered = sys.getrlimitNofile()[0];
let err = null;
try { sys.setrlimitNofile(hard === -1 ? 1 << 30 : hard + 1, hard); } catch (e) { err = e.code; }
sys.setrlimitNofile(hard, hard);
console.log(JSON.stringify({ lowered, err, raised: sys.getrlimitNofile()[0], hard }));
`,
    );
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { lowered: number; err: string; raised: number; hard: number };
    expect(out.lowered).toBe(64);
    expect(out.err).toBe('EINVAL'); // soft above hard
    expect(out.raised).toBe(out.hard);
  });

  it('raiseNofileSoftLimit raises soft to hard', () => {
    const before = nofileLimit();
    const soft = raiseNofileSoftLimit();
    expect(soft).toBe(before.hard);
    expect(nofileLimit().soft).toBe(before.hard);
  });

  it('capEffective agrees with /proc/self/status; probeCaps', () => {
    const mask = capEffMask();
    for (let cap = 0; cap < 41; cap++) expect(sys.capEffective(cap), `cap ${cap}`).toBe(((mask >> BigInt(cap)) & 1n) === 1n);
    expect(sys.capEffective(63)).toBe(false);
    expect(probeCaps()).toEqual({
      dacReadSearch: ((mask >> BigInt(CAP_DAC_READ_SEARCH)) & 1n) === 1n,
      sysAdmin: ((mask >> BigInt(CAP_SYS_ADMIN)) & 1n) === 1n,
    });
  });

  it('mount / umount2 / fuse ioctls report errno errors', () => {
    expectErrno(() => sys.umount2(Buffer.from(t.dir), 0), 'EINVAL', 'umount2'); // not a mount point
    expectErrno(
      () => sys.mount(Buffer.from('none'), Buffer.from(t.path('missing')), Buffer.from('tmpfs'), 0, Buffer.alloc(0)),
      'ENOENT',
      'mount',
    );
    expectErrno(() => sys.fuseBackingOpen(-1, 0, 0), 'EBADF', 'ioctl');
    expectErrno(() => sys.fuseBackingClose(-1, 1), 'EBADF', 'ioctl');
    // a non-/dev/fuse fd does not understand the ioctls
    expectErrno(() => sys.fuseBackingOpen(t.fd, 0, 0), 'EBADF', 'ioctl'); // O_PATH
    writeFileSync(t.path('f'), '');
    const fd = t.track(sys.openat(t.fd, Buffer.from('f'), O_RDONLY | O_CLOEXEC, 0));
    expectErrno(() => sys.fuseBackingOpen(fd, fd, 0), 'ENOTTY', 'ioctl');
    expectErrno(() => sys.fuseBackingClose(fd, 1), 'ENOTTY', 'ioctl');
  });

  it.skipIf(process.getuid?.() !== 0)('mount(2) a tmpfs and umount2 it (root)', () => {
    mkdirSync(t.path('mnt'));
    sys.mount(Buffer.from('handlefs-test'), Buffer.from(t.path('mnt')), Buffer.from('tmpfs'), 0, Buffer.from('size=1m,mode=0700'));
    try {
      writeFileSync(t.path('mnt/x'), 'y');
      expect(existsSync(t.path('mnt/x'))).toBe(true);
    } finally {
      sys.umount2(Buffer.from(t.path('mnt')), 0);
    }
    expect(existsSync(t.path('mnt/x'))).toBe(false);
  });
});
