import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import {
  F_RDLCK, F_UNLCK, F_WRLCK, LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN, O_CLOEXEC, O_RDWR, SEEK_SET, sys,
} from '../../src/sys/syscalls.js';
import { b, expectErrno, expectRejectErrno, sleep, useTmpDir } from './util.js';

const ADDON = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'native', 'build', 'Release', 'handlefs_sys.node');

describe('locks', () => {
  const t = useTmpDir();
  const open2 = (): [number, number] => {
    writeFileSync(t.path('f'), 'x'.repeat(100));
    return [
      t.track(sys.openat(t.fd, b('f'), O_RDWR | O_CLOEXEC, 0)),
      t.track(sys.openat(t.fd, b('f'), O_RDWR | O_CLOEXEC, 0)),
    ];
  };

  it('OFD locks conflict between two open file descriptions of one process', () => {
    const [a, c] = open2();
    sys.ofdSetlk(a, F_WRLCK, SEEK_SET, 10, 20);
    expectErrno(() => sys.ofdSetlk(c, F_WRLCK, SEEK_SET, 0, 15), 'EAGAIN', 'fcntl');
    sys.ofdSetlk(c, F_WRLCK, SEEK_SET, 30, 10); // adjacent range is free
    const conflict = sys.ofdGetlk(c, F_RDLCK, SEEK_SET, 0, 0);
    expect(conflict).toEqual({ type: F_WRLCK, whence: SEEK_SET, start: 10, len: 20, pid: -1 });
    expect(sys.ofdGetlk(a, F_WRLCK, SEEK_SET, 0, 10).type).toBe(F_UNLCK);
    sys.ofdSetlk(a, F_UNLCK, SEEK_SET, 0, 0);
    sys.ofdSetlk(c, F_RDLCK, SEEK_SET, 0, 0);
    expectErrno(() => sys.ofdSetlk(-1, F_WRLCK, SEEK_SET, 0, 0), 'EBADF', 'fcntl');
    expectErrno(() => sys.ofdSetlk(a, 99, SEEK_SET, 0, 0), 'EINVAL', 'fcntl');
  });

  it('ofdSetlkw resolves after the other fd unlocks, while the event loop keeps running', async () => {
    const [a, c] = open2();
    sys.ofdSetlk(a, F_WRLCK, SEEK_SET, 0, 0);
    let done = false;
    const p = sys.ofdSetlkw(c, F_WRLCK, SEEK_SET, 0, 0).then(() => {
      done = true;
    });
    let ticks = 0;
    const iv = setInterval(() => ticks++, 5);
    await sleep(150);
    expect(done).toBe(false);
    expect(ticks).toBeGreaterThan(5);
    sys.ofdSetlk(a, F_UNLCK, SEEK_SET, 0, 0);
    await p;
    clearInterval(iv);
    expect(done).toBe(true);
    expect(sys.ofdGetlk(a, F_WRLCK, SEEK_SET, 0, 0).type).toBe(F_WRLCK); // c holds it now
    await expectRejectErrno(sys.ofdSetlkw(-1, F_WRLCK, SEEK_SET, 0, 0), 'EBADF', 'fcntl');
  });

  it('blocked waiters do not occupy the libuv pool', async () => {
    const [a] = open2();
    sys.ofdSetlk(a, F_WRLCK, SEEK_SET, 0, 0);
    const waiters = [];
    for (let i = 0; i < 8; i++) {
      // twice the default pool size
      const w = t.track(sys.openat(t.fd, b('f'), O_RDWR | O_CLOEXEC, 0));
      waiters.push(sys.ofdSetlkw(w, F_RDLCK, SEEK_SET, 0, 0));
    }
    const buf = Buffer.alloc(4);
    const n = await Promise.race([sys.preadAsync(a, buf, 0, 4, 0), sleep(5000).then(() => -1)]);
    expect(n).toBe(4);
    sys.ofdSetlk(a, F_UNLCK, SEEK_SET, 0, 0);
    await Promise.all(waiters); // read locks are compatible with one another
  });

  it('flock and flockWait', async () => {
    const [a, c] = open2();
    sys.flock(a, LOCK_EX | LOCK_NB);
    expectErrno(() => sys.flock(c, LOCK_SH | LOCK_NB), 'EAGAIN', 'flock');
    let done = false;
    const p = sys.flockWait(c, LOCK_EX).then(() => {
      done = true;
    });
    await sleep(100);
    expect(done).toBe(false);
    sys.flock(a, LOCK_UN);
    await p;
    expect(done).toBe(true);
    expectErrno(() => sys.flock(a, LOCK_EX | LOCK_NB), 'EAGAIN', 'flock');
    expectErrno(() => sys.flock(-1, LOCK_EX), 'EBADF', 'flock');
    await expectRejectErrno(sys.flockWait(-1, LOCK_EX), 'EBADF', 'flock');
    expectErrno(() => sys.flock(a, 0), 'EINVAL', 'flock');
  });

  it('a pending wait does not keep the process alive', () => {
    writeFileSync(t.path('f'), '');
    const script = t.path('wait.mjs');
    writeFileSync(
      script,
      `import { createRequire } from 'node:module';
const sys = createRequire(import.meta.url)(${JSON.stringify(ADDON)});
const a = sys.openat(-100, Buffer.from(process.argv[2]), 2, 0);
const c = sys.openat(-100, Buffer.from(process.argv[2]), 2, 0);
sys.ofdSetlk(a, 1, 0, 0, 0);
sys.flock(a, 2);
sys.ofdSetlkw(c, 1, 0, 0, 0).then(() => console.log('lock resolved?!'));
sys.flockWait(c, 2).then(() => console.log('flock resolved?!'));
setTimeout(() => console.log('bye'), 50);
`,
    );
    const started = Date.now();
    const r = spawnSync(process.execPath, [script, t.path('f')], { encoding: 'utf8', timeout: 20_000 });
    expect(r.signal).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe('bye');
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});
