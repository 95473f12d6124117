/**
 * A real virtio-fs guest for the tests and the guest benchmark: a busybox-static initramfs with the
 * virtio-fs module chain of the newest installed Debian cloud kernel, booted by QEMU (TCG) against a
 * vhost-user-fs back-end (C virtiofsd, or handlefs' `virtiofsd` command line). The guest's /init
 * mounts the share at /mnt, runs the caller's script and prints its output on the serial console
 * between markers; the host reads it from QEMU's stdout.
 *
 * TCG by default; HANDLEFS_GUEST_ACCEL=kvm on a host with real KVM. HANDLEFS_GUEST_CACHE moves the
 * cache of built artefacts (default /var/cache/handlefs-guest).
 *
 * Everything is bounded: QEMU runs under a hard timeout and is killed by pid; a back-end is
 * started by argv, waited for (its socket) with a deadline and stopped by pid.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { REPO } from './repo.js';
import { killPid } from './run.js';

/** the virtio-fs chain in modules.dep order (each needs only those before it) */
export const GUEST_MODULES = ['virtio_ring', 'virtio', 'virtio_pci_legacy_dev', 'virtio_pci_modern_dev', 'virtio_pci', 'fuse', 'virtiofs'] as const;
export const HELPER_SOURCE = join(REPO, 'test', 'guest', 'guest-check.c');
export const QEMU = 'qemu-system-x86_64';
export const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
const BUSYBOX = '/bin/busybox';
const BEGIN = '@@HANDLEFS-GUEST-BEGIN@@';
/** pids of the QEMUs and back-ends started here that are still running */
const live = new Set<number>();

/** SIGKILL every QEMU and back-end started here that still runs (by pid): for a signal handler. */
export function killLiveChildren(): void {
  for (const pid of live) killPid(pid, 'SIGKILL');
}

function track(child: ChildProcess): void {
  if (!child.pid) return;
  const pid = child.pid;
  live.add(pid);
  child.on('exit', () => live.delete(pid));
}

const END = '@@HANDLEFS-GUEST-END@@';
const FAIL = '@@HANDLEFS-GUEST-FAIL@@';

/** What is missing to boot a guest here (empty: nothing): for a test's skip reason. */
export function guestMissing(): string[] {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root');
  const has = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
  if (!has(QEMU)) missing.push(QEMU);
  if (!has('gcc')) missing.push('gcc');
  // a dynamic busybox (package busybox) names its program interpreter; busybox-static does not
  if (!fs.existsSync(BUSYBOX) || fs.readFileSync(BUSYBOX).includes('/lib64/ld-linux')) missing.push('busybox-static');
  try {
    guestKernel();
  } catch (e) {
    missing.push((e as Error).message);
  }
  return missing;
}

export interface GuestKernel {
  /** /boot/vmlinuz-<release> */
  kernel: string;
  release: string;
  /** the .ko file of each GUEST_MODULES entry, in order (possibly .ko.xz / .ko.zst) */
  modules: string[];
}

/** The newest /boot/vmlinuz-*-cloud-amd64 and its virtio-fs modules (from its modules.dep). */
export function guestKernel(): GuestKernel {
  const releases = fs
    .readdirSync('/boot')
    .filter((f) => /^vmlinuz-.*-cloud-amd64$/.test(f))
    .map((f) => f.slice('vmlinuz-'.length))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const release = releases.at(-1);
  if (!release) throw new Error('no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64)');
  const dir = `/lib/modules/${release}`;
  const dep = fs.readFileSync(join(dir, 'modules.dep'), 'utf8');
  const modules = GUEST_MODULES.map((m) => {
    const hit = dep.split('\n').map((l) => l.split(':')[0]!).find((p) => new RegExp(`/${m}\\.ko(\\.xz|\\.zst|\\.gz)?$`).test(p));
    if (!hit) throw new Error(`module ${m} not in ${dir}/modules.dep`);
    return join(dir, hit);
  });
  return { kernel: `/boot/vmlinuz-${release}`, release, modules };
}

/** Where built artefacts are kept, keyed by content hash: /var/cache/handlefs-guest, else /tmp. */
export function cacheDir(): string {
  for (const d of [process.env.HANDLEFS_GUEST_CACHE, '/var/cache/handlefs-guest', join(os.tmpdir(), 'handlefs-guest-cache')]) {
    if (!d) continue;
    try {
      fs.mkdirSync(d, { recursive: true });
      fs.accessSync(d, fs.constants.W_OK);
      return d;
    } catch {
      /* next */
    }
  }
  throw new Error('no writable cache directory for the guest artefacts');
}

