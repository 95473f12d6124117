/**
 * argv -> Config -> logger -> PassthroughFs -> ProtocolServer -> mount -> DevFuseSession, and the
 * way back: SIGINT/SIGTERM unmount cleanly, an external unmount (ENODEV) ends the session, and in
 * every case the process exits only after the readers have returned (see session.ts "Exit").
 * Exit codes: 0 clean unmount, 1 set-up error, 2 usage error.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';
import { passthroughOptions, protocolOptions, type Config } from '../config.js';
import type { FileSystem } from '../fs/filesystem.js';
import type { BackingFiles } from '../fs/options.js';
import { childLogger, makeLogger, setRootLogger } from '../log.js';
import { parseCommandLine, USAGE, UsageError } from './args.js';
import { devFusePath, preflight, SetupError } from './preflight.js';
import { startStats } from '../stats.js';

const noop = (): void => {};

/** One line to stderr, prefixed; EPIPE on a closed stderr is ignored. */
export function say(line: string): void {
  try {
    fs.writeSync(2, `handlefs: ${line}\n`);
  } catch {
    /* stderr closed */
  }
}

function version(): string {
  try {
    const req = createRequire(import.meta.url);
    return (req('../../package.json') as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** Run the command line; resolves to the exit code once it is safe to exit. */
export async function main(argv: readonly string[]): Promise<number> {
  // a reader of our output going away must not kill the server (node ignores SIGPIPE; swallow EPIPE)
  process.stdout.on('error', noop);
  process.stderr.on('error', noop);

  let cfg: Config;
  try {
    const cmd = parseCommandLine(argv);
    if (cmd.kind === 'help') {
      process.stdout.write(USAGE + '\n');
      return 0;
    }
    if (cmd.kind === 'version') {
      process.stdout.write(`handlefs ${version()}\n`);
      return 0;
    }
    if (cmd.kind === 'rotate-key') {
      const { rotateKeyFile } = await import('../handle/key.js');
      try {
        const n = rotateKeyFile(cmd.file, cmd.keep);
        process.stdout.write(`rotated ${cmd.file}: a new key and ${n - 1} previous key${n === 2 ? '' : 's'} still accepted\n`);
        return 0;
      } catch (e) {
        say((e as Error).message);
        return 1;
      }
    }
    cfg = cmd.config;
  } catch (e) {
    if (e instanceof UsageError) {
      say(`${e.message} (see handlefs --help)`);
      return 2;
    }
    throw e;
  }

  const dest = pino.destination({ fd: 2, sync: true });
  dest.on('error', noop);
  const log = makeLogger(cfg.logLevel, dest as unknown as NodeJS.WritableStream);
  setRootLogger(log);

  try {
    return await serve(cfg, log);
  } catch (e) {
    if (e instanceof SetupError || (e instanceof Error && (e.name === 'MountError' || e.name === 'KeyFileError'))) {
      say(e.message);
      return 1;
    }
    // anything else at set-up (the core refusing the shared dir, the addon missing): one line too
    say(e instanceof Error ? e.message.split('\n')[0]! : String(e));
    log.debug({ err: e }, 'set-up failed');
    return 1;
  }
}

async function serve(cfg: Config, log: Logger): Promise<number> {
  const pre = preflight(cfg);
  if (cfg.supervise) {
    const { supervise } = await import('../frontends/supervisor/supervisor.js');
    return supervise(cfg, pre, log, { signalReady, say });
  }

  // imported here, after the checks: loading the core loads the native addon, whose absence is a
  // set-up error with its own message, not a usage error
  const [{ ephemeralKey, loadOrCreateKeys }, { PassthroughFs }, { ReadOnlyFs }, { ProtocolServer }, dev] =
    await Promise.all([
      import('../handle/key.js'),
      import('../fs/passthrough.js'),
      import('../fs/read-only.js'),
      import('../fuse/protocol-server.js'),
      import('../frontends/devfuse/index.js'),
    ]);

  const [key, ...previousKeys] = cfg.handleKeyFile ? loadOrCreateKeys(cfg.handleKeyFile) : [ephemeralKey()];
  // FUSE passthrough registers backing files on the device fd, which exists once mounted (INIT,
  // the first moment the core may use it, comes after the mount)
  let registry: BackingFiles | null = null;
  const backing: BackingFiles | null = cfg.passthrough
    ? { open: (fd) => registry!.open(fd), close: (id) => registry!.close(id) }
    : null;
  const core = new PassthroughFs({ ...passthroughOptions(cfg, pre.root, key!, log, previousKeys), backing });
  // what the core chose (it probed the capability and open_by_handle_at itself)
  const reopenBy = core.reopenStrategy;
  const fsys: FileSystem = cfg.readonly ? new ReadOnlyFs(core) : core;
  const stats = startStats(cfg.statsFile, () => core.counters(), log);
  if (cfg.frontend === 'fuse-native') {
    try {
      return await serveHighLevel(cfg, pre, fsys, log, reopenBy, core.counters().fdBudget);
    } finally {
      stats.stop();
    }
  }
  const server = new ProtocolServer(fsys, protocolOptions(cfg), childLogger('fuse', log));
  const mlog = childLogger('devfuse', log);

  let mount;
  try {
    mount = await dev.mountFuse(
      { source: pre.root, mountpoint: pre.mountpoint, allowOther: cfg.allowOther, defaultPermissions: cfg.defaultPermissions, readonly: cfg.readonly },
      mlog,
      devFusePath(),
    );
  } catch (e) {
    await fsys.destroy().catch(noop);
    throw e;
  }

  if (cfg.passthrough) registry = dev.backingRegistry(mount.fd);
  const session = new dev.DevFuseSession(mount.fd, server, { readers: cfg.readers, kind: readerKind() }, mlog);
  try {
    session.start();
  } catch (e) {
    await mount.unmount();
    await fsys.destroy().catch(noop);
    throw new SetupError((e as Error).message);
  }

  // --- shutdown: unmount; the readers then see ENODEV and the session ends. A busy mount is
  // detached lazily; when the connection cannot be aborted (no fusectl, or a user namespace), the
  // files still open on it are served until they are closed, as the detached mount's users expect.
  // A second signal stops at once.
  let stopping = false;
  const stop = async (why: string): Promise<void> => {
    if (stopping) {
      if (mount.abort()) return;
      log.warn('second signal: stopping at once; files still open on the detached mount will fail with ENOTCONN');
      // the readers are blocked in read(2) and cannot be woken, and process.exit would join them
      process.kill(process.pid, 'SIGKILL');
      return;
    }
    stopping = true;
    log.info(`${why}: unmounting ${pre.mountpoint}`);
    const r = await mount.unmount();
    if (r !== 'unmounted' && !mount.abort()) {
      log.warn(
        r === 'busy'
          ? `${pre.mountpoint} is busy: detached it lazily; serving the files still open on it until they are closed (signal again to stop at once)`
          : `cannot unmount ${pre.mountpoint}; still serving it (signal again to stop at once)`,
      );
    }
  };
  const onSignal = (sig: NodeJS.Signals): void => void stop(`received ${sig}`);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  server.onDestroy = () => void stop('DESTROY from the kernel');
  // a crash must not leave a dead mount behind: unmount (lazily if busy), abort if possible, and
  // exit once the readers have ended; if they cannot be ended, kill ourselves (exit joins them)
  process.on('uncaughtException', (e) => {
    log.fatal({ err: e }, 'uncaught exception; unmounting');
    say(`internal error: ${e.message}`);
    void (async () => {
      await mount.unmount().catch(noop);
      mount.abort();
      const ended = await Promise.race([session.done.then(() => true), new Promise((r) => setTimeout(r, 2000, false))]);
      if (ended) process.exit(1);
      process.kill(process.pid, 'SIGKILL');
    })();
  });

  session.live.then(() => {
    const budget = core.counters().fdBudget;
    log.info(`mounted ${pre.root} on ${pre.mountpoint} (raw, fd budget ${budget}, reopen by ${reopenBy}, ${cfg.readers} readers)`);
    signalReady();
  }, noop);

  const first = await session.firstEnd;
  if (first.reason === 'error') {
    // one reader failed for a reason other than unmount: end the others the same way
    log.error({ code: first.code }, `the /dev/fuse session failed (${first.code}); unmounting ${cfg.mountpoint}`);
    await stop('session failure');
  }
  const end = await session.done;
  if (end.reason === 'unmounted' && !stopping) log.info(`${cfg.mountpoint} was unmounted`);
  // the readers are gone: nothing else can be using the device fd
  try {
    fs.closeSync(mount.fd);
  } catch {
    /* already closed */
  }
  stats.stop();
  await fsys.destroy().catch((e: unknown) => log.warn({ err: e }, 'destroy failed'));
  return end.reason === 'unmounted' ? 0 : 1;
}

/**
 * --frontend fuse-native: the same core behind libfuse2's high-level API. libfuse runs its own
 * loop; we stop on SIGINT/SIGTERM/SIGHUP, or when the mount disappears from /proc/self/mounts.
 */
async function serveHighLevel(
  cfg: Config, pre: { root: string; mountpoint: string }, fsys: FileSystem, log: Logger, reopenBy: string, budget: number,
): Promise<number> {
  const { mountHighLevel } = await import('../frontends/highlevel/mount.js');
  const hl = await mountHighLevel(fsys, pre.mountpoint, {
    allowOther: cfg.allowOther, defaultPermissions: cfg.defaultPermissions, fsname: pre.root,
    log: childLogger('highlevel', log), debug: cfg.logLevel === 'trace',
  });
  log.info(`mounted ${pre.root} on ${pre.mountpoint} (fuse-native, fd budget ${budget}, reopen by ${reopenBy})`);
  signalReady();
  const why = await new Promise<string>((resolve) => {
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => resolve(`received ${sig}`));
    const poll = setInterval(() => {
      if (!isMounted(pre.mountpoint)) resolve('unmounted');
    }, 500);
    poll.unref();
  });
  log.info(`${why}: unmounting ${pre.mountpoint}`);
  if (why !== 'unmounted') await hl.unmount();
  else await hl.unmount().catch(noop);
  await fsys.destroy().catch((e: unknown) => log.warn({ err: e }, 'destroy failed'));
  return 0;
}

function isMounted(mountpoint: string): boolean {
  try {
    const esc = mountpoint.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
    return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === esc);
  } catch {
    return true;
  }
}

/** How /dev/fuse is read (see session.ts): 'poll' unless HANDLEFS_READERS asks for threads or the pool. */
export function readerKind(): 'poll' | 'thread' | 'pool' {
  const v = process.env.HANDLEFS_READERS;
  return v === 'pool' || v === 'thread' ? v : 'poll';
}

/** HANDLEFS_READY_FD=N: write "ready\n" to fd N and close it (the test fixture waits on it). */
export function signalReady(): void {
  const v = process.env.HANDLEFS_READY_FD;
  if (!v || !/^\d+$/.test(v)) return;
  const fd = Number(v);
  try {
    fs.writeSync(fd, 'ready\n');
  } catch {
    /* nobody is listening: EPIPE/EBADF */
  }
  try {
    fs.closeSync(fd);
  } catch {
    /* not open */
  }
}
