import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { nofileLimit, probeCaps } from '../../src/sys/caps.js';
import { CAP_DAC_READ_SEARCH, CAP_SYS_ADMIN, O_CLOEXEC, O_RDONLY, sys } from '../../src/sys/syscalls.js';
import { expectErrno, useTmpDir } from './util.js';

const ADDON = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'build', 'Release', 'handlefs_sys.node');

function capEffMask(): bigint {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('CapEff:'))!;
  return BigInt('0x' + line.split(/\s+/)[1]!);
}

describe('process state', () => {
  const t = useTmpDir();

  it('getrlimitNofile and nofileLimit; Node starts with the soft limit raised to the hard one (in a child process)', () => {
    const [soft, hard] = sys.getrlimitNofile();
    expect(soft).toBeGreaterThan(0);
    expect(hard === -1 || hard >= soft).toBe(true);
    expect(nofileLimit()).toEqual({ soft, hard });
    // a child started with a low soft limit sees the hard one: the server needs no setrlimit
    const script = t.path('rl.mjs');
    writeFileSync(
      script,
      `import { createRequire } from 'node:module';
const sys = createRequire(import.meta.url)(${JSON.stringify(ADDON)});
console.log(JSON.stringify(sys.getrlimitNofile()));
`,
    );
    const r = spawnSync('bash', ['-c', 'ulimit -Sn 64 && ulimit -Sn && exec "$0" "$1"', process.execPath, script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).toBe(0);
    const [before, after] = r.stdout.trim().split('\n');
    expect(before).toBe('64');
    const [childSoft, childHard] = JSON.parse(after!) as [number, number];
    expect(childHard).toBe(hard);
    if (hard === -1) expect(childSoft).toBeGreaterThan(64);
    else expect(childSoft).toBe(hard);
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

  it('pinThread binds the calling thread to one CPU, and -1 lets it run everywhere again', () => {
    const allowed = (): string =>
      readFileSync('/proc/thread-self/status', 'utf8').split('\n').find((l) => l.startsWith('Cpus_allowed_list:'))!.split(/\s+/)[1]!;
    const before = allowed();
    const cpu = Number(before.split(/[-,]/)[0]);
    try {
      sys.pinThread(cpu);
      expect(allowed()).toBe(String(cpu));
    } finally {
      sys.pinThread(-1);
    }
    expect(allowed()).toBe(before);
    expect(() => sys.pinThread(-2)).toThrow(RangeError);
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
