/**
 * fuse-native (libfuse2 high-level, path-based) ops -> FileSystem calls. Translation only: paths
 * become node ids through the PathTable, fuse-native's 32-bit fh numbers map to the core's
 * (nodeid, bigint fh) pairs, attributes are narrowed as fuse-stat.ts describes, and every failure
 * is `cb(-errno)` via toErrno. No filesystem logic lives here.
 *
 * Limits of fuse-native 2.2.6 and how they are handled (the README's frontend table):
 * - No caller credentials: fuse-native does not expose fuse_get_context(), so every call runs
 *   with uid 0, gid 0, pid 0. Permission checks are the kernel's (mount.ts mounts with
 *   default_permissions by default); files are created owned by the server's user.
 * - Names are JS strings: V8 decodes paths as UTF-8 and turns invalid bytes into U+FFFD. A path
 *   holding U+FFFD is refused with EILSEQ (it would address another file); readdir omits names
 *   that are not valid UTF-8 or hold U+FFFD (they could not be looked up back), counted in
 *   `namesSkipped` and logged once. readlink returns a non-UTF-8 target lossily (for display).
 *   xattr names are strings too.
 * - create gets no open flags: the file is opened O_RDWR (the kernel already applied O_CREAT/O_EXCL
 *   through its own lookup; O_APPEND is honoured by the kernel choosing the offset, O_TRUNC is
 *   moot on a new file). The kernel applies the umask (no DONT_MASK), so umask 0 is passed on.
 * - utimens: fuse-native.c passes the atime twice (its argv 5 repeats l->atime), so the mtime the
 *   caller set never arrives. The value received is applied to both atime and mtime; the sentinel
 *   libfuse uses for UTIME_NOW/UTIME_OMIT (sec 0, nsec 2^30-1 / 2^30-2, i.e. 1073 ms) means "now"
 *   for both. So `touch` and `touch -d` are right; utimes with different atime and mtime
 *   (cp -p, tar x, rsync -t) set mtime to the atime; `touch -a`/`-m` touch both.
 * - No rename flags (RENAME_NOREPLACE/EXCHANGE give EINVAL in the kernel before us), no locks
 *   (POSIX/flock locks are local to the kernel), no fallocate, lseek(SEEK_DATA), copy_file_range.
 * - open's FOPEN_* reply flags cannot be returned: libfuse's defaults apply (page cache dropped at
 *   each open).
 */
import type { Logger } from 'pino';
import type FuseNative from 'fuse-native';
type FuseOps = FuseNative.FuseOps;
type FuseStat = FuseNative.FuseStat;
import { E, FsError, toErrno } from '../../errors.js';
import type { FileSystem } from '../../fs/filesystem.js';
import {
  FATTR_ATIME, FATTR_ATIME_NOW, FATTR_FH, FATTR_GID, FATTR_MODE, FATTR_MTIME, FATTR_MTIME_NOW, FATTR_SIZE, FATTR_UID,
  type Context, type DirEntry, type SetattrIn,
} from '../../fs/types.js';
import { O_CREAT, O_DIRECTORY, O_RDONLY, O_RDWR } from '../../sys/constants.js';
import { decodeDev32 } from '../../sys/stat.js';
import { LogOnce } from '../../log.js';
import { PathTable, isRepresentable, type Resolved } from './path-table.js';
import { attrToFuseStat, statArray, statfsToFuse } from './fuse-stat.js';

/** What one fuse-native fh number stands for. */
interface FhEntry {
  nodeid: bigint;
  fh: bigint;
  kind: 'file' | 'dir';
}

/** libfuse's utimens sentinel for UTIME_NOW/UTIME_OMIT after fuse-native's ms conversion. */
const UTIME_SENTINEL_MS = Math.floor(((1 << 30) - 1) / 1_000_000);
const FH_MAX = 0x7fff_ffff; // fuse-native reads the returned fh as int32 and treats 0 as "none"

export interface AdapterOptions {
  log: Logger;
  /** path table bound (entries, each holding one lookup); default 100_000 */
  maxPaths?: number;
}

type Code = (code: number) => void;

export class HighLevelAdapter {
  readonly table: PathTable;
  private readonly log: Logger;
  private readonly once: LogOnce;
  private readonly fhs = new Map<number, FhEntry>();
  private nextFh = 1;
  private unique = 0n;
  private readonly stats: Record<string, number> = {};
  namesSkipped = 0;

