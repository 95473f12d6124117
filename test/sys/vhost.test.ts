/**
 * The vhost-user syscall layer against the real kernel: the listening and connecting sockets,
 * SCM_RIGHTS messages, eventfds, guest memory as external ArrayBuffers and vectored I/O into it. No
 * mounts.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { once } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import {
  AT_EMPTY_PATH, EFD_CLOEXEC, EFD_NONBLOCK, F_GETFD, F_GETFL, FD_CLOEXEC, MAP_SHARED_MAX, O_CLOEXEC, O_CREAT, O_NONBLOCK, O_RDWR,
  SEEK_CUR, SEEK_SET, statAt, sys, type MappedSeg,
} from '../../src/sys/syscalls.js';
import { b, EMPTY, errnoOf, expectErrno, expectRejectErrno, sleep, useTmpDir } from './util.js';

const EAGAIN = -errnoOf('EAGAIN');
const IOV_MAX = 1024;

/** fd number -> what it refers to, for every fd of this process. */
function openFds(): Map<number, string> {
  const out = new Map<number, string>();
  for (const name of readdirSync('/proc/self/fd')) {
    try {
      out.set(Number(name), readlinkSync(`/proc/self/fd/${name}`));
    } catch {
      // the directory fd readdirSync itself used, closed by now
    }
  }
  return out;
}

/** How many fds of this process refer to target. */
const fdsTo = (target: string): number => [...openFds().values()].filter((v) => v === target).length;

const mapsMention = (name: string): boolean => readFileSync('/proc/self/maps', 'utf8').includes(`/memfd:${name} `);

/** Polls fn until it returns something other than null (or -EAGAIN), for up to 5 s. */
async function until<T>(fn: () => T | null): Promise<T> {
  for (let i = 0; i < 500; i++) {
    const v = fn();
    if (v !== null && v !== EAGAIN) return v;
    await sleep(10);
  }
  throw new Error('timed out');
}

/** A full garbage collection, then a few turns of the loop for the finalizers Node defers. */
async function collect(): Promise<void> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  for (let i = 0; i < 5; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
}

let unique = 0;
const memName = (what: string): string => `handlefs-test-${process.pid}-${what}-${unique++}`;

// Registered before useTmpDir: with stacked hooks this snapshot is taken first and checked last,
// after the fixture closed the fds it tracks.
let fdsBefore = new Map<number, string>();
beforeEach(() => {
  fdsBefore = openFds();
});
afterEach(() => {
  expect(openFds()).toEqual(fdsBefore);
});