const sha = (...parts: (string | Buffer)[]): string => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex').slice(0, 24);
};

/** Write `file` by rename, so that a concurrent builder never sees half of it. */
function writeAtomic(file: string, data: Buffer | string, mode = 0o644): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data, { mode });
  fs.renameSync(tmp, file);
}

/** test/guest/guest-check.c compiled static (cached by the source and the compiler): its path. */
export function buildHelper(): string {
  const src = fs.readFileSync(HELPER_SOURCE);
  const gcc = spawnSync('gcc', ['--version'], { encoding: 'utf8' }).stdout ?? '';
  const out = join(cacheDir(), `guest-check-${sha(src, gcc)}`);
  if (fs.existsSync(out)) return out;
  const tmp = `${out}.${process.pid}.tmp`;
  const r = spawnSync('gcc', ['-static', '-O2', '-Wall', '-o', tmp, HELPER_SOURCE], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`gcc -static ${HELPER_SOURCE} failed: ${r.stderr}${r.error ?? ''}`);
  fs.renameSync(tmp, out);
  return out;
}

// ------------------------------------------------------------------ cpio (newc)

export interface CpioEntry {
  /** without a leading slash */
  path: string;
  /** full st_mode (type and permissions) */
  mode: number;
  data?: Buffer;
  /** device numbers, for a device node */
  rdev?: [number, number];
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFCHR = 0o020000;
const S_IFLNK = 0o120000;

/** A newc cpio archive of `entries` with its trailer, padded to 512 bytes (archives concatenate). */
export function cpio(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let len = 0;
  const push = (b: Buffer): void => {
    parts.push(b);
    len += b.length;
  };
  const pad = (n: number): void => {
    if (len % n) push(Buffer.alloc(n - (len % n)));
  };
  const all = [...entries, { path: 'TRAILER!!!', mode: 0 }];
  all.forEach((e, i) => {
    const data = e.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${e.path}\0`);
    const [rmaj, rmin] = e.rdev ?? [0, 0];
    const nlink = (e.mode & 0o170000) === S_IFDIR ? 2 : 1;
    const fields = [i + 1, e.mode, 0, 0, nlink, 0, data.length, 0, 0, rmaj, rmin, name.length, 0];
    push(Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`));
    push(name);
    pad(4);
    push(data);
    pad(4);
  });
  pad(512);
  return Buffer.concat(parts, len);
}