  constructor(private readonly fs: FileSystem, opts: AdapterOptions) {
    this.log = opts.log;
    this.once = new LogOnce(opts.log);
    this.table = new PathTable(fs, { max: opts.maxPaths, log: opts.log });
  }

  /** uid/gid 0: fuse-native exposes no request context (see the header). */
  private ctx(): Context {
    return { uid: 0, gid: 0, pid: 0, unique: ++this.unique };
  }

  counters(): Record<string, number> {
    return {
      ...this.stats,
      paths: this.table.size,
      pathLookups: this.table.lookups,
      pathForgets: this.table.forgets,
      pathEvictions: this.table.evictions,
      openHandles: this.fhs.size,
      namesSkipped: this.namesSkipped,
    };
  }

  /** Release every open handle and forget every cached path (after unmount). */
  async close(): Promise<void> {
    const ctx = this.ctx();
    for (const [, h] of this.fhs) {
      try {
        if (h.kind === 'file') await this.fs.release(ctx, h.nodeid, h.fh, 0, 0n, false);
        else await this.fs.releasedir(ctx, h.nodeid, h.fh);
      } catch (e) {
        this.log.debug({ err: e }, 'release at unmount failed');
      }
    }
    this.fhs.clear();
    this.table.clear();
  }

  // ------------------------------------------------------------------ plumbing

  /** Run one op: count it, trace at debug, answer `cb(result)` or `cb(-errno)`. */
  private run(op: string, cb: Code, fn: () => Promise<number>, arg?: string): void {
    this.stats[op] = (this.stats[op] ?? 0) + 1;
    fn().then(
      (r) => {
        if (this.log.isLevelEnabled('debug')) this.log.debug(`tx ${op} ${arg ?? ''} OK ${r}`);
        cb(r);
      },
      (e) => {
        const errno = toErrno(e, this.log);
        this.stats.errors = (this.stats.errors ?? 0) + 1;
        if (this.log.isLevelEnabled('debug')) this.log.debug(`tx ${op} ${arg ?? ''} -${errno}`);
        cb(-errno);
      },
    );
  }

  private async withPath<T>(path: string, fn: (r: Resolved) => Promise<T>): Promise<T> {
    const r = await this.table.resolve(this.ctx(), path);
    try {
      return await fn(r);
    } finally {
      r.release();
    }
  }

  private async withParent<T>(path: string, fn: (dir: Resolved, name: string, nameBuf: Buffer) => Promise<T>): Promise<T> {
    const { dir, name, nameBuf } = await this.table.resolveParent(this.ctx(), path);
    try {
      return await fn(dir, name, nameBuf);
    } finally {
      dir.release();
    }
  }

  private addFh(e: FhEntry): number {
    if (this.fhs.size >= FH_MAX) throw new FsError(E.EMFILE, 'fuse-native fh space exhausted');
    while (this.fhs.has(this.nextFh)) this.nextFh = this.nextFh >= FH_MAX ? 1 : this.nextFh + 1;
    const n = this.nextFh;
    this.nextFh = n >= FH_MAX ? 1 : n + 1;
    this.fhs.set(n, e);
    return n;
  }

  private fh(n: number, kind: 'file' | 'dir'): FhEntry {
    const h = this.fhs.get(n);
    if (!h || h.kind !== kind) throw new FsError(E.EBADF, 'unknown fuse-native fh');
    return h;
  }

  private setattr(nodeid: bigint, s: Partial<SetattrIn> & { valid: number }) {
    const zero = { sec: 0n, nsec: 0 };
    return this.fs.setattr(this.ctx(), nodeid, {
      fh: 0n, size: 0n, mode: 0, uid: 0, gid: 0, atime: zero, mtime: zero, ctime: zero, ...s,
    });
  }

  // ------------------------------------------------------------------ ops

