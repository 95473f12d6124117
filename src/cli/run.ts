/**
 * argv -> Config -> set-up checks -> mount -> filesystem -> session, run by the lifecycle
 * (lifecycle.ts: signals, readiness, exit codes). Three ways of serving share it:
 * - raw: our own protocol server on /dev/fuse, the filesystem core in this process;
 * - raw --supervise: the same mount, served by a worker process that reads the device itself
 *   (Linux 6.9+), or fed each request by the supervisor's session (older kernels);
 * - fuse-native: the core behind libfuse2's high-level API, which mounts and runs its own loop.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import type { Logger } from 'pino';
import { coreConfig, protocolOptions, type Config, type SealingKeys } from '../config.js';
import type { FuseMount, DevFuseSession, NotifyWriter, RequestHandler, RingRequests, ServingThreads } from '../frontends/devfuse/index.js';
import { childLogger } from '../log.js';
import { loadKeys, makeCore, sharedState, threadFsOptions, type CoreWiring } from './core.js';
import { parseCommandLine, USAGE, UsageError, type Command } from './args.js';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, runServer, say, type Served } from './lifecycle.js';
import { preflight, servingThreads, SetupError, sharedDirectory, type Preflight } from './preflight.js';

const noop = (): void => {};

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

  let cmd: Command;
  try {
    cmd = parseCommandLine(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    say(`${e.message} (see handlefs ${argv[0] === 'virtiofsd' ? 'virtiofsd ' : ''}--help)`);
    return EXIT_USAGE;
  }
  switch (cmd.kind) {
    case 'help':
      process.stdout.write(USAGE + '\n');
      return EXIT_OK;
    case 'version':
      process.stdout.write(`handlefs ${version()}\n`);
      return EXIT_OK;
    case 'print':
      process.stdout.write(cmd.text + '\n');
      return EXIT_OK;
    case 'virtiofsd': {
      const cfg = cmd.config;
      const plan = cmd.vhost;
      // before anything uses libuv's pool (it starts on first use and keeps its size); workers inherit it
      if (plan.threadPoolSize > 0) process.env.UV_THREADPOOL_SIZE = String(plan.threadPoolSize);
      return runServer(cfg, async (log) => {
        const root = sharedDirectory(cfg);
        const keys = await loadKeys(cfg);
        const { startVirtiofsd } = await import('./virtiofsd-serve.js');
        return startVirtiofsd(cfg, plan, root, keys, log);
      }, { exiting: true });
    }
    case 'rotate-key': {
      const { rotateKeyFile } = await import('../handle/key.js');
      try {
        const n = rotateKeyFile(cmd.file, cmd.keep);
        process.stdout.write(`rotated ${cmd.file}: a new key and ${n - 1} previous key${n === 2 ? '' : 's'} still accepted\n`);
        return EXIT_OK;
      } catch (e) {
        say((e as Error).message);
        return EXIT_FAILURE;
      }
    }
    case 'mount': {
      const cfg = cmd.config;
      return runServer(cfg, async (log) => {
        const pre = preflight(cfg);
        // imported after the checks: the key file and the core load the native addon, whose
        // absence is a set-up error with its own message, not a usage error
        const keys = await loadKeys(cfg);
        return cfg.frontend === 'fuse-native' ? startHighLevel(cfg, pre, keys, log) : startRaw(cfg, pre, keys, log);
      }, { exiting: true });
    }
  }
}

/**
 * What serves the requests of a raw session: the protocol server here, or a supervised worker
 * (fed by the supervisor's session, or reading the device itself: then `session` is its end).
 */
interface RawHandler {
  requests: RequestHandler | { session: SessionLike };
  /** the "(...)" of the mounted line, once live */
  describe(): string;
  stats: Served['stats'];
  upgrade?(): void;
  release(): Promise<void>;
  /** --threads: the other serving threads */
  threads?: ServingThreads | null;
  /** once INIT is answered: start the other threads and the io_uring queues; the mount is live after */
  afterInit?: () => Promise<void>;
  /** requests served by the owner's ring (over io_uring) */
  ringRequests?: () => number;
}

/**
 * Raw /dev/fuse: mount first, then the filesystem (FUSE passthrough registers backing files on the
 * device fd, so the core is built with it), then the session. A failure after mounting unmounts.
 */
