/**
 * Lifecycle of the fuse-native (libfuse2 high-level) frontend: fs.init, mount with our option
 * string, unmount, adapter close (handles released, path-table lookups forgotten), fs.destroy.
 *
 * Mount options (libfuse2 -o list, fuse-native has no escape hatch for extra options, so
 * HandlefsFuse overrides its `_fuseOptions`):
 * - hard_remove: an unlinked (or renamed-over) file that is still open is removed at once instead
 *   of being renamed to `.fuse_hidden*` in the shared directory. The price, a libfuse2 limit:
 *   its node loses its path, and fuse-native (no nullpath_ok) gets no path-less calls, so read,
 *   write, fstat, ftruncate and fsync on that open fd answer ENOENT; close/release still reach
 *   us (path "-") and free the core's handle. (Without hard_remove libfuse would rename the file
 *   to .fuse_hidden* on the host and delete it at the last close.)
 * - big_writes: writes up to 128 KiB per request instead of 4 KiB.
 * - attr_timeout/entry_timeout: the core's attribute timeout (its cache policy); negative_timeout=0.
 * - default_permissions (unless `defaultPermissions: false`): fuse-native gives no caller
 *   credentials, so the kernel must do the permission checks; allow_other on request;
 *   fsname (escaped), subtype=handlefs.
 * No use_ino: fuse-native carries 32-bit inode numbers, and truncated ones could collide.
 *
 * fuse-native's per-op timeout (15 s by default, answering ETIMEDOUT while the op still runs) is
 * disabled: a write whose buffer libfuse reused after a timeout would write garbage.
 *
 * The server must not touch its own mount from its own process: every op is answered on this
 * event loop, so a synchronous fs call on the mount here deadlocks.
 */
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import type { Logger } from 'pino';
import type FuseType from 'fuse-native';
import { ROOT_ID, type FileSystem } from '../../fs/filesystem.js';
import { HighLevelAdapter } from './adapter.js';

export interface HighLevelMountOptions {
  allowOther?: boolean;
  /** default true: the kernel checks permissions (fuse-native passes no caller uid/gid) */
  defaultPermissions?: boolean;
  fsname?: string;
  log: Logger;
  /** libfuse's own request trace on stderr */
  debug?: boolean;
  /** path-table bound (entries, each holding one lookup); default 100_000 */
  maxPaths?: number;
  /** how long to wait for the kernel's INIT after mounting; default 10 s */
  mountTimeoutMs?: number;
}

export interface HighLevelMount {
  unmount(): Promise<void>;
  counters(): Record<string, number>;
}

const MAX_OPTS = 1000; // fuse-native copies the option string into 1024 bytes

/** Escape a value for libfuse's comma-separated -o list. */
function optValue(v: string): string {
  return v.replace(/[\\,]/g, (c) => '\\' + c);
}

export function buildOptions(o: HighLevelMountOptions, attrTimeoutS: number): string {
  const list = ['hard_remove', 'big_writes', 'subtype=handlefs', 'negative_timeout=0'];
  list.push(`attr_timeout=${attrTimeoutS}`, `entry_timeout=${attrTimeoutS}`);
  if (o.defaultPermissions !== false) list.push('default_permissions');
  if (o.allowOther) list.push('allow_other');
  if (o.debug) list.push('debug');
  let s = list.join(',');
  const fsname = o.fsname ? `fsname=${optValue(o.fsname)}` : 'fsname=handlefs';
  s += ',' + (s.length + fsname.length + 3 <= MAX_OPTS ? fsname : 'fsname=handlefs');
  return '-o' + s;
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, _out, stderr) => {
      if (err) reject(Object.assign(err, { stderr: String(stderr).trim() }));
      else resolve();
    });
  });
}

export async function mountHighLevel(fs: FileSystem, mountpoint: string, opts: HighLevelMountOptions): Promise<HighLevelMount> {
  const log = opts.log.child({ component: 'highlevel' });
  const require = createRequire(import.meta.url);
  // loaded here, not at import: it needs libfuse.so.2, which only this frontend requires
  const Fuse = require('fuse-native') as typeof FuseType;
  const binding = require('node-gyp-build')(path.dirname(require.resolve('fuse-native'))) as {
    fuse_native_unmount(mnt: string, thread: Buffer): void;
  };

  await fs.init({ writeback: false, killPrivV2: false, passthrough: false });
  const mnt = path.resolve(mountpoint);
  let attrTimeoutS = 1;
  try {
    const root = await fs.getattr({ uid: 0, gid: 0, pid: 0, unique: 0n }, ROOT_ID);
    attrTimeoutS = Math.max(0, root.attrTimeoutMs) / 1000;
  } catch (e) {
    await fs.destroy();
    throw e;
  }
  const adapter = new HighLevelAdapter(fs, { log, maxPaths: opts.maxPaths });
  const optString = buildOptions(opts, attrTimeoutS);

  class HandlefsFuse extends Fuse {
    override _fuseOptions(): string {
      return optString;
    }
    // fuse-native 2.2.6 calls ops.getattr from fgetattr, dropping the fh: use it
    override _op_fgetattr(signal: (code: number, ...r: unknown[]) => void, p: string, fd: number): void {
      adapter.fgetattrRaw(signal, p, fd);
    }
    // its public getxattr/listxattr never see the caller's buffer size (no ERANGE, no probe)
    override _op_getxattr(signal: (code: number, ...r: unknown[]) => void, p: string, name: string, buf: Buffer): void {
      adapter.getxattrRaw(signal, p, name, buf);
    }
    override _op_listxattr(signal: (code: number, ...r: unknown[]) => void, p: string, buf: Buffer): void {
      adapter.listxattrRaw(signal, p, buf);
    }
  }

  const fuse = new HandlefsFuse(mnt, adapter.ops(), { timeout: false, force: false, mkdir: false });
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no FUSE init from the kernel on ${mnt} within the timeout`)), opts.mountTimeoutMs ?? 10_000);
      fuse.mount((err) => {
        clearTimeout(t);
        if (err) reject(err);
        else resolve();
      });
    });
  } catch (e) {
    await adapter.close();
    await fs.destroy();
    throw e;
  }
  log.info({ mountpoint: mnt, options: optString }, 'mounted (fuse-native)');

  let done: Promise<void> | null = null;
  async function unmount(): Promise<void> {
    // non-lazy first (fusermount, then umount(8) as root); lazy only when the mount is busy
    try {
      await run('fusermount', ['-u', mnt], 5000);
    } catch (e1) {
      try {
        await run('umount', [mnt], 5000);
      } catch (e2) {
        log.warn({ mountpoint: mnt, err: String((e1 as { stderr?: string }).stderr || e1) },
          'unmount failed; detaching lazily (the mount goes once its last user closes)');
        await run('fusermount', ['-uz', mnt], 5000).catch(() => run('umount', ['-l', mnt], 5000)).catch((e3) => {
          log.error({ err: e3, mountpoint: mnt }, 'lazy unmount failed too');
        });
      }
    }
    // lets the event loop end: fuse-native's unmount only unrefs its async handle
    try {
      binding.fuse_native_unmount(mnt, (fuse as unknown as { _thread: Buffer })._thread);
    } catch (e) {
      log.debug({ err: e }, 'fuse_native_unmount');
    }
    await adapter.close();
    await fs.destroy();
    log.info({ mountpoint: mnt }, 'unmounted (fuse-native)');
  }

  return {
    unmount(): Promise<void> {
      done ??= unmount();
      return done;
    },
    counters: () => adapter.counters(),
  };
}
