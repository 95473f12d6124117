/**
 * Fixtures of the filesystem-core tests (test/fs): a PassthroughFs on a temp dir, driven without
 * a mount, and what the op tests compare it with (the host's view of the same tree).
 *
 * The op tests (test/fs/{entries,attrs,files,dirs,locks,xattrs}.test.ts) call useFs() once: before
 * each test `root`, `pfs` and `cap` below are set to a fresh temp dir, a PassthroughFs on it and its
 * captured log lines; these are ES module live bindings, so an importer always sees the current
 * ones (also after remakeFs).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, expect } from 'vitest';
import type { PassthroughOptions } from '../../src/fs/options.js';
import { PassthroughFs } from '../../src/fs/passthrough.js';
import type { Attr, Context, Entry, FileLock, SetattrIn, Timespec } from '../../src/fs/types.js';
import { ephemeralKey } from '../../src/handle/key.js';
import { O_RDONLY, O_RDWR } from '../../src/sys/constants.js';
import { sys } from '../../src/sys/syscalls.js';
import { codeOf, found } from './errno.js';

/** The requester of most tests: root, like the server. */
export const ctx: Context = { uid: 0, gid: 0, pid: process.pid, unique: 1n };
/** Another requester (1234:5678). */
export const other: Context = { uid: 1234, gid: 5678, pid: 4242, unique: 9n };
export const isRoot = process.getuid?.() === 0;
export const B = (s: string): Buffer => Buffer.from(s);

export interface Captured {
  lines: Array<Record<string, unknown>>;
}

/** A pino logger that keeps every line (to assert on operator-visible events). */
export function captureLogger(level = 'info') {
  const cap: Captured = { lines: [] };
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) cap.lines.push(JSON.parse(l));
      cb();
    },
  });
  return { log: pino({ level }, stream), cap };
}

export function tmpdir(prefix = 'hfs-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function makeFs(root: string, over: Partial<PassthroughOptions> = {}) {
  const { log, cap } = captureLogger();
  const pfs = new PassthroughFs({
    root, fdBudget: 64, reopen: 'auto', key: ephemeralKey(), cache: 'auto', xattr: true, creds: true, log, ...over,
  });
  return { pfs, cap };
}

/** Resolve a slash-separated relative path to an Entry by successive lookups. */
export async function walk(pfs: PassthroughFs, rel: string): Promise<Entry> {
  let e: Entry | null = null;
  let parent = 1n;
  for (const part of rel.split('/').filter(Boolean)) {
    e = found(await pfs.lookup(ctx, parent, B(part)));
    parent = e.nodeid;
  }
  if (!e) throw new Error('empty path');
  return e;
}

/**
 * What a test file's tests make and must not leave behind: cores (`cores`, destroyed after each
 * test) and temp dirs (`dir(prefix)`, removed after each test). Call once at the file's top level.
 */
export function useCleanup(): { cores: PassthroughFs[]; dir: (prefix: string) => string } {
  const cores: PassthroughFs[] = [];
  const dirs: string[] = [];
  afterEach(async () => {
    while (cores.length) await cores.pop()!.destroy();
    while (dirs.length) fs.rmSync(dirs.pop()!, { recursive: true, force: true });
  });
  return {
    cores,
    dir: (prefix) => {
      const d = tmpdir(prefix);
      dirs.push(d);
      return d;
    },
  };
}

/** A small file's whole contents, through open, read and release of the core. */
export async function readAll(pfs: PassthroughFs, nodeid: bigint): Promise<string> {
  const o = await pfs.open(ctx, nodeid, O_RDONLY);
  try {
    return (await pfs.read(ctx, nodeid, o.fh, 0, 1 << 20)).toString();
  } finally {
    await pfs.release(ctx, nodeid, o.fh, 0, 0n, false);
  }
}

export function countFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

// ------------------------------------------------------------------ the op tests' filesystem

export let root = '';
export let pfs: PassthroughFs;
export let cap: Captured;

/** Before each test: a fresh temp dir and a PassthroughFs on it (no writeback, killpriv or passthrough); after it, both go. */
export function useFs(): void {
  beforeEach(async () => {
    root = tmpdir('hfs-ops-');
    ({ pfs, cap } = makeFs(root));
    await pfs.init({ writeback: false, killPrivV2: false, passthrough: false });
  });
  afterEach(async () => {
    await pfs.destroy();
    fs.rmSync(root, { recursive: true, force: true });
  });
}

/** Replace this test's filesystem with one made with other options (on the same root, not initialised). */
export async function remakeFs(over: Partial<PassthroughOptions>): Promise<void> {
  await pfs.destroy();
  ({ pfs, cap } = makeFs(root, over));
}

/** An xattr's value as the host reads it on a path (lgetxattr), or the errno name it fails with. */
export function hostGet(p: string, name: string): string {
  try {
    const b = Buffer.alloc(65536);
    return b.subarray(0, sys.lgetxattr(B(p), B(name), b)).toString();
  } catch (e) {
    return codeOf(e);
  }
}

/** The host path of a path relative to the root. */
export const P = (rel: string): string => path.join(root, rel);

/** The Entry of a path relative to the root (successive lookups). */
export const look = (rel: string): Promise<Entry> => walk(pfs, rel);

export async function openFile(rel: string, flags = O_RDWR): Promise<{ nodeid: bigint; fh: bigint }> {
  const e = await look(rel);
  const o = await pfs.open(ctx, e.nodeid, flags);
  return { nodeid: e.nodeid, fh: o.fh };
}

const NS = 1_000_000_000n;
export const tsNs = (t: Timespec): bigint => t.sec * NS + BigInt(t.nsec);

function hostAttr(p: string) {
  const st = fs.lstatSync(p, { bigint: true });
  const rdev = st.rdev;
  return {
    ino: st.ino, size: st.size, blocks: st.blocks, mode: Number(st.mode), nlink: Number(st.nlink),
    uid: Number(st.uid), gid: Number(st.gid), blksize: Number(st.blksize),
    rdevMajor: Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)),
    rdevMinor: Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn & 0xffffffffn)),
    atime: st.atimeNs, mtime: st.mtimeNs, ctime: st.ctimeNs, btime: st.birthtimeNs,
  };
}

function ourAttr(a: Attr) {
  return {
    ino: a.ino, size: a.size, blocks: a.blocks, mode: a.mode, nlink: a.nlink, uid: a.uid, gid: a.gid,
    blksize: a.blksize, rdevMajor: a.rdevMajor, rdevMinor: a.rdevMinor,
    atime: tsNs(a.atime), mtime: tsNs(a.mtime), ctime: tsNs(a.ctime), btime: a.btime ? tsNs(a.btime) : 0n,
  };
}

/** Every field of `a` equals the host's lstat of `p` (nanosecond times, 64-bit ino). */
export function expectHostAttr(a: Attr, p: string): void {
  expect(ourAttr(a)).toEqual(hostAttr(p));
}

export function setattrIn(over: Partial<SetattrIn>): SetattrIn {
  const z: Timespec = { sec: 0n, nsec: 0 };
  return { valid: 0, fh: 0n, size: 0n, mode: 0, uid: 0, gid: 0, atime: z, mtime: z, ctime: z, ...over };
}

export const lock = (type: number, start: bigint, end: bigint): FileLock => ({ type, start, end, pid: 0 });