async function startRaw(given: Config, pre: Preflight, keys: SealingKeys, log: Logger): Promise<Served> {
  const dev = await import('../frontends/devfuse/index.js');
  const mlog = childLogger('devfuse', log);
  const threads = servingThreads(given, dev.ringUnavailable);
  const cfg = threads === given.threads ? given : { ...given, threads };
  if (cfg !== given) log.info({ threads }, `FUSE over io_uring is switched on in the kernel: ${threads} serving threads, one per CPU (--threads 1 for one)`);
  const mount = await dev.mountFuse(
    { source: pre.root, mountpoint: pre.mountpoint, allowOther: cfg.allowOther, defaultPermissions: cfg.defaultPermissions, readonly: cfg.readonly },
    mlog,
  );
  // late-bound: the handler can ask to stop once the server runs (a fatal worker failure, DESTROY)
  let served: Served | null = null;
  const stop = (why: string, failure: boolean, now = false): void => served?.stop(why, failure, now);
  let handler: RawHandler | null = null;
  // host changes are written to the device from the libuv pool (src/frontends/devfuse/notify-writer.ts)
  const notifier = cfg.hostNotify ? new dev.NotifyWriter(mount.fd, mlog) : null;
  try {
    if (cfg.supervise) handler = await supervised(cfg, pre, keys, log, stop, mount.fd);
    else {
      const { notificationsTo } = await import('../fuse/notify.js');
      handler = await inProcess(cfg, pre, keys, log, {
        backing: cfg.passthrough ? dev.backingRegistry(mount.fd) : null,
        onHostChange: notifier ? notificationsTo((m) => notifier.send(m)) : null,
      }, stop, notifier, mount.fd);
    }
    let session: SessionLike;
    if ('session' in handler.requests) session = handler.requests.session;
    else {
      // with serving threads the owner polls after hand-overs instead (ServingThreads.stayAwake):
      // after its own replies too, side by side, it measured no better
      const own = new dev.DevFuseSession(mount.fd, handler.requests, mlog, handler.threads ? 0 : cfg.pollUs / 1000);
      own.start();
      session = own;
      const { threads, afterInit, ringRequests } = handler;
      if (threads) {
        threads.ownerRequests = () => own.requests + (ringRequests?.() ?? 0);
        threads.ownerAside = () => own.stoodAside;
      }
      if (afterInit) {
        // the mount is ready once the other threads and the rings serve too (loading a thread
        // takes a few hundred milliseconds of CPU, which a client starting at once would share)
        const live = own.live.then(afterInit).then(() => {
          if (threads) {
            own.stepBack = threads.streamReader();
            own.pollAfterReply = threads.ownerPoll();
          }
        }).catch((e: unknown) => {
          log.error({ err: e }, 'serving threads failed to start: serving with one thread');
        });
        session = { done: own.done, live };
      }
    }
    served = rawServed(pre, mount, session, handler, log, notifier);
    return served;
  } catch (e) {
    await mount.unmount();
    if (await closeNotifier(notifier)) closeFd(mount.fd);
    await handler?.release().catch(noop);
    throw e;
  }
}

/** Stop serving (lifecycle's Served.stop): `now` when requests already read can never be answered. */
type StopServed = (why: string, failure: boolean, now?: boolean) => void;

/** What the lifecycle watches of a session: its end and the answer to INIT. */
type SessionLike = Pick<DevFuseSession, 'done' | 'live'>;