describe('vhost-user socket', () => {
  const t = useTmpDir();

  it('listens, accepts a connection from net, and exchanges bytes both ways until EOF', async () => {
    const path = t.path('vhost.sock');
    const lfd = t.track(sys.unixListen(path, 4));
    expect(sys.fcntlInt(lfd, F_GETFD, 0) & FD_CLOEXEC).toBe(FD_CLOEXEC);
    expect(sys.acceptNonblock(lfd)).toBe(EAGAIN);

    const client = createConnection(path);
    await once(client, 'connect');
    const cfd = t.track(await until(() => sys.acceptNonblock(lfd)));
    expect(sys.fcntlInt(cfd, F_GETFD, 0) & FD_CLOEXEC).toBe(FD_CLOEXEC);
    const buf = Buffer.alloc(16, 0x2d);
    expect(sys.recvMsg(cfd, buf, 0, 16, 4)).toBeNull(); // non-blocking: nothing sent yet

    client.write('hello');
    expect(await until(() => sys.recvMsg(cfd, buf, 2, 10, 4))).toEqual({ n: 5, fds: [], truncated: false });
    expect(buf.toString()).toBe('--hello---------');

    const reply = once(client, 'data');
    expect(sys.sendMsg(cfd, b('xxworld'), 2, 5)).toBe(5);
    expect(String((await reply)[0])).toBe('world');

    client.end();
    expect(await until(() => sys.recvMsg(cfd, buf, 0, 16, 4))).toEqual({ n: 0, fds: [], truncated: false });
    client.destroy();
    await once(client, 'close');
  });

  it('unixListen errors: in use, stale socket file (nothing unlinked), too long, NUL, empty', () => {
    const path = t.path('s');
    const lfd = sys.unixListen(path, 1);
    expectErrno(() => sys.unixListen(path, 1), 'EADDRINUSE', 'bind');
    sys.close(lfd);
    expect(existsSync(path)).toBe(true);
    expectErrno(() => sys.unixListen(b(path), 1), 'EADDRINUSE', 'bind');
    expectErrno(() => sys.unixListen(`/tmp/${'x'.repeat(103)}`, 1), 'ENAMETOOLONG', 'bind');
    expectErrno(() => sys.unixListen(Buffer.alloc(200, 0x61), 1), 'ENAMETOOLONG', 'bind');
    expectErrno(() => sys.unixListen(t.path('a\0b'), 1), 'EINVAL', 'bind');
    expectErrno(() => sys.unixListen('', 1), 'EINVAL', 'bind');
    expectErrno(() => sys.unixListen(t.path('missing/s'), 1), 'ENOENT', 'bind');
    expect(() => sys.unixListen(42 as unknown as string, 1)).toThrow(TypeError);
    expectErrno(() => sys.acceptNonblock(-1), 'EBADF', 'accept4');
  });

  it('unixConnect reaches a unixListen socket: close-on-exec, blocking like socketpairUnix, bytes both ways until EOF', async () => {
    const path = t.path('vmm.sock');
    const lfd = t.track(sys.unixListen(path, 4));
    const cfd = t.track(sys.unixConnect(path));
    expect(sys.fcntlInt(cfd, F_GETFD, 0) & FD_CLOEXEC).toBe(FD_CLOEXEC);
    // blocking, as socketpairUnix's fds are (a test's FakeVmm holds either)
    expect(sys.fcntlInt(cfd, F_GETFL, 0) & O_NONBLOCK).toBe(0);
    const pair = sys.socketpairUnix().map((fd) => t.track(fd));
    expect(sys.fcntlInt(pair[0]!, F_GETFL, 0) & O_NONBLOCK).toBe(0);
    const afd = await until(() => sys.acceptNonblock(lfd)); // closed below, for the EOF

    const buf = Buffer.alloc(16, 0x2d);
    expect(sys.recvMsg(cfd, buf, 0, 16, 4)).toBeNull(); // recvMsg never waits, blocking fd or not
    expect(sys.sendMsg(cfd, b('to back-end'), 0, 11)).toBe(11);
    expect(await until(() => sys.recvMsg(afd, buf, 0, 16, 4))).toEqual({ n: 11, fds: [], truncated: false });
    expect(buf.subarray(0, 11).toString()).toBe('to back-end');
    expect(sys.sendMsg(afd, b('to vmm'), 0, 6)).toBe(6);
    expect(await until(() => sys.recvMsg(cfd, buf, 0, 16, 4))).toEqual({ n: 6, fds: [], truncated: false });
    expect(buf.subarray(0, 6).toString()).toBe('to vmm');

    sys.close(afd);
    expect(await until(() => sys.recvMsg(cfd, buf, 0, 16, 4))).toEqual({ n: 0, fds: [], truncated: false });
  });

  it('unixConnect errors: missing path, nobody listening, full backlog (no wait), too long, NUL, empty', () => {
    expectErrno(() => sys.unixConnect(t.path('missing')), 'ENOENT', 'connect');
    expectErrno(() => sys.unixConnect(t.path('missing/s')), 'ENOENT', 'connect');
    const stale = t.path('stale');
    sys.close(sys.unixListen(stale, 1));
    expectErrno(() => sys.unixConnect(stale), 'ECONNREFUSED', 'connect');
    expectErrno(() => sys.unixConnect(b(stale)), 'ECONNREFUSED', 'connect');
    // backlog 0 holds one pending connection; the next fails at once instead of waiting
    const full = t.path('full');
    t.track(sys.unixListen(full, 0));
    t.track(sys.unixConnect(full));
    expectErrno(() => sys.unixConnect(full), 'EAGAIN', 'connect');
    expectErrno(() => sys.unixConnect(`/tmp/${'x'.repeat(103)}`), 'ENAMETOOLONG', 'connect');
    expectErrno(() => sys.unixConnect(t.path('a\0b')), 'EINVAL', 'connect');
    expectErrno(() => sys.unixConnect(''), 'EINVAL', 'connect');
    expect(() => sys.unixConnect(42 as unknown as string)).toThrow(TypeError);
  });

  it('passes fds with SCM_RIGHTS: same files, close-on-exec', () => {
    const [a, c] = sys.socketpairUnix().map((fd) => t.track(fd));
    const files = ['f0', 'f1', 'f2'].map((n) => t.track(sys.openat(t.fd, b(n), O_RDWR | O_CREAT | O_CLOEXEC, 0o600)));
    expect(sys.sendMsg(a, b('header......'), 0, 12, files)).toBe(12);
    const buf = Buffer.alloc(64);
    const r = sys.recvMsg(c, buf, 0, 64, 8);
    expect(r).not.toBeNull();
    expect(r!.n).toBe(12);
    expect(r!.truncated).toBe(false);
    expect(r!.fds).toHaveLength(3);
    r!.fds.forEach((fd, i) => {
      t.track(fd);
      expect(fd).not.toBe(files[i]);
      expect(readlinkSync(`/proc/self/fd/${fd}`)).toBe(t.path(`f${i}`));
      expect(statAt(fd, EMPTY, AT_EMPTY_PATH).ino).toBe(statAt(files[i], EMPTY, AT_EMPTY_PATH).ino);
      expect(sys.fcntlInt(fd, F_GETFD, 0) & FD_CLOEXEC).toBe(FD_CLOEXEC);
    });
    expect(buf.subarray(0, 12).toString()).toBe('header......');
    expect(sys.recvMsg(c, buf, 0, 64, 8)).toBeNull();
  });

  it('closes the fds past maxFds and says so; none leak', () => {
    const [a, c] = sys.socketpairUnix().map((fd) => t.track(fd));
    const probe = t.track(sys.openat(t.fd, b('probe'), O_RDWR | O_CREAT | O_CLOEXEC, 0o600));
    const target = t.path('probe');
    expect(fdsTo(target)).toBe(1);
    const buf = Buffer.alloc(8);

    expect(sys.sendMsg(a, b('m1'), 0, 2, [probe, probe, probe, probe, probe])).toBe(2);
    const r = sys.recvMsg(c, buf, 0, 8, 2)!;
    expect(r.n).toBe(2);
    expect(r.truncated).toBe(true);
    expect(r.fds).toHaveLength(2);
    expect(fdsTo(target)).toBe(3);
    r.fds.forEach((fd) => sys.close(fd));
    expect(fdsTo(target)).toBe(1);

    expect(sys.sendMsg(a, b('m2'), 0, 2, Array<number>(32).fill(probe))).toBe(2);
    expect(sys.recvMsg(c, buf, 0, 8, 0)).toEqual({ n: 2, fds: [], truncated: true });
    expect(fdsTo(target)).toBe(1);

    expect(() => sys.recvMsg(c, buf, 0, 8, 33)).toThrow(RangeError);
    expect(() => sys.sendMsg(a, buf, 0, 1, Array<number>(33).fill(probe))).toThrow(RangeError);
    expect(() => sys.recvMsg(c, buf, 4, 5, 1)).toThrow(RangeError);
    expect(() => sys.sendMsg(a, buf, 0, 9)).toThrow(RangeError);
    expectErrno(() => sys.sendMsg(a, buf, 0, 1, [-1]), 'EBADF', 'sendmsg');
    expect(fdsTo(target)).toBe(1);
  });

  it('EOF, EAGAIN when full, EPIPE without a signal', () => {
    const [a, c] = sys.socketpairUnix().map((fd) => t.track(fd));
    const chunk = Buffer.alloc(65536);
    let sent = 0;
    let n = 0;
    for (let i = 0; i < 1000 && (n = sys.sendMsg(a, chunk, 0, chunk.length)) !== EAGAIN; i++) sent += n;
    expect(n).toBe(EAGAIN);
    expect(sent).toBeGreaterThan(0);
    let got = 0;
    for (let r = sys.recvMsg(c, chunk, 0, chunk.length, 0); r !== null; r = sys.recvMsg(c, chunk, 0, chunk.length, 0))
      got += r.n;
    expect(got).toBe(sent);

    sys.close(c);
    expectErrno(() => sys.sendMsg(a, chunk, 0, 1), 'EPIPE', 'sendmsg');
    const [x, y] = sys.socketpairUnix().map((fd) => t.track(fd));
    sys.close(x);
    expect(sys.recvMsg(y, chunk, 0, 8, 1)).toEqual({ n: 0, fds: [], truncated: false });
    expectErrno(() => sys.recvMsg(-1, chunk, 0, 8, 1), 'EBADF', 'recvmsg');
  });
});