/** A module file's bytes, decompressed when it is .ko.xz / .ko.zst / .ko.gz (busybox insmod wants plain ELF). */
function moduleBytes(path: string): Buffer {
  const tool = path.endsWith('.xz') ? ['xz', '-dc'] : path.endsWith('.zst') ? ['zstd', '-dcq'] : path.endsWith('.gz') ? ['gzip', '-dc'] : null;
  if (!tool) return fs.readFileSync(path);
  const r = spawnSync(tool[0]!, [...tool.slice(1), path], { maxBuffer: 64 << 20, timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${tool.join(' ')} ${path} failed: ${r.stderr}`);
  return r.stdout;
}

/*
 * The guest's /init. /guest.env (the per-boot archive) sets TAG; /test.sh is the caller's script,
 * run with the share at /mnt and /scratch a guest tmpfs. The exit status follows the END marker.
 */
const INIT = `#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /scratch /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /scratch
exec </dev/console >/dev/console 2>&1
fail() { echo "${FAIL} $*"; poweroff -f; sleep 10; }
. /guest.env
for m in ${GUEST_MODULES.join(' ')}; do insmod /lib/modules/$m.ko || fail "insmod $m"; done
mount -t virtiofs "$TAG" /mnt || fail "mount -t virtiofs $TAG"
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
echo ${BEGIN}
cd /mnt && sh /test.sh
rc=$?
cd /
echo "${END} $rc"
umount /mnt 2>/dev/null
poweroff -f
sleep 10
`;

/** The part of every initramfs that does not change per boot (cached): its path. */
export function baseInitramfs(): string {
  const k = guestKernel();
  const helper = fs.readFileSync(buildHelper());
  const busybox = fs.readFileSync(BUSYBOX);
  const mods = k.modules.map(moduleBytes);
  const out = join(cacheDir(), `base-${sha(INIT, busybox, helper, k.release, ...mods)}.cpio`);
  if (fs.existsSync(out)) return out;
  const dir = (path: string): CpioEntry => ({ path, mode: S_IFDIR | 0o755 });
  const entries: CpioEntry[] = [
    dir('bin'),
    dir('dev'),
    dir('lib'),
    dir('lib/modules'),
    { path: 'dev/console', mode: S_IFCHR | 0o600, rdev: [5, 1] },
    { path: 'bin/busybox', mode: S_IFREG | 0o755, data: busybox },
    { path: 'bin/sh', mode: S_IFLNK | 0o777, data: Buffer.from('busybox') },
    { path: 'bin/guest-check', mode: S_IFREG | 0o755, data: helper },
    { path: 'init', mode: S_IFREG | 0o755, data: Buffer.from(INIT) },
    ...GUEST_MODULES.map((m, i): CpioEntry => ({ path: `lib/modules/${m}.ko`, mode: S_IFREG | 0o644, data: mods[i]! })),
  ];
  writeAtomic(out, cpio(entries));
  return out;
}

// ------------------------------------------------------------------ booting

export interface GuestFile {
  /** a path in the guest, e.g. '/spec' */
  path: string;
  data: Buffer | string;
  mode?: number;
}

export interface BootOptions {
  /** the back-end's vhost-user socket (it must be listening) */
  socketPath: string;
  /** a busybox sh script, run in /mnt (the share); helper: /bin/guest-check */
  script: string;
  /** more files for the guest's root (parent directories must exist: /, /bin, /lib, /dev) */
  files?: GuestFile[];
  /** QEMU is killed after this long (default 120 s) */
  timeoutMs?: number;
  /** guest memory (default 1024) */
  memMiB?: number;
  /** the virtio-fs tag (default 'handlefs') */
  tag?: string;
  /** request queues of the device (QEMU's num-request-queues, default 1) */
  requestQueues?: number;
  /** a line of the script's output as it arrives (progress) */
  onLine?: (line: string) => void;
}

export interface BootResult {
  /** the script's output lines (between the markers, \r stripped) */
  lines: string[];
  /** the script's exit status */
  status: number;
  /** the whole serial console */
  console: string;
  /** ms from QEMU's start to: the script's start (the share mounted), its end, QEMU's exit */
  ms: { mounted: number; scriptEnd: number; exit: number };
}

export class GuestError extends Error {}

const tail = (s: string, n = 3000): string => (s.length > n ? `...${s.slice(-n)}` : s);

/**
 * Boot a guest against the back-end at `socketPath`, run `script`, power off. Rejects (GuestError,
 * with the console's tail) on a timeout, a guest set-up failure or a QEMU that ends without the
 * script's end marker; QEMU is dead by pid in every case when this settles.
 */
export async function bootGuest(opts: BootOptions): Promise<BootResult> {
  const k = guestKernel();
  const mem = opts.memMiB ?? 1024;
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const perBoot = cpio([
    { path: 'guest.env', mode: S_IFREG | 0o644, data: Buffer.from(`TAG='${opts.tag ?? 'handlefs'}'\n`) },
    { path: 'test.sh', mode: S_IFREG | 0o755, data: Buffer.from(opts.script) },
    ...(opts.files ?? []).map((f): CpioEntry => ({ path: f.path.replace(/^\/+/, ''), mode: S_IFREG | (f.mode ?? 0o644), data: Buffer.from(f.data) })),
  ]);
  const initrd = join(fs.mkdtempSync(join(os.tmpdir(), 'handlefs-guest-')), 'initrd.cpio');
  fs.writeFileSync(initrd, Buffer.concat([fs.readFileSync(baseInitramfs()), perBoot]));
  const args = [
    '-accel', process.env.HANDLEFS_GUEST_ACCEL ?? 'tcg,thread=multi',
    '-smp', '1',
    '-m', `${mem}M`,
    '-object', `memory-backend-memfd,id=mem,size=${mem}M,share=on`,
    '-numa', 'node,memdev=mem',
    '-chardev', `socket,id=char0,path=${opts.socketPath}`,
    '-device', `vhost-user-fs-pci,chardev=char0,tag=${opts.tag ?? 'handlefs'}${opts.requestQueues ? `,num-request-queues=${opts.requestQueues}` : ''}`,
    '-kernel', k.kernel,
    '-initrd', initrd,
    '-append', 'console=ttyS0 quiet panic=-1',
    '-display', 'none', '-monitor', 'none', '-serial', 'stdio', '-no-reboot',
  ];
  const t0 = performance.now();
  const ms = { mounted: NaN, scriptEnd: NaN, exit: NaN };
  let qemu: ChildProcess | undefined;
  try {
    qemu = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    track(qemu);
    const child = qemu;
    let out = '';
    let err = '';
    let pending = '';
    let inScript = false;
    let status: number | null = null;
    let failure: string | null = null;
    const lines: string[] = [];
    child.stdout!.setEncoding('latin1').on('data', (d: string) => {
      out += d;
      pending += d;
      let nl;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl).replace(/\r/g, '');
        pending = pending.slice(nl + 1);
        if (line === BEGIN) {
          inScript = true;
          ms.mounted = performance.now() - t0;
        } else if (line.startsWith(END)) {
          inScript = false;
          status = Number(line.slice(END.length).trim());
          ms.scriptEnd = performance.now() - t0;
        } else if (line.startsWith(FAIL)) failure = line.slice(FAIL.length).trim();
        else if (inScript) {
          lines.push(line);
          opts.onLine?.(line);
        }
      }
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      if (err.length < 8192) err += d;
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; timedOut: boolean }>((settle) => {
      let timedOut = false;
      const t = setTimeout(() => {
        timedOut = true;
        if (child.pid) killPid(child.pid, 'SIGKILL');
      }, timeoutMs);
      child.on('error', (e) => {
        err += String(e);
      });
      child.on('close', (code, signal) => {
        clearTimeout(t);
        settle({ code, signal, timedOut });
      });
    });
    const r = await exited;
    ms.exit = performance.now() - t0;
    const what = (why: string): GuestError =>
      new GuestError(`guest: ${why} (qemu code ${r.code} signal ${r.signal}); qemu stderr: ${err.trim() || '-'}\nconsole tail:\n${tail(out.replace(/\r/g, ''))}`);
    if (r.timedOut) throw what(`timed out after ${timeoutMs} ms`);
    if (failure) throw what(`set-up failed: ${failure}`);
    if (status === null) throw what('ended without the script end marker');
    return { lines, status, console: out.replace(/\r/g, ''), ms };
  } finally {
    if (qemu?.pid && qemu.exitCode === null && qemu.signalCode === null) killPid(qemu.pid, 'SIGKILL');
    fs.rmSync(join(initrd, '..'), { recursive: true, force: true });
  }
}

/** `count` small files in directories of 1000 below `dir`: the tree of the fd-exhaustion walks. */
export function manyFiles(dir: string, count: number): void {
  for (let d = 0; d * 1000 < count; d++) {
    const sub = join(dir, `d${d}`);
    fs.mkdirSync(sub, { recursive: true });
    for (let i = d * 1000; i < Math.min(count, (d + 1) * 1000); i++) fs.writeFileSync(join(sub, `f${i}`), `file ${i}\n`);
  }
}

/** A WALK line of `guest-check walk`, parsed (null when the guest printed none). */
export interface Walk {
  entries: number;
  files: number;
  read: number;
  errors: number;
  first: string;
}

export function parseWalk(lines: readonly string[]): Walk | null {
  const l = lines.find((x) => x.startsWith('WALK '));
  if (!l) return null;
  const f = Object.fromEntries(l.slice(5).split(' ').map((kv) => kv.split('=') as [string, string]));
  return { entries: Number(f.entries), files: Number(f.files), read: Number(f.read), errors: Number(f.errors), first: f.first ?? '' };
}

// ------------------------------------------------------------------ back-ends

export interface BackendParams {
  socketPath: string;
  sharedDir: string;
  /** RLIMIT_NOFILE the back-end must live with (prlimit); unset: inherited */
  nofile?: number;
}

/** A vhost-user-fs back-end: how to start it, and what it is expected to manage. */
export interface Backend {
  name: string;
  argv(p: BackendParams): string[];
  /** open_by_handle_at in the guest works after the inode was evicted (FUSE_EXPORT_SUPPORT) */
  handlesSurviveEviction: boolean;
  /** the guest can walk more files than the back-end's RLIMIT_NOFILE */
  boundedFds: boolean;
  /** guest-check cases it is known to fail, each with what its CASE line must say */
  knownFailures: Record<string, RegExp>;
}

/**
 * Debian's C virtiofsd. It raises its own RLIMIT_NOFILE unless told otherwise (--rlimit-nofile),
 * so the limit under test is passed to it as well. xattrs are off by default there and turned on;
 * its remote POSIX locks (-o posix_lock) stay off: with them an OFD lock outlives the close of its fd.
 */
export const virtiofsdBackend: Backend = {
  name: 'virtiofsd',
  argv: (p) => [
    VIRTIOFSD,
    `--socket-path=${p.socketPath}`,
    '-o', `source=${p.sharedDir}`,
    '-o', 'cache=auto',
    '-o', 'xattr',
    ...(p.nofile ? [`--rlimit-nofile=${p.nofile}`] : []),
  ],
  handlesSurviveEviction: false,
  boundedFds: false,
  // FUSE_TMPFILE is not implemented (the kernel turns its ENOSYS into EOPNOTSUPP)
  knownFailures: { o_tmpfile_linkat: /errno EOPNOTSUPP/ },
};

/** handlefs' virtiofsd-compatible command line (its fd budget follows RLIMIT_NOFILE). */
export const handlefsBackend: Backend = {
  name: 'handlefs',
  argv: (p) => [process.execPath, join(REPO, 'dist', 'cli', 'main.js'), 'virtiofsd', `--socket-path=${p.socketPath}`, `--shared-dir=${p.sharedDir}`, '--cache=auto', '--xattr',
    // more options for every handlefs back-end of a run (e.g. --supervise --sandbox=namespace --seccomp=kill)
    ...(process.env.HANDLEFS_GUEST_ARGS?.split(' ').filter((a) => a !== '') ?? [])],
  handlesSurviveEviction: true,
  boundedFds: true,
  knownFailures: {},
};

/**
 * A back-end from a command line given as one string (the bench's --a/--b options): words split on
 * blanks, with {socket}, {shared} and {nofile} replaced (a word with {nofile} is left out when no
 * limit is set). Its expectations are unknown (all false).
 */
export function commandBackend(name: string, command: string): Backend {
  return {
    name,
    argv: (p) =>
      command
        .trim()
        .split(/\s+/)
        .filter((w) => p.nofile !== undefined || !w.includes('{nofile}'))
        .map((w) => w.replaceAll('{socket}', p.socketPath).replaceAll('{shared}', p.sharedDir).replaceAll('{nofile}', String(p.nofile))),
    handlesSurviveEviction: false,
    boundedFds: false,
    knownFailures: {},
  };
}

export interface RunningBackend {
  pid: number;
  /** what it wrote on stdout and stderr (the first 64 KiB) */
  log(): string;
  /** its exit, once it ended: code or signal */
  exited(): string | null;
  /** SIGTERM, then SIGKILL after `graceMs` (by pid); resolves when it is gone; removes the socket */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Start a back-end (under `prlimit --nofile=N:N` when p.nofile is set) and wait until its socket
 * exists. Rejects (after killing it) when it exits first or the socket does not appear in time.
 */
export async function startBackend(backend: Backend, p: BackendParams, timeoutMs = 15_000): Promise<RunningBackend> {
  fs.rmSync(p.socketPath, { force: true });
  const argv = backend.argv(p);
  const full = p.nofile ? ['prlimit', `--nofile=${p.nofile}:${p.nofile}`, '--', ...argv] : argv;
  const child = spawn(full[0]!, full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  let log = '';
  const keep = (d: Buffer): void => {
    if (log.length < 65536) log += d.toString();
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let ended: string | null = null;
  const gone = new Promise<void>((r) =>
    child.on('close', (code, signal) => {
      ended = signal ?? `code ${code}`;
      r();
    }),
  );
  child.on('error', (e) => {
    log += String(e);
    ended ??= 'spawn error';
  });
  const running: RunningBackend = {
    pid: child.pid ?? -1,
    log: () => log,
    exited: () => ended,
    stop: async (graceMs = 3000) => {
      if (ended === null && child.pid) {
        killPid(child.pid, 'SIGTERM');
        const t = setTimeout(() => child.pid && killPid(child.pid, 'SIGKILL'), graceMs);
        await gone;
        clearTimeout(t);
      }
      fs.rmSync(p.socketPath, { force: true });
    },
  };
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    let isSock = false;
    try {
      isSock = fs.statSync(p.socketPath).isSocket();
    } catch {
      /* not yet */
    }
    if (isSock) return running;
    if (ended !== null || performance.now() > deadline) {
      await running.stop(0);
      throw new GuestError(`back-end ${backend.name} ${ended !== null ? `exited (${ended})` : `made no socket within ${timeoutMs} ms`}: ${full.join(' ')}\n${tail(log)}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * One guest run against a fresh back-end: start it, boot, stop it (always, by pid). The back-end's
 * log is appended to a GuestError's message.
 */
export async function withBackend(backend: Backend, p: BackendParams, boot: Omit<BootOptions, 'socketPath'>): Promise<BootResult & { backendLog: string }> {
  const be = await startBackend(backend, p);
  try {
    const r = await bootGuest({ ...boot, socketPath: p.socketPath });
    return { ...r, backendLog: be.log() };
  } catch (e) {
    if (e instanceof GuestError) e.message += `\nback-end ${backend.name} (${be.exited() ?? 'running'}) log tail:\n${tail(be.log(), 2000)}`;
    throw e;
  } finally {
    await be.stop();
  }
}