  /** The fuse-native ops object. getxattr/listxattr/fgetattr are also dispatched raw by mount.ts. */
  ops(): FuseOps {
    return {
      init: (cb) => this.run('init', cb, async () => 0),
      access: (path, mode, cb) => this.run('access', cb, () => this.withPath(path, async (r) => {
        await this.fs.access(this.ctx(), r.nodeid, mode);
        return 0;
      }), path),
      statfs: (path, cb) => {
        let out: ReturnType<typeof statfsToFuse> | undefined;
        this.run('statfs', (c) => cb(c, out), () => this.withPath(path, async (r) => {
          out = statfsToFuse(await this.fs.statfs(this.ctx(), r.nodeid));
          return 0;
        }), path);
      },
      getattr: (path, cb) => {
        let out: FuseStat | undefined;
        this.run('getattr', (c) => cb(c, out), () => this.withPath(path, async (r) => {
          out = attrToFuseStat((await this.fs.getattr(this.ctx(), r.nodeid)).attr);
          return 0;
        }), path);
      },
      // present so that fuse-native registers the op; mount.ts dispatches it to fgetattrRaw
      fgetattr: (path, fd, cb) => this.fgetattr(path, fd, cb),
      flush: (path, fd, cb) => this.run('flush', cb, async () => {
        const h = this.fh(fd, 'file');
        await this.fs.flush(this.ctx(), h.nodeid, h.fh, 0n);
        return 0;
      }, path),
      fsync: (path, datasync, fd, cb) => this.run('fsync', cb, async () => {
        const h = this.fh(fd, 'file');
        await this.fs.fsync(this.ctx(), h.nodeid, h.fh, !!datasync);
        return 0;
      }, path),
      fsyncdir: (path, datasync, fd, cb) => this.run('fsyncdir', cb, async () => {
        const h = this.fh(fd, 'dir');
        await this.fs.fsyncdir(this.ctx(), h.nodeid, h.fh, !!datasync);
        return 0;
      }, path),
      readdir: (path, cb) => {
        let names: string[] = [];
        let stats: FuseStat[] = [];
        this.run('readdir', (c) => cb(c, names, stats), () => this.withPath(path, async (r) => {
          [names, stats] = await this.list(r.nodeid, path);
          return 0;
        }), path);
      },
      truncate: (path, size, cb) => this.run('truncate', cb, () => this.withPath(path, async (r) => {
        await this.setattr(r.nodeid, { valid: FATTR_SIZE, size: BigInt(size) });
        return 0;
      }), path),
      ftruncate: (path, fd, size, cb) => this.run('ftruncate', cb, async () => {
        const h = this.fh(fd, 'file');
        await this.setattr(h.nodeid, { valid: FATTR_SIZE | FATTR_FH, size: BigInt(size), fh: h.fh });
        return 0;
      }, path),
      utimens: (path, atime, _mtimeIsAtime, cb) => this.run('utimens', cb, () => this.withPath(path, async (r) => {
        await this.setattr(r.nodeid, utimensToSetattr(atime));
        return 0;
      }), path),
      readlink: (path, cb) => {
        let target = '';
        this.run('readlink', (c) => cb(c, target), () => this.withPath(path, async (r) => {
          target = (await this.fs.readlink(this.ctx(), r.nodeid)).toString('utf8');
          return 0;
        }), path);
      },
      chown: (path, uid, gid, cb) => this.run('chown', cb, () => this.withPath(path, async (r) => {
        // libfuse passes (uid_t)-1 for "unchanged"
        const valid = (uid !== 0xffff_ffff ? FATTR_UID : 0) | (gid !== 0xffff_ffff ? FATTR_GID : 0);
        if (valid) await this.setattr(r.nodeid, { valid, uid, gid });
        return 0;
      }), path),
      chmod: (path, mode, cb) => this.run('chmod', cb, () => this.withPath(path, async (r) => {
        await this.setattr(r.nodeid, { valid: FATTR_MODE, mode });
        return 0;
      }), path),
      mknod: (path, mode, dev, cb) => this.run('mknod', cb, () => this.withParent(path, async (dir, name, nb) => {
        this.table.add(dir, name, await this.fs.mknod(this.ctx(), dir.nodeid, nb, mode, decodeDev32(dev), 0));
        return 0;
      }), path),
      setxattr: (path, name, value, _position, flags, cb) => this.run('setxattr', cb, () => this.withPath(path, async (r) => {
        await this.fs.setxattr(this.ctx(), r.nodeid, Buffer.from(name, 'utf8'), value, flags);
        return 0;
      }), path),
      // present so that fuse-native registers the ops; mount.ts dispatches them to the raw methods
      getxattr: (_path, _name, _position, cb) => cb(-E.ENOSYS),
      listxattr: (_path, cb) => cb(-E.ENOSYS),
      removexattr: (path, name, cb) => this.run('removexattr', cb, () => this.withPath(path, async (r) => {
        await this.fs.removexattr(this.ctx(), r.nodeid, Buffer.from(name, 'utf8'));
        return 0;
      }), path),
      open: (path, flags, cb) => {
        let fd = 0;
        this.run('open', (c) => cb(c, fd), () => this.withPath(path, async (r) => {
          const o = await this.fs.open(this.ctx(), r.nodeid, flags);
          fd = this.addFh({ nodeid: r.nodeid, fh: o.fh, kind: 'file' });
          return 0;
        }), path);
      },
      // fuse-native passes the old fh where its README says flags: not used
      opendir: (path, _flags, cb) => {
        let fd = 0;
        this.run('opendir', (c) => cb(c, fd), () => this.withPath(path, async (r) => {
          const o = await this.fs.opendir(this.ctx(), r.nodeid, O_RDONLY | O_DIRECTORY);
          fd = this.addFh({ nodeid: r.nodeid, fh: o.fh, kind: 'dir' });
          return 0;
        }), path);
      },
      read: (path, fd, buf, len, pos, cb) => this.run('read', cb, async () => {
        const h = this.fh(fd, 'file');
        const data = await this.fs.read(this.ctx(), h.nodeid, h.fh, pos, len);
        // buf is libfuse's own buffer, valid until cb: copy before answering
        return data.copy(buf, 0, 0, Math.min(data.length, len));
      }, path),
      write: (path, fd, buf, len, pos, cb) => this.run('write', cb, async () => {
        const h = this.fh(fd, 'file');
        // buf stays valid until cb (mount.ts disables fuse-native's op timeout for this reason)
        return this.fs.write(this.ctx(), h.nodeid, h.fh, pos, buf.subarray(0, len), 0);
      }, path),
      release: (path, fd, cb) => this.run('release', cb, async () => {
        const h = this.fh(fd, 'file');
        this.fhs.delete(fd);
        await this.fs.release(this.ctx(), h.nodeid, h.fh, 0, 0n, false);
        return 0;
      }, path),
      releasedir: (path, fd, cb) => this.run('releasedir', cb, async () => {
        const h = this.fh(fd, 'dir');
        this.fhs.delete(fd);
        await this.fs.releasedir(this.ctx(), h.nodeid, h.fh);
        return 0;
      }, path),
      create: (path, mode, cb) => {
        let fd = 0;
        this.run('create', (c) => cb(c, fd), () => this.withParent(path, async (dir, name, nb) => {
          // no open flags from fuse-native: O_RDWR|O_CREAT (see the header)
          const c = await this.fs.create(this.ctx(), dir.nodeid, nb, mode, O_RDWR | O_CREAT, 0);
          this.table.add(dir, name, c.entry);
          fd = this.addFh({ nodeid: c.entry.nodeid, fh: c.open.fh, kind: 'file' });
          return 0;
        }), path);
      },
      unlink: (path, cb) => this.run('unlink', cb, () => this.withParent(path, async (dir, name, nb) => {
        await this.fs.unlink(this.ctx(), dir.nodeid, nb);
        this.table.remove(dir, name);
        return 0;
      }), path),
      rmdir: (path, cb) => this.run('rmdir', cb, () => this.withParent(path, async (dir, name, nb) => {
        await this.fs.rmdir(this.ctx(), dir.nodeid, nb);
        this.table.remove(dir, name);
        return 0;
      }), path),
      rename: (src, dest, cb) => this.run('rename', cb, () => this.withParent(src, (od, on, onb) =>
        this.withParent(dest, async (nd, nn, nnb) => {
          await this.fs.rename(this.ctx(), od.nodeid, onb, nd.nodeid, nnb, 0);
          this.table.rename(od, on, nd, nn);
          return 0;
        })), `${src} -> ${dest}`),
      link: (src, dest, cb) => this.run('link', cb, () => this.withPath(src, (r) =>
        this.withParent(dest, async (dir, name, nb) => {
          this.table.add(dir, name, await this.fs.link(this.ctx(), r.nodeid, dir.nodeid, nb));
          return 0;
        })), `${src} -> ${dest}`),
      symlink: (target, path, cb) => this.run('symlink', cb, () => this.withParent(path, async (dir, name, nb) => {
        this.table.add(dir, name, await this.fs.symlink(this.ctx(), Buffer.from(target, 'utf8'), dir.nodeid, nb));
        return 0;
      }), path),
      mkdir: (path, mode, cb) => this.run('mkdir', cb, () => this.withParent(path, async (dir, name, nb) => {
        this.table.add(dir, name, await this.fs.mkdir(this.ctx(), dir.nodeid, nb, mode, 0));
        return 0;
      }), path),
    };
  }