describe('eventfd', () => {
  const t = useTmpDir();

  it('reads and resets the counter, null when empty, no error when it would overflow', () => {
    const fd = t.track(sys.eventfdCreate(EFD_NONBLOCK | EFD_CLOEXEC));
    expect(sys.fcntlInt(fd, F_GETFD, 0) & FD_CLOEXEC).toBe(FD_CLOEXEC);
    expect(sys.eventfdRead(fd)).toBeNull();
    sys.eventfdWrite(fd);
    expect(sys.eventfdRead(fd)).toBe(1n);
    sys.eventfdWrite(fd, 5);
    sys.eventfdWrite(fd, 7n);
    expect(sys.eventfdRead(fd)).toBe(12n);
    expect(sys.eventfdRead(fd)).toBeNull();

    const max = 0xfffffffffffffffen;
    sys.eventfdWrite(fd, max);
    expect(() => sys.eventfdWrite(fd, 1)).not.toThrow(); // EAGAIN: the counter is full
    expect(sys.eventfdRead(fd)).toBe(max);
    expectErrno(() => sys.eventfdWrite(fd, 0xffffffffffffffffn), 'EINVAL', 'write');
    expect(() => sys.eventfdWrite(fd, -1)).toThrow(RangeError);
    expectErrno(() => sys.eventfdRead(-1), 'EBADF', 'read');
    expectErrno(() => sys.eventfdWrite(-1), 'EBADF', 'write');
    expectErrno(() => sys.eventfdCreate(-1), 'EINVAL', 'eventfd');
  });

  it('a blocking eventfd reads a pending count', () => {
    const fd = t.track(sys.eventfdCreate(EFD_CLOEXEC));
    sys.eventfdWrite(fd, 3);
    expect(sys.eventfdRead(fd)).toBe(3n);
  });
});

