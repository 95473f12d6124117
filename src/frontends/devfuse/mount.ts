/**
 * Mount and unmount a FUSE filesystem served on /dev/fuse (go-fuse mount_linux.go, libfuse
 * mount.c). As root: open /dev/fuse and mount(2) with `fd=N,...`. Otherwise: fusermount3, which
 * mounts and hands the /dev/fuse fd back over a unix socket (_FUSE_COMMFD, SCM_RIGHTS).
 *
 * Never touch the mount (stat, readdir) from this process before the session serves it: the first
 * request waits for the INIT reply, which this same thread would have to send. Facts about the
 * mount are read from /proc/self/mountinfo instead.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import type { Logger } from 'pino';
import { MNT_DETACH, MS_NODEV, MS_NOSUID, MS_RDONLY, O_CLOEXEC, O_RDWR } from '../../sys/constants.js';
import { sys } from '../../sys/syscalls.js';

export const DEV_FUSE = '/dev/fuse';
const FSTYPE = 'fuse.handlefs';
const FUSECTL = '/sys/fs/fuse/connections';

export interface MountRequest {
  /** fsname shown in /proc/mounts: the shared directory */
  source: string;
  /** absolute mountpoint (a realpath: mountinfo is matched against it) */
  mountpoint: string;
  allowOther: boolean;
  defaultPermissions: boolean;
  readonly: boolean;
}

export interface MountInfoEntry {
  /** st_dev of the mount; its minor is the /sys/fs/fuse/connections id */
  major: number;
  minor: number;
  mountpoint: string;
  fstype: string;
  source: string;
}

/** Why mounting failed, as one operator line (set-up error, exit 1). */
export class MountError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MountError';
  }
}

const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The topmost mount at `mountpoint` in /proc/self/mountinfo, or null. */
export function findMount(mountpoint: string): MountInfoEntry | null {
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return null;
  }
  let found: MountInfoEntry | null = null;
  for (const line of text.split('\n')) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superopts
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const a = line.slice(0, sep).split(' ');
    const b = line.slice(sep + 3).split(' ');
    if (a.length < 5 || b.length < 2) continue;
    if (unescape(a[4]!) !== mountpoint) continue;
    const [maj, min] = a[2]!.split(':').map(Number);
    found = { major: maj!, minor: min!, mountpoint, fstype: b[0]!, source: unescape(b[1]!) }; // later lines stack on top
  }
  return found;
}

/** A live FUSE mount with its /dev/fuse fd. */
export class FuseMount {
  private unmounted = false;
  constructor(
    readonly fd: number,
    readonly mountpoint: string,
    readonly method: 'mount2' | 'fusermount3',
    /** connection id (minor of st_dev) when known, for /sys/fs/fuse/connections/<id>/abort */
    readonly connection: number | null,
    private readonly log: Logger,
  ) {}

  /** Whether our mount is still at the mountpoint (by connection id when known). */
  isMounted(): boolean {
    const m = findMount(this.mountpoint);
    if (!m || !m.fstype.startsWith('fuse')) return false;
    return this.connection === null || m.minor === this.connection;
  }

  /**
   * Unmount: umount2 (as root), falling back to a lazy detach when busy; fusermount3 -u -z
   * otherwise. A plain FUSE unmount does not wait for the server (only fuseblk sends DESTROY
   * synchronously), so calling umount2 from the serving thread is safe; the readers then see ENODEV.
   * 'busy': detached lazily, but files are still open on it, so the connection (and the session)
   * lives on until they are closed or the connection is aborted.
   */
  async unmount(): Promise<'unmounted' | 'busy' | 'failed'> {
    if (this.unmounted || !this.isMounted()) {
      this.unmounted = true;
      return 'unmounted';
    }
    if (this.method === 'mount2') {
      const target = Buffer.from(this.mountpoint);
      try {
        sys.umount2(target, 0);
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (code === 'EINVAL' && !this.isMounted()) {
          this.unmounted = true;
          return 'unmounted';
        }
        try {
          sys.umount2(target, MNT_DETACH);
        } catch (e2) {
          this.log.error({ code: (e2 as { code?: string }).code }, `umount ${this.mountpoint} failed (${code}), and so did a lazy umount`);
          return 'failed';
        }
        this.unmounted = true;
        return code === 'EBUSY' ? 'busy' : 'unmounted';
      }
    } else if (!(await run('fusermount3', ['-u', '-z', '--', this.mountpoint]))) {
      this.log.error(`fusermount3 -u -z ${this.mountpoint} failed`);
      return 'failed';
    }
    this.unmounted = true;
    return 'unmounted';
  }

  /**
   * Abort the connection (/sys/fs/fuse/connections/<id>/abort): every pending and future request
   * fails with ENOTCONN and every read on /dev/fuse with ENODEV. Returns false when that is not
   * possible: fusectl not mounted, or (in a user namespace other than the initial one) the kernel
   * creates no control files for the connection at all.
   */
  abort(): boolean {
    if (this.connection === null) return false;
    try {
      fs.writeFileSync(`${FUSECTL}/${this.connection}/abort`, '1');
      return true;
    } catch (e) {
      this.log.debug({ code: (e as { code?: string }).code }, `cannot abort fuse connection ${this.connection}`);
      return false;
    }
  }
}