  /** fgetattr with the fh (fuse-native's own dispatcher would call getattr by path). */
  fgetattr(path: string, fd: number, cb: (code: number, st?: FuseStat) => void): void {
    let out: FuseStat | undefined;
    this.run('fgetattr', (c) => cb(c, out), async () => {
      const h = fd !== 0 ? this.fhs.get(fd) : undefined;
      if (h && h.kind === 'file') {
        out = attrToFuseStat((await this.fs.getattr(this.ctx(), h.nodeid, h.fh)).attr);
        return 0;
      }
      return this.withPath(path, async (r) => {
        out = attrToFuseStat((await this.fs.getattr(this.ctx(), r.nodeid)).attr);
        return 0;
      });
    }, path);
  }

  /** fgetattr as mount.ts dispatches it: answers with the encoded stat array. */
  fgetattrRaw(signal: (code: number, ...rest: unknown[]) => void, path: string, fd: number): void {
    this.fgetattr(path, fd, (code, st) => (code === 0 && st ? signal(0, statArray(st)) : signal(code)));
  }

  /**
   * getxattr with libfuse's buffer: its length is the caller's size (0 = size probe), so ERANGE
   * and the probe work (fuse-native's public op never sees the size).
   */
  getxattrRaw(signal: (code: number, ...rest: unknown[]) => void, path: string, name: string, valueBuf: Buffer): void {
    this.run('getxattr', (c) => signal(c, valueBuf.buffer), () => this.withPath(path, async (r) => {
      const rep = await this.fs.getxattr(this.ctx(), r.nodeid, Buffer.from(name, 'utf8'), valueBuf.length);
      if (rep instanceof FsError) throw rep;
      if ('size' in rep) return rep.size;
      if (rep.value.length > valueBuf.length) throw new FsError(E.ERANGE);
      return rep.value.copy(valueBuf);
    }), path);
  }