describe('guest memory', () => {
  const t = useTmpDir();

  it('mapShared shares memory with the memfd both ways, at an offset too', () => {
    const name = memName('share');
    const mfd = t.track(sys.memfdCreate(name, 65536));
    expect(readlinkSync(`/proc/self/fd/${mfd}`)).toBe(`/memfd:${name} (deleted)`);
    expect(sys.fcntlInt(mfd, F_GETFD, 0) & FD_CLOEXEC).toBe(FD_CLOEXEC);
    const ab = sys.mapShared(mfd, 65536, 0);
    expect(ab.byteLength).toBe(65536);
    expect(mapsMention(name)).toBe(true);
    const view = new Uint8Array(ab);
    view.set(b('hello'), 100);
    const out = Buffer.alloc(5);
    expect(sys.pread(mfd, out, 0, 5, 100)).toBe(5);
    expect(out.toString()).toBe('hello');
    expect(sys.pwrite(mfd, b('world'), 0, 5, 5000)).toBe(5);
    expect(Buffer.from(ab, 5000, 5).toString()).toBe('world');

    const second = sys.mapShared(mfd, 4096n, 4096n);
    expect(Buffer.from(second, 5000 - 4096, 5).toString()).toBe('world');
    new Uint8Array(second)[0] = 0x7a;
    expect(view[4096]).toBe(0x7a);

    sys.unmapShared(ab);
    expect(ab.byteLength).toBe(0);
    expect(view.length).toBe(0);
    expect(view[100]).toBeUndefined();
    sys.unmapShared(ab);
    expect(mapsMention(name)).toBe(true); // the second mapping
    sys.unmapShared(second);
    expect(mapsMention(name)).toBe(false);
  });

  it('refuses foreign ArrayBuffers and bad mappings', () => {
    const mfd = t.track(sys.memfdCreate(memName('bad'), 8192));
    expectErrno(() => sys.unmapShared(new ArrayBuffer(8)), 'EINVAL', 'munmap');
    expectErrno(() => sys.unmapShared(Buffer.alloc(8).buffer), 'EINVAL', 'munmap');
    expect(() => sys.unmapShared(new Uint8Array(8) as unknown as ArrayBuffer)).toThrow(TypeError);
    expectErrno(() => sys.mapShared(mfd, 0, 0), 'EINVAL', 'mmap');
    expectErrno(() => sys.mapShared(mfd, -4096, 0), 'EINVAL', 'mmap');
    expectErrno(() => sys.mapShared(mfd, 4096, -4096), 'EINVAL', 'mmap');
    expectErrno(() => sys.mapShared(mfd, 4096, 100), 'EINVAL', 'mmap');
    expectErrno(() => sys.mapShared(-1, 4096, 0), 'EBADF', 'mmap');
    expectErrno(() => sys.memfdCreate('x'.repeat(250), 0), 'ENAMETOOLONG', 'memfd_create');
    expectErrno(() => sys.memfdCreate('a\0b', 0), 'EINVAL', 'memfd_create');
    expectErrno(() => sys.memfdCreate('neg', -1), 'EINVAL', 'ftruncate');
  });

  it('maps 4 GiB of a sparse memfd and refuses what an ArrayBuffer cannot hold', () => {
    const name = memName('big');
    const mfd = t.track(sys.memfdCreate(name, 2n ** 32n + 8192n));
    expectErrno(() => sys.mapShared(mfd, MAP_SHARED_MAX + 4096, 0), 'EINVAL', 'mmap');
    const ab = sys.mapShared(mfd, BigInt(MAP_SHARED_MAX), 4096);
    expect(ab.byteLength).toBe(MAP_SHARED_MAX);
    const view = new Uint8Array(ab);
    view[MAP_SHARED_MAX - 1] = 0x5a;
    const out = Buffer.alloc(1);
    expect(sys.pread(mfd, out, 0, 1, MAP_SHARED_MAX - 1 + 4096)).toBe(1);
    expect(out[0]).toBe(0x5a);
    sys.unmapShared(ab);
    expect(view.length).toBe(0);
    expect(mapsMention(name)).toBe(false);
  });
});