async function inProcess(
  cfg: Config, pre: Preflight, keys: SealingKeys, log: Logger, wiring: CoreWiring, stop: StopServed, notifier: NotifyWriter | null, device: number,
): Promise<RawHandler> {
  const [{ ProtocolServer }, dev] = await Promise.all([import('../fuse/protocol-server.js'), import('../frontends/devfuse/index.js')]);
  // --io-uring auto asks for FUSE over io_uring where it was measured to pay: with more than one
  // serving thread (each CPU's queue then has its own thread; one thread serving every queue was
  // 0.67-0.93x of /dev/fuse on 6 of the 9 benchmark workloads), and where this process can make a ring
  const noRing = cfg.ioUring === 'off' ? 'off' : dev.ringUnavailable();
  if (cfg.ioUring === 'on' && noRing !== null) throw new SetupError(`--io-uring on: this process cannot make an io_uring (${noRing}; see sysctl kernel.io_uring_disabled)`);
  const ioUring = cfg.ioUring === 'on' ? 'need' : cfg.threads > 1 && noRing === null ? 'want' : undefined;
  // fds for the other serving threads: as many open files and inodes as a busy server holds
  const shared = cfg.threads > 1 ? await sharedState() : null;
  let threads: ServingThreads | null = null;
  const { core, fsys } = await makeCore(cfg, pre.root, keys, log, { ...wiring, sharedFds: shared, settle: shared ? () => threads?.settle() : null });
  const server = new ProtocolServer(fsys, { ...protocolOptions(cfg), ioUring, onDestroy: () => stop('DESTROY from the kernel', false) }, childLogger('fuse', log));
  if (shared) {
    threads = new dev.ServingThreads(device, server, {
      count: cfg.threads, tables: shared.buffers, fs: threadFsOptions(cfg, core), log: childLogger('threads', log), onFatal: (why) => stop(why, true, true), inodeTable: shared.inodeTable,
    });
    threads.hotMs = cfg.pollUs / 1000;
  }
  let ring: InstanceType<typeof dev.RingSession> | null = null;
  // INIT is answered: the other threads start and register their CPUs' ring queues, then this
  // thread registers every queue left (the kernel serves nothing over the ring until each queue
  // has an entry, so a failure here stops the server rather than leave the mount hanging)
  const afterInit = async (): Promise<void> => {
    const settings = server.ringSettings();
    const plan = settings?.ioUring ? { payloadSize: settings.payloadSize, possible: dev.possibleCpus() } : null;
    if (plan !== null) {
      // the owner's ring first: the other threads answer what they hand over through it
      const answers = dev.ringAnswers(server);
      const t = threads;
      const owner: RingRequests = {
        ...answers,
        handle: (req, entry, qid, io) => (t !== null && t.routeRing(req, entry!, qid!) ? Promise.resolve(null) : answers.handle(req, entry, qid, io)),
        // one thread serving every queue polls after each commit as it does on /dev/fuse
        answered: (_req, qid) => (t !== null ? t.committed(qid) : dev.keepPolling(cfg.pollUs / 1000)),
      };
      if (!ringOk(() => (ring = new dev.RingSession(device, owner, childLogger('ring', log))))) return;
      threads?.attachRing(ring!);
    }
    const covered = threads ? await threads.start(plan) : new Set<number>();
    if (plan === null || ring === null) return;
    const r: InstanceType<typeof dev.RingSession> = ring;
    const qids = [...Array(plan.possible).keys()].filter((q) => !covered.has(q));
    if (!ringOk(() => r.register({ qids, perQueue: dev.RING_DEPTH, payloadSize: plan.payloadSize }))) return;
    r.start(plan.payloadSize);
    log.info({ queues: plan.possible, threadQueues: [...covered] }, `serving over io_uring: ${plan.possible} queues, ${covered.size} on their CPU's thread`);
  };
  // the kernel serves nothing over the ring until every queue has an entry: a failure to make or
  // register the owner's ring stops the server rather than leave the mount hanging
  const ringOk = (fn: () => unknown): boolean => {
    try {
      fn();
      return true;
    } catch (e) {
      const code = (e as { code?: string }).code;
      log.error({ code }, `cannot register the FUSE ring queues (${code ?? (e as Error).message}): stopping`);
      stop(`io_uring queues not registered (${code})`, true);
      return false;
    }
  };
  return {
    requests: server,
    threads,
    afterInit,
    ringRequests: () => ring?.requests ?? 0,
    describe: () => `raw, fd budget ${core.counters().fdBudget}, reopen by ${core.reopenStrategy}${threads ? `, ${cfg.threads} threads` : ''}${server.ringSettings()?.ioUring ? ', io_uring' : ''}`,
    // the notifications the core asked for, and what the kernel made of them
    stats: {
      file: cfg.statsFile,
      counters: () => ({ ...core.counters(), ...notifier?.counters, ...threads?.counters(), ioUring: server.ringSettings()?.ioUring ?? false, ringRequests: ring?.requests ?? 0 }),
    },
    release: async () => {
      await threads?.stop();
      ring?.close();
      await fsys.destroy();
    },
  };
}

