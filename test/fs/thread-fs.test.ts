/**
 * threadFs (src/fs/thread-fs.ts): a serving thread's FileSystem over published fds. Real files
 * and real fds in a SharedFileTable; what it does not serve it declines (DECLINE), and every
 * borrow is given back, whether the call succeeds, fails or declines.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DECLINE, E, FsError, toErrno } from '../../src/errors.js';
import type { FileSystem } from '../../src/fs/filesystem.js';
import type { FsCounters } from '../../src/fs/services.js';
import { MoveWatch } from '../../src/fs/move-watch.js';
import { SHARED_LOCK_OWNERS, SHARED_ROOT_MOUNT, SharedFileTable, SharedRemovalGate } from '../../src/fs/shared-files.js';
import { threadFs, type ThreadFsCounters, type ThreadFsSettings } from '../../src/fs/thread-fs.js';
import {
  FATTR_ATIME, FATTR_FH, FATTR_GID, FATTR_KILL_SUIDGID, FATTR_MODE, FATTR_MTIME, FATTR_MTIME_NOW, FATTR_SIZE, FATTR_UID, WRITE_KILL_SUIDGID, type SetattrIn,
} from '../../src/fs/types.js';
import { sys, AT_FDCWD, O_APPEND, O_CLOEXEC, O_NOFOLLOW, O_PATH, O_RDWR, O_WRONLY, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../../src/sys/syscalls.js';
import { B, ctx, tmpdir } from '../helpers/fs-fixture.js';

const FH = 7n;
const NODE = 70n;

let root: string;
let fds: number[];
let table: SharedFileTable;
let inodes: SharedFileTable;
let removals: SharedRemovalGate;
const ATTR_MS = 1234;
let tfs: FileSystem;
let counters: ThreadFsCounters;

function fsCounters(): FsCounters {
  return {
    reopenByPath: 0, reopenByHandle: 0, estale: 0, sealFailures: 0, resurrected: 0, placeChecks: 0, nowaitRefusals: 0,
    forgetUnknown: 0, forgetUnderflow: 0, forgetAfterCrash: 0,
  };
}

/** A file `name` with `content`, opened with `flags` ('r+', 'a+', ...) and published as `fh` of `nodeid`. */
function publishFile(name: string, content: string, flags: string, fh: bigint, nodeid: bigint, openFlags: number): string {
  const p = path.join(root, name);
  fs.writeFileSync(p, content);
  const fd = fs.openSync(p, flags);
  fds.push(fd);
  expect(table.publish(fh, nodeid, fd, openFlags, Number(fs.fstatSync(fd).dev))).toBe(true);
  return p;
}

/**
 * The share is root/share (the thread's root path) and root/outside is not in it: tfs and counters
 * are made again for that share.
 */
function shareAndOutside(): { share: string; outside: string; settings: ThreadFsSettings } {
  const share = path.join(root, 'share');
  const outside = path.join(root, 'outside');
  fs.mkdirSync(share);
  fs.mkdirSync(outside);
  const settings = { attrTimeoutMs: ATTR_MS, rootPath: Buffer.from(fs.realpathSync(share)), plainXattrs: true, rootMount: 0n, handleFlags: 0 };
  ({ fs: tfs, counters } = threadFs({ files: table, inodes, removals }, fsCounters(), settings));
  return { share, outside, settings };
}

const T0 = { sec: 0n, nsec: 0 };
/** A SetattrIn with these fields set. */
function sa(valid: number, f: Partial<SetattrIn> = {}): SetattrIn {
  return { valid, fh: 0n, size: 0n, mode: 0, uid: 0, gid: 0, atime: T0, mtime: T0, ctime: T0, ...f };
}

/** The call declines: it rejects (or throws) DECLINE itself. */
async function declines(call: () => unknown): Promise<void> {
  await expect((async () => call())()).rejects.toBe(DECLINE);
}

/** The errno the protocol server would answer the call's failure with (a rejection or an FsError value). */
async function errnoOf(p: Promise<unknown>): Promise<number> {
  try {
    const v = await p;
    if (v instanceof FsError) return v.errno;
  } catch (e) {
    expect(e).not.toBe(DECLINE);
    return toErrno(e);
  }
  throw new Error('resolved');
}