  /** listxattr with libfuse's buffer: raw NUL-separated names, size probe and ERANGE. */
  listxattrRaw(signal: (code: number, ...rest: unknown[]) => void, path: string, listBuf: Buffer): void {
    this.run('listxattr', (c) => signal(c, listBuf.buffer), () => this.withPath(path, async (r) => {
      const rep = await this.fs.listxattr(this.ctx(), r.nodeid, listBuf.length);
      if ('size' in rep) return rep.size;
      if (rep.value.length > listBuf.length) throw new FsError(E.ERANGE);
      return rep.value.copy(listBuf);
    }), path);
  }

  /** The whole directory: opendir, readdir to the end, releasedir (fuse-native wants it at once). */
  private async list(nodeid: bigint, path: string): Promise<[string[], FuseStat[]]> {
    const ctx = this.ctx();
    const names: string[] = [];
    const stats: FuseStat[] = [];
    const o = await this.fs.opendir(ctx, nodeid, O_RDONLY | O_DIRECTORY);
    try {
      let off = 0n;
      for (;;) {
        let added = 0;
        await this.fs.readdir(ctx, nodeid, o.fh, off, 1 << 16, (d: DirEntry) => {
          added++;
          off = d.off;
          if (!isRepresentable(d.name)) {
            this.namesSkipped++;
            this.once.warn(`names:${path}`, { dir: path, name: d.name.toString('hex') },
              'a name that is not representable as UTF-8 was left out of the listing (fuse-native frontend)');
            return true;
          }
          names.push(d.name.toString('utf8'));
          // only the type bits: libfuse turns them into d_type; attributes come from getattr
          stats.push({ mode: d.type << 12, uid: 0, gid: 0, size: 0, dev: 0, nlink: 1, ino: 0, rdev: 0, blksize: 0, blocks: 0, atime: 0, mtime: 0, ctime: 0 });
          return true;
        });
        if (added === 0) break;
      }
    } finally {
      await this.fs.releasedir(ctx, nodeid, o.fh).catch((e) => this.log.debug({ err: e }, 'releasedir failed'));
    }
    return [names, stats];
  }
}

/** utimens as fuse-native 2.2.6 delivers it (one time, see the header) -> setattr. */
export function utimensToSetattr(ms: number): Partial<SetattrIn> & { valid: number } {
  if (ms === UTIME_SENTINEL_MS) return { valid: FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW };
  const t = { sec: BigInt(Math.floor(ms / 1000)), nsec: (ms % 1000) * 1_000_000 };
  return { valid: FATTR_ATIME | FATTR_MTIME, atime: t, mtime: t };
}