/** Stop writing notifications; true once none is in flight, so that the device fd may be closed. */
async function closeNotifier(n: NotifyWriter | null): Promise<boolean> {
  return n ? n.close() : true;
}

/**
 * The worker reads the device itself where the kernel can resend what a dead worker read
 * (FUSE_NOTIFY_RESEND, Linux 6.9+): probed by writing the notification, which is harmless with
 * nothing to resend and EINVAL on a kernel without it (a version number would miss backports).
 * Otherwise the supervisor forwards each request (a dead worker's requests are answered EIO).
 */
async function supervised(cfg: Config, pre: Preflight, keys: SealingKeys, log: Logger, stop: StopServed, device: number): Promise<RawHandler> {
  const [{ Supervisor }, { DevFuseSupervisor }, { workerLaunch }, { notifyResend }] = await Promise.all([
    import('../frontends/supervisor/supervisor.js'), import('../frontends/supervisor/devfuse-supervisor.js'), import('../sandbox/plan.js'),
    import('../frontends/devfuse/index.js'),
  ]);
  const slog = childLogger('supervisor', log);
  const fail = (why: string): void => stop(why, true);
  const { core, launch } = workerLaunch(cfg, coreConfig(cfg), pre.root);
  // HANDLEFS_SUPERVISE_FORWARD=1: the forwarding supervisor on any kernel (its tests run on a kernel with resend)
  let resend = process.env.HANDLEFS_SUPERVISE_FORWARD !== '1';
  try {
    if (resend) notifyResend(device);
  } catch (e) {
    resend = false;
    slog.info({ code: (e as { code?: string }).code }, 'the kernel cannot resend requests (FUSE_NOTIFY_RESEND, Linux 6.9+): the supervisor forwards each request');
  }
  if (resend) {
    const ds = new DevFuseSupervisor(device, core, pre.root, keys, slog, fail, launch);
    try {
      await ds.start();
    } catch (e) {
      await ds.stop();
      throw e;
    }
    return {
      requests: { session: ds },
      describe: () => `raw, supervised, worker pid ${ds.counterValues().workerPid}`,
      stats: { file: cfg.statsFile ? `${cfg.statsFile}.supervisor` : null, counters: () => ds.counterValues() },
      upgrade: () => {
        ds.upgrade().catch((e: unknown) => fail(`upgrade failed: ${(e as Error).message}`));
      },
      release: () => ds.stop(),
    };
  }
  const sup = new Supervisor(core, pre.root, keys, slog, fail, launch);
  try {
    await sup.start(null);
  } catch (e) {
    await sup.stop(); // a worker that failed to start is not restarted
    throw e;
  }
  return {
    requests: sup,
    describe: () => `raw, supervised, worker pid ${sup.counters().workerPid}`,
    // the worker writes the core's counters to --stats-file; the supervisor its own beside them
    stats: { file: cfg.statsFile ? `${cfg.statsFile}.supervisor` : null, counters: () => sup.counters() },
    upgrade: () => {
      sup.upgrade().catch((e: unknown) => fail(`upgrade failed: ${(e as Error).message}`));
    },
    release: () => sup.stop(),
  };
}

function closeFd(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    /* already closed */
  }
}

/**
 * A raw mount being served. Stopping unmounts; the session then reads ENODEV and ends. A busy
 * mount is detached lazily; when the connection cannot be aborted (no fusectl, or a user
 * namespace), the files still open on it are served until they are closed, as the detached
 * mount's users expect, unless requests already read can never be answered (`now`: a serving
 * thread died): then it stops at once. Stopping again aborts the connection, or ends the process at
 * once (closing the device fds ends the connection too).
 */