beforeEach(async () => {
  root = tmpdir('hfs-threadfs-');
  fds = [];
  table = SharedFileTable.create(16);
  inodes = SharedFileTable.create(16);
  removals = SharedRemovalGate.create();
  ({ fs: tfs, counters } = threadFs({ files: table, inodes, removals }, fsCounters(), { attrTimeoutMs: ATTR_MS, rootPath: Buffer.from(fs.realpathSync(root)), plainXattrs: true, rootMount: 0n, handleFlags: 0 }));
  await tfs.init({ writeback: false, killPrivV2: false, passthrough: false, submounts: false });
});

afterEach(() => {
  for (const fd of fds) fs.closeSync(fd);
  fs.rmSync(root, { recursive: true, force: true });
});

describe('reads and writes through a published fd', () => {
  it('read: the content, a short read at the end of the file, into the buffer given; EINVAL for a bad offset', async () => {
    publishFile('f', 'hello world', 'r+', FH, NODE, O_RDWR);
    expect((await tfs.read(ctx, NODE, FH, 0, 5)).toString()).toBe('hello');
    expect((await tfs.read(ctx, NODE, FH, 6, 100)).toString()).toBe('world');
    expect((await tfs.read(ctx, NODE, FH, 11, 10)).length).toBe(0);
    expect((await tfs.read(ctx, NODE, FH, 50, 10)).length).toBe(0);
    // the reply's buffer, as hRead gives it: a full read is that buffer, a short one a part of it
    const into = Buffer.alloc(3);
    expect(await tfs.read(ctx, NODE, FH, 2, 3, into)).toBe(into);
    expect(into.toString()).toBe('llo');
    const tail = Buffer.alloc(10);
    const got = await tfs.read(ctx, NODE, FH, 8, 10, tail);
    expect(got.toString()).toBe('rld');
    expect(got.buffer).toBe(tail.buffer);
    expect(await errnoOf(tfs.read(ctx, NODE, FH, -1, 5))).toBe(E.EINVAL);
    expect(await errnoOf(tfs.read(ctx, NODE, FH, 2 ** 53, 5))).toBe(E.EINVAL);
    expect(table.borrowers(FH)).toBe(0);
    expect(counters.declined).toBe(0);
    expect(counters.served).toBeGreaterThanOrEqual(6);
  });

  it('write: the data lands at the offset; EINVAL for a bad offset', async () => {
    const p = publishFile('f', 'hello world', 'r+', FH, NODE, O_RDWR);
    expect(await tfs.write(ctx, NODE, FH, 6, B('WORLD!'), 0)).toBe(6);
    expect(await tfs.write(ctx, NODE, FH, 0, B('J'), 0)).toBe(1);
    expect(fs.readFileSync(p, 'utf8')).toBe('Jello WORLD!');
    expect(await errnoOf(tfs.write(ctx, NODE, FH, -4, B('x'), 0))).toBe(E.EINVAL);
    expect(fs.readFileSync(p, 'utf8')).toBe('Jello WORLD!');
    expect(table.borrowers(FH)).toBe(0);
    expect(counters.declined).toBe(0);
    expect(counters.served).toBeGreaterThanOrEqual(2);
  });

  it('write of a file opened O_APPEND appends at the end, whatever the offset', async () => {
    const p = publishFile('a', 'start', 'a+', FH, NODE, O_RDWR | O_APPEND);
    expect(await tfs.write(ctx, NODE, FH, 0, B('-one'), 0)).toBe(4);
    expect(await tfs.write(ctx, NODE, FH, 2, B('-two'), 0)).toBe(4);
    expect(fs.readFileSync(p, 'utf8')).toBe('start-one-two');
  });

  it('write with WRITE_KILL_SUIDGID clears the setuid bit only when INIT settled killpriv_v2', async () => {
    const p = publishFile('s', '', 'r+', FH, NODE, O_RDWR);
    fs.chmodSync(p, 0o4755);
    await tfs.write(ctx, NODE, FH, 0, B('x'), WRITE_KILL_SUIDGID);
    expect(fs.statSync(p).mode & 0o7777).toBe(0o4755);
    await tfs.init({ writeback: false, killPrivV2: true, passthrough: false, submounts: false });
    await tfs.write(ctx, NODE, FH, 0, B('y'), 0);
    expect(fs.statSync(p).mode & 0o7777).toBe(0o4755);
    await tfs.write(ctx, NODE, FH, 0, B('z'), WRITE_KILL_SUIDGID);
    expect(fs.statSync(p).mode & 0o7777).toBe(0o755);
  });

  it('fsync and fdatasync are served', async () => {
    publishFile('f', 'x', 'r+', FH, NODE, O_RDWR);
    await expect(tfs.fsync(ctx, NODE, FH, false)).resolves.toBeUndefined();
    await expect(tfs.fsync(ctx, NODE, FH, true)).resolves.toBeUndefined();
    expect(table.borrowers(FH)).toBe(0);
    expect(counters).toEqual({ served: 2, declined: 0, negativeLookups: 0, positiveLookups: 0, removals: 0 });
  });

  it('a failing read (an fd opened write-only) fails with the host errno and gives its borrow back', async () => {
    publishFile('w', 'data', 'w', FH, NODE, O_WRONLY);
    expect(await errnoOf(tfs.read(ctx, NODE, FH, 0, 4))).toBe(E.EBADF);
    expect(table.borrowers(FH)).toBe(0);
    // not borrowed any more: the owner can withdraw it
    expect(table.withdraw(FH)).toBe(true);
  });
});