describe('mapped vectored I/O', () => {
  const t = useTmpDir();
  const SIZE = 65536;
  let mappings: ArrayBuffer[] = [];
  const guest = (what: string): ArrayBuffer => {
    const mfd = t.track(sys.memfdCreate(memName(what), SIZE));
    const ab = sys.mapShared(mfd, SIZE, 0);
    mappings.push(ab);
    return ab;
  };
  const file = (name: string): number => t.track(sys.openat(t.fd, b(name), O_RDWR | O_CREAT | O_CLOEXEC, 0o600));
  afterEach(() => {
    mappings.forEach((ab) => sys.unmapShared(ab));
    mappings = [];
  });

  it('pwritev then preadv across several segments and two mappings', async () => {
    const g1 = guest('rw1');
    const g2 = guest('rw2');
    const v1 = new Uint8Array(g1);
    const v2 = new Uint8Array(g2);
    v1.set(b('A'.repeat(100)), 0);
    v1.set(b('B'.repeat(200)), 5000);
    v2.set(b('C'.repeat(50)), SIZE - 50);
    const fd = file('data');
    const segs: MappedSeg[] = [[g1, 0, 100], [g1, 5000, 200], [g2, SIZE - 50, 50]];
    await expect(sys.pwritevMappedAsync(fd, segs, 10)).resolves.toBe(350);
    const content = readFileSync(t.path('data'));
    expect(content.length).toBe(360);
    expect(content.subarray(10).toString()).toBe('A'.repeat(100) + 'B'.repeat(200) + 'C'.repeat(50));

    v1.fill(0);
    await expect(sys.preadvMappedAsync(fd, [[g1, 1000, 150], [g2, 0, 200]], 10n)).resolves.toBe(350);
    expect(Buffer.from(g1, 1000, 150).toString()).toBe('A'.repeat(100) + 'B'.repeat(50));
    expect(Buffer.from(g2, 0, 200).toString()).toBe('B'.repeat(150) + 'C'.repeat(50));
    expect(v1[999]).toBe(0);
    expect(v1[1150]).toBe(0);

    // short read at the end of the file, and nothing past it
    await expect(sys.preadvMappedAsync(fd, [[g1, 0, 100], [g1, 100, 100]], 300)).resolves.toBe(60);
    await expect(sys.preadvMappedAsync(fd, [[g1, 0, 100]], 360)).resolves.toBe(0);
    await expect(sys.preadvMappedAsync(fd, [], 0)).resolves.toBe(0);
    await expect(sys.preadvMappedAsync(fd, [[g1, SIZE, 0]], 0)).resolves.toBe(0);

    // position -1: the file offset, which advances
    sys.lseek(fd, 20n, SEEK_SET);
    await expect(sys.preadvMappedAsync(fd, [[g2, 0, 10]], -1)).resolves.toBe(10);
    expect(sys.lseek(fd, 0n, SEEK_CUR)).toBe(30n);

    // IOV_MAX one-byte segments are fine
    const many: MappedSeg[] = Array.from({ length: IOV_MAX }, (_, i) => [g1, i * 2, 1]);
    await expect(sys.pwritevMappedAsync(fd, many, 0)).resolves.toBe(IOV_MAX);

    await expectRejectErrno(sys.preadvMappedAsync(-1, segs, 0), 'EBADF', 'preadv');
    await expectRejectErrno(sys.pwritevMappedAsync(-1, segs, 0), 'EBADF', 'pwritev');
  });

  it('rejects hostile segments with EINVAL before any I/O', async () => {
    const g = guest('hostile');
    const detached = guest('detached');
    sys.unmapShared(detached);
    const view = new Uint8Array(g);
    view.fill(0x41);
    const fd = file('victim');
    writeFileSync(t.path('victim'), 'z'.repeat(100));
    const hostile: MappedSeg[][] = [
      [[g, SIZE, 1]],
      [[g, SIZE + 1, 0]],
      [[g, 1, SIZE]],
      [[g, SIZE - 1, 2 ** 53 - 1]],
      [[g, 2 ** 53 - 1, 2 ** 53 - 1]],
      [[g, -1, 10]],
      [[g, 0, -1]],
      [[detached, 0, 1]],
      [[new ArrayBuffer(SIZE), 0, 1]],
      [[g, 0, 10], [g, SIZE - 5, 10]],
      Array.from({ length: IOV_MAX + 1 }, (): MappedSeg => [g, 0, 1]),
    ];
    for (const segs of hostile) {
      await expectRejectErrno(sys.pwritevMappedAsync(fd, segs, 0), 'EINVAL', 'pwritev');
      await expectRejectErrno(sys.preadvMappedAsync(fd, segs, 0), 'EINVAL', 'preadv');
    }
    expect(readFileSync(t.path('victim')).toString()).toBe('z'.repeat(100));
    expect(view.every((x) => x === 0x41)).toBe(true);

    // a getter that unmaps a mapping while the segments are read: refused, and nothing keeps it mapped
    const name = memName('unmapped-by-getter');
    const victim = sys.mapShared(t.track(sys.memfdCreate(name, SIZE)), SIZE, 0);
    const sneaky = [g, 0, 1];
    Object.defineProperty(sneaky, 1, { get: () => (sys.unmapShared(victim), 0) });
    await expectRejectErrno(sys.pwritevMappedAsync(fd, [[victim, 0, 1], sneaky as MappedSeg], 0), 'EINVAL', 'pwritev');
    expect(victim.byteLength).toBe(0);
    expect(mapsMention(name)).toBe(false);

    // wrong shapes are programming errors: thrown at once
    const bad = (segs: unknown, pos: unknown = 0) => () =>
      sys.preadvMappedAsync(fd, segs as MappedSeg[], pos as number);
    expect(bad({})).toThrow(TypeError);
    expect(bad([[g, 0]])).toThrow(TypeError);
    expect(bad([['x', 0, 1]])).toThrow(TypeError);
    expect(bad([[g, 0.5, 1]])).toThrow(RangeError);
    expect(bad([[g, 0, 1]], -2)).toThrow(RangeError);
    expect(readFileSync(t.path('victim')).toString()).toBe('z'.repeat(100));
  });

  it('unmapShared during I/O detaches at once and munmaps after the last I/O completes', async () => {
    const name = memName('inflight');
    const mfd = t.track(sys.memfdCreate(name, SIZE));
    const ab = sys.mapShared(mfd, SIZE, 0);
    const [a1, b1] = sys.socketpairUnix().map((fd) => t.track(fd));
    const [a2, b2] = sys.socketpairUnix().map((fd) => t.track(fd));
    // both block in readv on the pool until their peer writes
    const first = sys.preadvMappedAsync(a1, [[ab, 100, 5]], -1);
    const second = sys.preadvMappedAsync(a2, [[ab, 200, 3], [ab, 300, 3]], -1);
    await sleep(50);
    sys.unmapShared(ab);
    expect(ab.byteLength).toBe(0);
    sys.unmapShared(ab);
    await expectRejectErrno(sys.pwritevMappedAsync(a1, [[ab, 0, 1]], -1), 'EINVAL', 'pwritev');
    expect(mapsMention(name)).toBe(true);

    expect(sys.pwrite(b1, b('hello'), 0, 5, -1)).toBe(5);
    await expect(first).resolves.toBe(5);
    expect(mapsMention(name)).toBe(true); // the second read still uses it

    expect(sys.pwrite(b2, b('abcdef'), 0, 6, -1)).toBe(6);
    await expect(second).resolves.toBe(6);
    expect(mapsMention(name)).toBe(false);

    const out = Buffer.alloc(5);
    sys.pread(mfd, out, 0, 5, 100);
    expect(out.toString()).toBe('hello');
    sys.pread(mfd, out, 0, 3, 200);
    sys.pread(mfd, out, 3, 2, 300);
    expect(out.toString()).toBe('abcde');
  });

  it('a mapping JS drops is munmapped by its finalizer, after the I/O that uses it', async () => {
    const idle = memName('dropped');
    const ifd = t.track(sys.memfdCreate(idle, SIZE));
    (() => sys.mapShared(ifd, SIZE, 0))();
    expect(mapsMention(idle)).toBe(true);
    await collect();
    expect(mapsMention(idle)).toBe(false);

    const busy = memName('dropped-busy');
    const bfd = t.track(sys.memfdCreate(busy, SIZE));
    const [a, c] = sys.socketpairUnix().map((fd) => t.track(fd));
    const read = (() => sys.preadvMappedAsync(a, [[sys.mapShared(bfd, SIZE, 0), 10, 5]], -1))();
    await collect();
    expect(mapsMention(busy)).toBe(true);
    expect(sys.pwrite(c, b('hello'), 0, 5, -1)).toBe(5);
    await expect(read).resolves.toBe(5);
    expect(mapsMention(busy)).toBe(false); // the ArrayBuffer was collected: the read's completion unmapped it
    const out = Buffer.alloc(5);
    sys.pread(bfd, out, 0, 5, 10);
    expect(out.toString()).toBe('hello');
  });
});