function rawServed(pre: Preflight, mount: FuseMount, session: SessionLike, h: RawHandler, log: Logger, notifier: NotifyWriter | null): Served {
  let stopping = false;
  let failed = false;
  let atOnce = false;
  let endAtOnce: () => void = noop;
  const stoppedAtOnce = new Promise<void>((r) => (endAtOnce = r));

  const stop = async (why: string, failure = false, now = false): Promise<void> => {
    failed ||= failure;
    if (stopping) {
      if (mount.abort()) return;
      log.warn('stopping at once; files still open on the detached mount will fail with ENOTCONN');
      atOnce = true;
      endAtOnce();
      return;
    }
    stopping = true;
    if (failure) log.error(`${why}: unmounting ${pre.mountpoint}`);
    else log.info(`${why}: unmounting ${pre.mountpoint}`);
    const r = await mount.unmount();
    if (r !== 'unmounted' && !mount.abort()) {
      if (now) {
        // a request a dead thread held is never answered while the connection lives: its caller
        // would wait forever on the detached mount; ending the process ends the connection
        log.error('requests that cannot be answered are pending: stopping at once; files still open on the detached mount will fail with ENOTCONN');
        atOnce = true;
        endAtOnce();
        return;
      }
      log.warn(
        r === 'busy'
          ? `${pre.mountpoint} is busy: detached it lazily; serving the files still open on it until they are closed (signal again to stop at once)`
          : `cannot unmount ${pre.mountpoint}; still serving it (signal again to stop at once)`,
      );
    }
  };

  const ended = (async (): Promise<number> => {
    const end = await Promise.race([session.done, stoppedAtOnce.then(() => null)]);
    if (end === null) return EXIT_FAILURE;
    if (end.reason === 'error') await stop(`the /dev/fuse session failed (${end.code})`, true);
    else if (!stopping) log.info(`${pre.mountpoint} was unmounted`);
    return failed || end.reason === 'error' ? EXIT_FAILURE : EXIT_OK;
  })();

  return {
    live: session.live.then(() => `${pre.root} on ${pre.mountpoint} (${h.describe()})`),
    ended,
    stop: (why, failure, now) => void stop(why, failure, now),
    upgrade: h.upgrade,
    crash: async () => {
      await mount.unmount().catch(noop);
      mount.abort();
    },
    release: async () => {
      // stopped at once: the session may still be reading the fd; the process exit closes it
      if (atOnce) return;
      // a notification still stuck in a write keeps the fd open (the process exit closes it)
      if (await closeNotifier(notifier)) closeFd(mount.fd);
      await h.release();
    },
    stats: h.stats,
  };
}

/**
 * --frontend fuse-native: the same core behind libfuse2's high-level API. libfuse runs its own
 * loop; the server ends when stopped or when the mount disappears from /proc/self/mountinfo.
 */
async function startHighLevel(cfg: Config, pre: Preflight, keys: SealingKeys, log: Logger): Promise<Served> {
  const [{ mountHighLevel }, { findMount }] = await Promise.all([import('../frontends/highlevel/mount.js'), import('../frontends/devfuse/index.js')]);
  const { core, fsys } = await makeCore(cfg, pre.root, keys, log);
  let hl;
  try {
    hl = await mountHighLevel(fsys, pre.mountpoint, {
      allowOther: cfg.allowOther, defaultPermissions: cfg.defaultPermissions, fsname: pre.root,
      log: childLogger('highlevel', log), debug: cfg.logLevel === 'trace',
    });
  } catch (e) {
    await fsys.destroy().catch(noop);
    throw e;
  }
  const mounted = hl;
  let stopped: (end: { why: string; failure: boolean }) => void = noop;
  const stop = new Promise<{ why: string; failure: boolean }>((r) => (stopped = r));
  const poll = setInterval(() => {
    if (!findMount(pre.mountpoint)) stopped({ why: 'unmounted', failure: false });
  }, 500);
  poll.unref();
  const ended = stop.then(async ({ why, failure }): Promise<number> => {
    clearInterval(poll);
    if (why === 'unmounted') {
      log.info(`${pre.mountpoint} was unmounted`);
      await mounted.unmount().catch(noop);
      return EXIT_OK;
    }
    log.info(`${why}: unmounting ${pre.mountpoint}`);
    try {
      await mounted.unmount();
    } catch (e) {
      log.error({ err: e }, `cannot unmount ${pre.mountpoint}`);
      return EXIT_FAILURE;
    }
    return failure ? EXIT_FAILURE : EXIT_OK;
  });
  return {
    live: Promise.resolve(`${pre.root} on ${pre.mountpoint} (fuse-native, fd budget ${core.counters().fdBudget}, reopen by ${core.reopenStrategy})`),
    ended,
    stop: (why, failure = false) => stopped({ why, failure }),
    crash: () => mounted.unmount().catch(noop),
    release: () => fsys.destroy(),
    stats: { file: cfg.statsFile, counters: () => core.counters() },
  };
}