describe('FLUSH', () => {
  it('served while no lock owner used the fh; declined once the entry is marked SHARED_LOCK_OWNERS, and served again when unmarked', async () => {
    publishFile('f', 'x', 'r+', FH, NODE, O_RDWR);
    await expect(tfs.flush(ctx, NODE, FH, 1n)).resolves.toBeUndefined();
    expect(counters).toEqual({ served: 1, declined: 0, negativeLookups: 0, positiveLookups: 0, removals: 0 });
    table.mark(FH, SHARED_LOCK_OWNERS, true);
    await declines(() => tfs.flush(ctx, NODE, FH, 1n));
    expect(table.borrowers(FH)).toBe(0);
    expect(counters).toEqual({ served: 1, declined: 1, negativeLookups: 0, positiveLookups: 0, removals: 0 });
    table.mark(FH, SHARED_LOCK_OWNERS, false);
    await tfs.flush(ctx, NODE, FH, 1n);
    expect(counters).toEqual({ served: 2, declined: 1, negativeLookups: 0, positiveLookups: 0, removals: 0 });
  });
});

describe('declined: the owner serves it', () => {
  it('an fh never published, one withdrawn, one closing, and a node id that is not the fh\'s', async () => {
    publishFile('f', 'x', 'r+', FH, NODE, O_RDWR);
    await declines(() => tfs.read(ctx, NODE, FH + 1n, 0, 1));
    await declines(() => tfs.write(ctx, NODE, FH + 1n, 0, B('y'), 0));
    await declines(() => tfs.fsync(ctx, NODE, FH + 1n, false));
    await declines(() => tfs.flush(ctx, NODE, FH + 1n, 0n));
    await declines(() => tfs.read(ctx, NODE + 1n, FH, 0, 1));
    await declines(() => tfs.write(ctx, NODE + 1n, FH, 0, B('y'), 0));
    expect(fs.readFileSync(path.join(root, 'f'), 'utf8')).toBe('x');
    expect(counters).toEqual({ served: 0, declined: 6, negativeLookups: 0, positiveLookups: 0, removals: 0 });
    // closing (the owner released it while a borrower held it): no new borrows
    const s = table.borrow(FH, NODE);
    expect(table.withdraw(FH, true)).toBe(false);
    await declines(() => tfs.read(ctx, NODE, FH, 0, 1));
    table.release(s);
    expect(table.withdraw(FH, true)).toBe(true);
    await declines(() => tfs.read(ctx, NODE, FH, 0, 1));
    expect(counters).toEqual({ served: 0, declined: 8, negativeLookups: 0, positiveLookups: 0, removals: 0 });
  });

  it('every other method declines without touching the host', async () => {
    publishFile('f', 'x', 'r+', FH, NODE, O_RDWR);
    await declines(() => tfs.lookup(ctx, 1n, B('f')));
    await declines(() => tfs.mkdir(ctx, 1n, B('d'), 0o755, 0));
    await declines(() => tfs.open(ctx, NODE, O_RDWR));
    await declines(() => tfs.release(ctx, NODE, FH, O_RDWR, 0n, false));
    await declines(() => tfs.unlink(ctx, 1n, B('f')));
    expect(fs.existsSync(path.join(root, 'f'))).toBe(true);
    expect(fs.existsSync(path.join(root, 'd'))).toBe(false);
    // release was declined: the entry is still published and lent
    expect(table.borrowers(FH)).toBe(0);
    expect((await tfs.read(ctx, NODE, FH, 0, 1)).toString()).toBe('x');
    expect(counters).toEqual({ served: 1, declined: 5, negativeLookups: 0, positiveLookups: 0, removals: 0 });
  });

  it('destroy leaves the owner\'s fds open', async () => {
    publishFile('f', 'x', 'r+', FH, NODE, O_RDWR);
    await tfs.destroy();
    expect(fs.fstatSync(fds[0]!).size).toBe(1);
    expect((await tfs.read(ctx, NODE, FH, 0, 1)).toString()).toBe('x');
  });

  it('GETATTR of a published inode is its O_PATH fd\'s fstat (a symlink\'s own), of an open file its fd\'s; unpublished declines', async () => {
    const p = publishFile('f', 'hello', 'r+', FH, NODE, O_RDWR);
    fs.symlinkSync('f', path.join(root, 'l'));
    const pf = sys.openat(AT_FDCWD, Buffer.from(p), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
    const pl = sys.openat(AT_FDCWD, Buffer.from(path.join(root, 'l')), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
    fds.push(pf, pl);
    expect(inodes.publish(NODE, NODE, pf, S_IFREG, 0)).toBe(true);
    expect(inodes.publish(NODE + 1n, NODE + 1n, pl, S_IFLNK, 0)).toBe(true);
    const st = fs.statSync(p, { bigint: true });
    const a = await tfs.getattr(ctx, NODE);
    expect(a.attrTimeoutMs).toBe(ATTR_MS);
    expect(a.attr.ino).toBe(st.ino);
    expect(a.attr.size).toBe(5n);
    expect(a.attr.mode & S_IFMT).toBe(S_IFREG);
    // by the open file (FUSE_GETATTR_FH): the same file, after a write through it
    await tfs.write(ctx, NODE, FH, 5, B(' world'), 0);
    expect((await tfs.getattr(ctx, NODE, FH)).attr.size).toBe(11n);
    const l = await tfs.getattr(ctx, NODE + 1n);
    expect(l.attr.mode & S_IFMT).toBe(S_IFLNK);
    expect(l.attr.ino).toBe(fs.lstatSync(path.join(root, 'l'), { bigint: true }).ino);
    await declines(() => tfs.getattr(ctx, NODE + 2n));
    // the fh of another node
    await declines(() => tfs.getattr(ctx, NODE + 1n, FH));
    expect(inodes.borrowers(NODE)).toBe(0);
    expect(table.borrowers(FH)).toBe(0);
  });

  it('READLINK of a published symlink reads its target; of another inode EINVAL; unpublished declines', async () => {
    fs.writeFileSync(path.join(root, 'f'), 'x');
    fs.symlinkSync('../somewhere/else', path.join(root, 'l'));
    const pf = sys.openat(AT_FDCWD, Buffer.from(path.join(root, 'f')), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
    const pl = sys.openat(AT_FDCWD, Buffer.from(path.join(root, 'l')), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
    fds.push(pf, pl);
    inodes.publish(NODE, NODE, pf, S_IFREG, 0);
    inodes.publish(NODE + 1n, NODE + 1n, pl, S_IFLNK, 0);
    expect((await tfs.readlink(ctx, NODE + 1n)).toString()).toBe('../somewhere/else');
    expect(await errnoOf(tfs.readlink(ctx, NODE))).toBe(E.EINVAL);
    await declines(() => tfs.readlink(ctx, NODE + 2n));
    expect(inodes.borrowers(NODE)).toBe(0);
    expect(inodes.borrowers(NODE + 1n)).toBe(0);
  });
});

describe('LOOKUP: an absent name is answered here, anything else is the owner\'s', () => {
  /** An O_PATH fd of `p` published as inode `nodeid` of type `type`. */
  function publishPath(p: string, nodeid: bigint, type: number): number {
    const fd = sys.openat(AT_FDCWD, Buffer.from(p), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
    fds.push(fd);
    expect(inodes.publish(nodeid, nodeid, fd, type, 0)).toBe(true);
    return fd;
  }

  it('ENOENT for a name not in the root or in a published directory below it; each borrow given back', async () => {
    publishPath(root, 1n, S_IFDIR);
    fs.mkdirSync(path.join(root, 'd'));
    publishPath(path.join(root, 'd'), NODE, S_IFDIR);
    // a non-UTF-8 name too: names are bytes
    for (const [parent, name] of [[1n, B('nope')], [NODE, B('nope')], [NODE, Buffer.from([0x66, 0xff, 0xfe])]] as const) {
      expect(await errnoOf(tfs.lookup(ctx, parent, name))).toBe(E.ENOENT);
    }
    expect(counters).toEqual({ served: 3, declined: 0, negativeLookups: 3, positiveLookups: 0, removals: 0 });
    expect(inodes.borrowers(1n)).toBe(0);
    expect(inodes.borrowers(NODE)).toBe(0);
  });

  it('a name that is there (file, directory, symlink, dangling symlink) declines: the owner counts the lookup', async () => {
    publishPath(root, 1n, S_IFDIR);
    fs.writeFileSync(path.join(root, 'f'), 'x');
    fs.mkdirSync(path.join(root, 'd'));
    fs.symlinkSync('f', path.join(root, 'l'));
    fs.symlinkSync('/etc/nothing-here', path.join(root, 'dangling'));
    for (const n of ['f', 'd', 'l', 'dangling']) await declines(() => tfs.lookup(ctx, 1n, B(n)));
    expect(counters).toEqual({ served: 0, declined: 4, negativeLookups: 0, positiveLookups: 0, removals: 0 });
    expect(inodes.borrowers(1n)).toBe(0);
  });

  it("'.', '..', an unpublished parent and a parent that is not a directory decline; bad names get the owner's errors", async () => {
    publishPath(root, 1n, S_IFDIR);
    fs.writeFileSync(path.join(root, 'f'), 'x');
    publishPath(path.join(root, 'f'), NODE, S_IFREG);
    await declines(() => tfs.lookup(ctx, 1n, B('.')));
    await declines(() => tfs.lookup(ctx, 1n, B('..')));
    await declines(() => tfs.lookup(ctx, NODE + 5n, B('nope')));
    await declines(() => tfs.lookup(ctx, NODE, B('nope')));
    expect(await errnoOf(tfs.lookup(ctx, 1n, B('a/b')))).toBe(E.EINVAL);
    expect(await errnoOf(tfs.lookup(ctx, 1n, Buffer.alloc(0)))).toBe(E.EINVAL);
    expect(await errnoOf(tfs.lookup(ctx, 1n, Buffer.from('a\0b')))).toBe(E.EINVAL);
    expect(await errnoOf(tfs.lookup(ctx, 1n, Buffer.alloc(256, 0x61)))).toBe(E.ENAMETOOLONG);
    expect(counters.negativeLookups).toBe(0);
    expect(inodes.borrowers(1n)).toBe(0);
    expect(inodes.borrowers(NODE)).toBe(0);
  });

  it('a directory the host moved out of the share: no answer from here (the owner refuses it), though its name is absent', async () => {
    const { share, outside } = shareAndOutside();
    fs.mkdirSync(path.join(share, 'd'));
    publishPath(path.join(share, 'd'), NODE, S_IFDIR);
    expect(await errnoOf(tfs.lookup(ctx, NODE, B('secret')))).toBe(E.ENOENT);
    fs.renameSync(path.join(share, 'd'), path.join(outside, 'd'));
    fs.writeFileSync(path.join(outside, 'd', 'there'), 'x');
    // absent and present names alike: nothing about the moved directory is told
    await declines(() => tfs.lookup(ctx, NODE, B('secret')));
    await declines(() => tfs.lookup(ctx, NODE, B('there')));
    // a sibling of the share whose name starts with the share's is not below it
    fs.renameSync(path.join(outside, 'd'), `${share}d`);
    await declines(() => tfs.lookup(ctx, NODE, B('secret')));
    // back inside: answered again
    fs.renameSync(`${share}d`, path.join(share, 'd'));
    expect(await errnoOf(tfs.lookup(ctx, NODE, B('secret')))).toBe(E.ENOENT);
    expect(counters).toEqual({ served: 2, declined: 3, negativeLookups: 2, positiveLookups: 0, removals: 0 });
    expect(inodes.borrowers(NODE)).toBe(0);
  });

  it('a proof of place is kept until a rename on the filesystem (this thread\'s own rename watch), only for an inode marked on the root\'s mount; a directory moved out is refused at once', async () => {
    const { share, outside, settings } = shareAndOutside();
    const moves = new MoveWatch(settings.rootPath as Buffer, pino({ level: 'silent' }));
    try {
      // fanotify's filesystem-wide mark needs CAP_SYS_ADMIN: the tests run as root
      expect(moves.enabled, `no rename watch (${moves.failure})`).toBe(true);
      const fsc = fsCounters();
      ({ fs: tfs, counters } = threadFs({ files: table, inodes, removals }, fsc, settings, moves));
      fs.mkdirSync(path.join(share, 'd'));
      fs.mkdirSync(path.join(share, 'm'));
      const dfd = sys.openat(AT_FDCWD, Buffer.from(path.join(share, 'd')), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
      const mfd = sys.openat(AT_FDCWD, Buffer.from(path.join(share, 'm')), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
      fds.push(dfd, mfd);
      expect(inodes.publish(NODE, NODE, dfd, S_IFDIR, 0, SHARED_ROOT_MOUNT)).toBe(true);
      // not marked: another mount's inode, whose moves are not watched
      expect(inodes.publish(NODE + 1n, NODE + 1n, mfd, S_IFDIR, 0)).toBe(true);
      const LOOKS = 50;
      for (let i = 0; i < LOOKS; i++) expect(await errnoOf(tfs.lookup(ctx, NODE, B(`no${i}`)))).toBe(E.ENOENT);
      // one readlink, the rest kept (a rename elsewhere on this filesystem, by another test, may add a few)
      expect(fsc.placeChecks).toBeGreaterThanOrEqual(1);
      expect(fsc.placeChecks).toBeLessThan(10);
      const before = fsc.placeChecks;
      for (let i = 0; i < LOOKS; i++) expect(await errnoOf(tfs.lookup(ctx, NODE + 1n, B(`no${i}`)))).toBe(E.ENOENT);
      expect(fsc.placeChecks - before).toBe(LOOKS);
      // the two interleaved: the unmarked one's readlinks do not void the kept proof
      const mixed = fsc.placeChecks;
      for (let i = 0; i < LOOKS; i++) {
        expect(await errnoOf(tfs.lookup(ctx, NODE, B(`no${i}`)))).toBe(E.ENOENT);
        expect(await errnoOf(tfs.lookup(ctx, NODE + 1n, B(`no${i}`)))).toBe(E.ENOENT);
      }
      expect(fsc.placeChecks - mixed).toBeGreaterThanOrEqual(LOOKS);
      expect(fsc.placeChecks - mixed).toBeLessThan(LOOKS + 10);
      // the host moves the kept directory out: the next request sees the rename and proves again
      fs.renameSync(path.join(share, 'd'), path.join(outside, 'd'));
      await declines(() => tfs.lookup(ctx, NODE, B('secret')));
      await declines(() => tfs.setattr(ctx, NODE, sa(FATTR_MODE, { mode: 0o700 })));
      await declines(() => tfs.getxattr(ctx, NODE, B('user.k'), 0));
      expect(fs.statSync(path.join(outside, 'd')).mode & 0o7777).not.toBe(0o700);
      // back inside: answered again
      fs.renameSync(path.join(outside, 'd'), path.join(share, 'd'));
      expect(await errnoOf(tfs.lookup(ctx, NODE, B('secret')))).toBe(E.ENOENT);
      expect(inodes.borrowers(NODE)).toBe(0);
    } finally {
      moves.close();
    }
  });

  it('without a root path to prove places with (a chrooted process), every LOOKUP is the owner\'s', async () => {
    ({ fs: tfs, counters } = threadFs({ files: table, inodes, removals }, fsCounters(), { attrTimeoutMs: ATTR_MS, rootPath: null, plainXattrs: true, rootMount: 0n, handleFlags: 0 }));
    publishPath(root, 1n, S_IFDIR);
    await declines(() => tfs.lookup(ctx, 1n, B('nope')));
    expect(counters).toEqual({ served: 0, declined: 1, negativeLookups: 0, positiveLookups: 0, removals: 0 });
  });
});

describe('STATX', () => {
  it('is GETATTR: the published inode\'s fstat, or the open file\'s; unpublished declines', async () => {
    const p = publishFile('f', 'hello', 'r+', FH, NODE, O_RDWR);
    const pf = sys.openat(AT_FDCWD, Buffer.from(p), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
    fds.push(pf);
    inodes.publish(NODE, NODE, pf, S_IFREG, 0);
    const a = await tfs.statx(ctx, NODE, undefined, 0, 0xfff);
    expect(a.attrTimeoutMs).toBe(ATTR_MS);
    expect(a.attr.ino).toBe(fs.statSync(p, { bigint: true }).ino);
    await tfs.write(ctx, NODE, FH, 5, B('!'), 0);
    expect((await tfs.statx(ctx, NODE, FH, 0, 0xfff)).attr.size).toBe(6n);
    await declines(() => tfs.statx(ctx, NODE + 1n, undefined, 0, 0xfff));
    expect(inodes.borrowers(NODE)).toBe(0);
    expect(table.borrowers(FH)).toBe(0);
  });
});

describe('GETXATTR', () => {
  const NAME = B('user.hfs-test');

  /** A file `name` with the xattr NAME = value, its O_PATH fd published as `nodeid`. */
  function fileWithXattr(dir: string, name: string, value: string, nodeid: bigint): string {
    const p = path.join(dir, name);
    fs.writeFileSync(p, 'x');
    sys.setxattr(Buffer.from(p), NAME, B(value), 0);
    const fd = sys.openat(AT_FDCWD, Buffer.from(p), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
    fds.push(fd);
    expect(inodes.publish(nodeid, nodeid, fd, S_IFREG, 0)).toBe(true);
    return p;
  }

  it('the host\'s answer through the published O_PATH fd: the size, the value, ENODATA, ERANGE; bad names EINVAL/ERANGE', async () => {
    fileWithXattr(root, 'f', 'some value', NODE);
    expect(await tfs.getxattr(ctx, NODE, NAME, 0)).toEqual({ size: 10 });
    expect(await tfs.getxattr(ctx, NODE, NAME, 100)).toEqual({ value: B('some value') });
    // the kernel asks for this one before a new file's first write
    expect(await errnoOf(tfs.getxattr(ctx, NODE, B('security.capability'), 0))).toBe(E.ENODATA);
    expect(await errnoOf(tfs.getxattr(ctx, NODE, NAME, 3))).toBe(E.ERANGE);
    expect(await errnoOf(tfs.getxattr(ctx, NODE, Buffer.alloc(0), 0))).toBe(E.EINVAL);
    expect(await errnoOf(tfs.getxattr(ctx, NODE, Buffer.alloc(256, 0x61), 0))).toBe(E.ERANGE);
    expect(counters).toEqual({ served: 4, declined: 0, negativeLookups: 0, positiveLookups: 0, removals: 0 });
    expect(inodes.borrowers(NODE)).toBe(0);
  });

  it('declined: an unpublished inode, names the owner maps (plainXattrs false), no root path, a file moved out of the share', async () => {
    const { share, outside, settings } = shareAndOutside();
    const p = fileWithXattr(share, 'f', 'inside', NODE);
    expect(await tfs.getxattr(ctx, NODE, NAME, 100)).toEqual({ value: B('inside') });
    await declines(() => tfs.getxattr(ctx, NODE + 1n, NAME, 100));
    for (const other of [{ ...settings, plainXattrs: false, rootMount: 0n, handleFlags: 0 }, { ...settings, rootPath: null }]) {
      const t = threadFs({ files: table, inodes, removals }, fsCounters(), other);
      await declines(() => t.fs.getxattr(ctx, NODE, NAME, 100));
    }
    // moved out, its value changed there: not read from here
    fs.renameSync(p, path.join(outside, 'f'));
    sys.setxattr(Buffer.from(path.join(outside, 'f')), NAME, B('outside secret'), 0);
    await declines(() => tfs.getxattr(ctx, NODE, NAME, 100));
    await declines(() => tfs.getxattr(ctx, NODE, NAME, 0));
    expect(counters).toEqual({ served: 1, declined: 3, negativeLookups: 0, positiveLookups: 0, removals: 0 });
    expect(inodes.borrowers(NODE)).toBe(0);
  });
});

describe('SETATTR', () => {
  /** An O_PATH fd of `p` published as `nodeid` (a regular file). */
  function publishInode(p: string, nodeid: bigint): void {
    const fd = sys.openat(AT_FDCWD, Buffer.from(p), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
    fds.push(fd);
    expect(inodes.publish(nodeid, nodeid, fd, S_IFREG, 0)).toBe(true);
  }

  it('mode, owner and times, through the published fd, answered with the attributes after', async () => {
    const p = path.join(root, 'f');
    fs.writeFileSync(p, 'x');
    publishInode(p, NODE);
    let a = await tfs.setattr(ctx, NODE, sa(FATTR_MODE, { mode: 0o100640 }));
    expect(fs.statSync(p).mode & 0o7777).toBe(0o640);
    expect(a.attr.mode & 0o7777).toBe(0o640);
    expect(a.attrTimeoutMs).toBe(ATTR_MS);
    a = await tfs.setattr(ctx, NODE, sa(FATTR_ATIME | FATTR_MTIME, { atime: { sec: 1_000_000n, nsec: 5 }, mtime: { sec: 2_000_000n, nsec: 7 } }));
    const st = fs.statSync(p, { bigint: true });
    expect(st.atimeNs).toBe(1_000_000n * 1_000_000_000n + 5n);
    expect(st.mtimeNs).toBe(2_000_000n * 1_000_000_000n + 7n);
    expect(a.attr.mtime).toEqual({ sec: 2_000_000n, nsec: 7 });
    // MTIME_NOW alone leaves atime alone
    await tfs.setattr(ctx, NODE, sa(FATTR_MTIME_NOW));
    const st2 = fs.statSync(p, { bigint: true });
    expect(st2.atimeNs).toBe(st.atimeNs);
    expect(st2.mtimeNs > st.mtimeNs).toBe(true);
    if (process.getuid?.() === 0) {
      await tfs.setattr(ctx, NODE, sa(FATTR_UID | FATTR_GID, { uid: 1234, gid: 5678 }));
      expect([fs.statSync(p).uid, fs.statSync(p).gid]).toEqual([1234, 5678]);
      // only the group
      await tfs.setattr(ctx, NODE, sa(FATTR_GID, { gid: 42 }));
      expect([fs.statSync(p).uid, fs.statSync(p).gid]).toEqual([1234, 42]);
      // a chown with KILL_SUIDGID (what the kernel sends under killpriv_v2): served; the host's chown
      // clears the setuid bit itself, as it does for the owner (which acts on the flag only with a size)
      fs.chmodSync(p, 0o4755);
      a = await tfs.setattr(ctx, NODE, sa(FATTR_UID | FATTR_GID | FATTR_KILL_SUIDGID, { uid: 4321, gid: 42 }));
      expect([fs.statSync(p).uid, fs.statSync(p).mode & 0o7777]).toEqual([4321, 0o755]);
      expect(a.attr.mode & 0o7777).toBe(0o755);
    }
    expect(counters.declined).toBe(0);
    expect(inodes.borrowers(NODE)).toBe(0);
  });

  it('declined: a size, an fh this thread cannot see, an unpublished inode, no root path, a file moved out of the share', async () => {
    const { share, outside, settings } = shareAndOutside();
    const p = path.join(share, 'f');
    fs.writeFileSync(p, 'hello');
    fs.chmodSync(p, 0o644);
    publishInode(p, NODE);
    await declines(() => tfs.setattr(ctx, NODE, sa(FATTR_SIZE, { size: 1n })));
    await declines(() => tfs.setattr(ctx, NODE, sa(FATTR_SIZE | FATTR_KILL_SUIDGID, { size: 1n })));
    await declines(() => tfs.setattr(ctx, NODE, sa(FATTR_MODE | FATTR_FH, { mode: 0o600, fh: 99n })));
    await declines(() => tfs.setattr(ctx, NODE + 1n, sa(FATTR_MODE, { mode: 0o600 })));
    const noRoot = threadFs({ files: table, inodes, removals }, fsCounters(), { ...settings, rootPath: null });
    await declines(() => noRoot.fs.setattr(ctx, NODE, sa(FATTR_MODE, { mode: 0o600 })));
    expect(fs.statSync(p).size).toBe(5);
    expect(fs.statSync(p).mode & 0o7777).toBe(0o644);
    // an fh published for this node is fine
    const fd = fs.openSync(p, 'r+');
    fds.push(fd);
    table.publish(FH, NODE, fd, O_RDWR, 0);
    await tfs.setattr(ctx, NODE, sa(FATTR_MODE | FATTR_FH, { mode: 0o600, fh: FH }));
    expect(fs.statSync(p).mode & 0o7777).toBe(0o600);
    // moved out: nothing changes there
    fs.renameSync(p, path.join(outside, 'f'));
    await declines(() => tfs.setattr(ctx, NODE, sa(FATTR_MODE, { mode: 0o777 })));
    expect(fs.statSync(path.join(outside, 'f')).mode & 0o7777).toBe(0o600);
    expect(counters).toEqual({ served: 1, declined: 5, negativeLookups: 0, positiveLookups: 0, removals: 0 });
    expect(inodes.borrowers(NODE)).toBe(0);
    expect(table.borrowers(FH)).toBe(0);
  });
});