/** Open /dev/fuse read-write, close-on-exec. */
export function openDevFuse(path = DEV_FUSE): number {
  try {
    return fs.openSync(path, O_RDWR | O_CLOEXEC);
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new MountError(`cannot open ${path} (${code}); load the fuse module (modprobe fuse) or, in a container, pass --device /dev/fuse`);
  }
}

/** The mount(2) data string. Client input never reaches it: only numbers and fixed words. */
export function mountData(fd: number, r: MountRequest, uid: number, gid: number): string {
  const parts = [`fd=${fd}`, 'rootmode=40000', `user_id=${uid}`, `group_id=${gid}`];
  if (r.defaultPermissions) parts.push('default_permissions');
  if (r.allowOther) parts.push('allow_other');
  return parts.join(',');
}

/** Mount `r` and return the live mount. Throws MountError with an operator line. */
export async function mountFuse(r: MountRequest, log: Logger, devFuse = DEV_FUSE): Promise<FuseMount> {
  if (isRoot()) return mountAsRoot(r, log, devFuse);
  return mountWithFusermount(r, log);
}

function mountAsRoot(r: MountRequest, log: Logger, devFuse: string): FuseMount {
  const fd = openDevFuse(devFuse);
  const data = Buffer.from(mountData(fd, r, process.getuid!(), process.getgid!()));
  const flags = MS_NOSUID | MS_NODEV | (r.readonly ? MS_RDONLY : 0);
  const src = Buffer.from(r.source);
  const target = Buffer.from(r.mountpoint);
  try {
    try {
      sys.mount(src, target, Buffer.from(FSTYPE), flags, data);
    } catch (e) {
      // kernels without subtype support know only "fuse"
      if ((e as { code?: string }).code !== 'ENODEV') throw e;
      sys.mount(src, target, Buffer.from('fuse'), flags, data);
    }
  } catch (e) {
    fs.closeSync(fd);
    const code = (e as { code?: string }).code;
    const hint = code === 'EPERM' ? '; mounting needs CAP_SYS_ADMIN' : '';
    throw new MountError(`mount ${r.mountpoint} failed (${code})${hint}`);
  }
  const m = findMount(r.mountpoint);
  if (!m) log.warn(`mounted ${r.mountpoint} but it is not in /proc/self/mountinfo; unmount-by-abort is unavailable`);
  return new FuseMount(fd, r.mountpoint, 'mount2', m ? m.minor : null, log);
}

/**
 * Unprivileged mount through fusermount3 (libfuse's protocol): fusermount3 mounts, then sends the
 * /dev/fuse fd over the unix socket named by _FUSE_COMMFD with SCM_RIGHTS (the addon's recvFd).
 * The options are ours: fixed words and numbers only, never client input.
 */
async function mountWithFusermount(r: MountRequest, log: Logger): Promise<FuseMount> {
  const opts = ['nosuid', 'nodev', `fsname=${r.source.replace(/[,\\]/g, '_')}`, `subtype=handlefs`];
  if (r.defaultPermissions) opts.push('default_permissions');
  if (r.allowOther) opts.push('allow_other');
  if (r.readonly) opts.push('ro');
  const [mine, theirs] = sys.socketpairUnix();
  let stderr = '';
  let fd: number;
  try {
    const child = spawn('fusermount3', ['-o', opts.join(','), '--', r.mountpoint], {
      // fd 3 of the child is our socket's other end; _FUSE_COMMFD names it
      stdio: ['ignore', 'ignore', 'pipe', theirs],
      env: { ...process.env, _FUSE_COMMFD: '3' },
    });
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    sys.close(theirs);
    // (fusermount3 missing: 'error' instead of 'exit'; the CLI's preflight has said so already)
    const exited = new Promise<number | null>((resolve) => {
      child.on('exit', (code) => resolve(code));
      child.on('error', () => resolve(null));
    });
    try {
      // blocks until fusermount3 sends the fd, or exits (EOF: ECONNRESET)
      fd = sys.recvFd(mine);
    } catch {
      const code = await exited;
      throw new MountError(`fusermount3 could not mount ${r.mountpoint} (exit ${code}): ${stderr.trim().split('\n')[0] ?? ''}`);
    }
    await exited;
  } finally {
    try {
      sys.close(mine);
    } catch {
      /* closed */
    }
  }
  const m = findMount(r.mountpoint);
  return new FuseMount(fd, r.mountpoint, 'fusermount3', m ? m.minor : null, log);
}

function run(cmd: string, args: string[]): Promise<boolean> {
  // async on purpose: the event loop must keep serving requests the command may cause
  return new Promise((resolve) => {
    const c = spawn(cmd, args, { stdio: 'ignore' });
    c.on('error', () => resolve(false));
    c.on('exit', (code) => resolve(code === 0));
  });
}

/** FUSE passthrough backing files on this connection (FUSE_DEV_IOC_BACKING_OPEN/CLOSE on the device fd). */
export function backingRegistry(devFd: number): { open(fd: number): number; close(id: number): void } {
  return {
    open: (fd) => sys.fuseBackingOpen(devFd, fd, 0),
    close: (id) => sys.fuseBackingClose(devFd, id),
  };
}
