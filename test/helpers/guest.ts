/**
 * The real-guest tests' helpers: the guest machinery (tools/lib/guest.ts, shared with
 * scripts/bench-virtiofs), the back-end the tests run against, and byte-exact trees: a spec the
 * static helper creates (`guest-check mktree`, on the host or in the guest) and listings
 * (`guest-check tree`) compared between the host and the guest.
 */
import * as fs from 'node:fs';
import { buildHelper, handlefsBackend, virtiofsdBackend, type Backend } from '../../tools/lib/guest.js';
import { runSync } from './child.js';
import { mulberry32 } from './prng.js';

export * from '../../tools/lib/guest.js';

/**
 * The back-end the guest tests run against: this constant, or HANDLEFS_GUEST_BACKEND=virtiofsd|handlefs.
 */
export const DEFAULT_GUEST_BACKEND: Backend = handlefsBackend;

export function guestBackend(): Backend {
  const want = process.env.HANDLEFS_GUEST_BACKEND;
  if (!want) return DEFAULT_GUEST_BACKEND;
  const b = [virtiofsdBackend, handlefsBackend].find((x) => x.name === want);
  if (!b) throw new Error(`HANDLEFS_GUEST_BACKEND=${want}: not virtiofsd or handlefs`);
  return b;
}

/** guest-check.c's pattern(): a 32-bit LCG, each byte the top 8 bits of the next state. */
export function lcgBytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** Run the static helper on the host (it is the same binary the guest runs): its stdout lines. */
export function hostHelper(...args: string[]): string[] {
  const r = runSync(buildHelper(), args, { timeoutMs: 120_000 });
  if (r.status !== 0) throw new Error(`guest-check ${args.join(' ')}: status ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l !== '');
}

// ------------------------------------------------------------------ trees

export type TreeEntry =
  | { kind: 'D'; path: Buffer; mode: number; uid: number; gid: number; mtimeNs: bigint }
  | { kind: 'F'; path: Buffer; mode: number; uid: number; gid: number; mtimeNs: bigint; size: number; seed: number }
  | { kind: 'L'; path: Buffer; target: Buffer; uid: number; gid: number; mtimeNs: bigint }
  | { kind: 'H'; path: Buffer; existing: Buffer };

/** The spec text cmd_mktree reads (paths and targets hex). */
export function specText(entries: readonly TreeEntry[]): string {
  const h = (b: Buffer): string => b.toString('hex');
  return entries
    .map((e) => {
      switch (e.kind) {
        case 'D':
          return `D ${h(e.path)} ${e.mode.toString(8)} ${e.uid} ${e.gid} ${e.mtimeNs}`;
        case 'F':
          return `F ${h(e.path)} ${e.mode.toString(8)} ${e.uid} ${e.gid} ${e.mtimeNs} ${e.size} ${e.seed}`;
        case 'L':
          return `L ${h(e.path)} ${h(e.target)} ${e.uid} ${e.gid} ${e.mtimeNs}`;
        case 'H':
          return `H ${h(e.path)} ${h(e.existing)}`;
      }
    })
    .join('\n')
    .concat('\n');
}

/**
 * A deterministic tree: nested directories, files of 0 bytes to 1 MiB (page and block edges among
 * them), names with non-UTF-8 bytes and spaces, symlinks (relative, absolute, dangling), hard
 * links, assorted modes and owners, timestamps with nanoseconds.
 */
export function sampleTree(seed: number): TreeEntry[] {
  const rnd = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const time = (): bigint => 1_000_000_000n * BigInt(1_500_000_000 + Math.floor(rnd() * 1e8)) + BigInt(Math.floor(rnd() * 1e9));
  const names = ['plain', 'caf\xe9', 'bin\xff\xfe', '\x80\x81\x82', 'with space', 'dot.ext', 'UPPER', '-dash', '\x01ctl'];
  const sizes = [0, 1, 511, 512, 4095, 4096, 4097, 65536, 131073, 300000, 1 << 20];
  const modes = [0o644, 0o600, 0o755, 0o444, 0o640, 0o4755, 0o2750, 0o1777];
  const owners: [number, number][] = [
    [0, 0],
    [1000, 1000],
    [4321, 8765],
  ];
  const entries: TreeEntry[] = [];
  const files: Buffer[] = [];
  const dirs: Buffer[] = [Buffer.alloc(0)];
  const child = (parent: Buffer, name: string, i: number): Buffer =>
    Buffer.concat([parent, parent.length ? Buffer.from('/') : Buffer.alloc(0), Buffer.from(`${name}-${i}`, 'latin1')]);
  for (let i = 0; i < 60; i++) {
    const parent = pick(dirs);
    const [uid, gid] = pick(owners);
    const r = rnd();
    const path = child(parent, pick(names), i);
    if (r < 0.2) {
      entries.push({ kind: 'D', path, mode: pick([0o755, 0o700, 0o750, 0o1777]), uid, gid, mtimeNs: time() });
      dirs.push(path);
    } else if (r < 0.75 || files.length === 0) {
      entries.push({ kind: 'F', path, mode: pick(modes), uid, gid, mtimeNs: time(), size: sizes[i % sizes.length]!, seed: 1 + i });
      files.push(path);
    } else if (r < 0.88) {
      const target = pick([Buffer.from('../somewhere/else'), Buffer.from('/etc/passwd'), Buffer.from('dangl\xefng', 'latin1'), pick(files)]);
      entries.push({ kind: 'L', path, target, uid, gid, mtimeNs: time() });
    } else {
      entries.push({ kind: 'H', path, existing: pick(files) });
    }
  }
  return entries;
}

/**
 * A listing of `guest-check tree` (host or guest), comparable between the two: one string per
 * entry below the root, sorted; the inode number replaced by the hex path of the first entry
 * with that inode (hard links), directory sizes left out (the helper prints 0).
 */
export function normalizeTree(lines: readonly string[]): string[] {
  const rows = lines.filter((l) => l.startsWith('T ')).map((l) => l.split(' '));
  const firstByIno = new Map<string, string>();
  for (const r of [...rows].sort((a, b) => (a[1]! < b[1]! ? -1 : 1))) if (!firstByIno.has(r[8]!)) firstByIno.set(r[8]!, r[1]!);
  return rows
    .filter((r) => r[1] !== '.')
    .map((r) => [...r.slice(1, 8), r[2] === 'f' ? firstByIno.get(r[8]!) : '-', ...r.slice(9)].join(' '))
    .sort();
}

/** Create the tree on the host in `dir` (which must exist) with the same helper the guest uses. */
export function makeTreeOnHost(entries: readonly TreeEntry[], dir: string, specFile: string): void {
  fs.writeFileSync(specFile, specText(entries));
  const out = hostHelper('mktree', specFile, dir);
  if (!out.at(-1)?.startsWith('MKTREE-END')) throw new Error(`mktree on the host: ${out.join('\n')}`);
}

/** The normalized listing of `dir` on the host. */
export function hostTree(dir: string): string[] {
  const out = hostHelper('tree', dir);
  if (out.at(-1) !== 'TREE-END') throw new Error(`tree on the host: ${out.slice(-3).join('\n')}`);
  return normalizeTree(out);
}

/** The spec's regular files (not hard links), joined to `dir`, with their expected size and seed. */
export function specFiles(entries: readonly TreeEntry[], dir: string): { path: Buffer; size: number; seed: number; mode: number; mtimeNs: bigint }[] {
  return entries.flatMap((e) => (e.kind === 'F' ? [{ path: Buffer.concat([Buffer.from(`${dir}/`), e.path]), size: e.size, seed: e.seed, mode: e.mode, mtimeNs: e.mtimeNs }] : []));
}
