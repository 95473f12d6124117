/**
 * `handlefs virtiofsd`: the filesystem core and the protocol server behind a vhost-user socket
 * (src/frontends/vhost-user/), run by the same lifecycle as a mount (signals, readiness, stats).
 * "Live" means listening: the VMM connects when it starts the guest.
 */
import * as fs from 'node:fs';
import type { Logger } from 'pino';
import { coreConfig, protocolOptions, type Config, type SealingKeys } from '../config.js';
import type { VhostPlan } from '../frontends/vhost-user/index.js';
import { requestBufferSize } from '../fuse/abi.js';
import type { TransportIo } from '../fuse/codec.js';
import { Op } from '../fuse/opcodes.js';
import type { QueueThreads } from '../frontends/vhost-user/queue-threads.js';
import { childLogger } from '../log.js';
import { sys } from '../sys/syscalls.js';
import { makeCore, sharedState, threadFsOptions } from './core.js';
import { EXIT_FAILURE, EXIT_OK, type Served } from './lifecycle.js';
import { SetupError } from './preflight.js';

/** A group name or number as a gid (from /etc/group: Node has no getgrnam). */
export function groupId(group: string): number {
  if (/^[0-9]+$/.test(group)) return Number(group);
  let text = '';
  try {
    text = fs.readFileSync('/etc/group', 'utf8');
  } catch {
    /* no group file: only numbers */
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^[0-9]+$/.test(gid)) return Number(gid);
  }
  throw new SetupError(`--socket-group: no group named ${group}`);
}

export async function startVirtiofsd(cfg: Config, plan: VhostPlan, root: string, keys: SealingKeys, log: Logger): Promise<Served> {
  const [{ VhostUserListener, inProcessSession }, { ProtocolServer }] = await Promise.all([
    import('../frontends/vhost-user/listener.js'),
    import('../fuse/protocol-server.js'),
  ]);
  const vlog = childLogger('vhost-user', log);
  if (plan.rlimitNofile !== null) {
    // before the core: --fd-budget auto follows RLIMIT_NOFILE
    try {
      sys.setrlimitNofile(plan.rlimitNofile);
    } catch (e) {
      throw new SetupError(`--rlimit-nofile ${plan.rlimitNofile}: ${(e as Error).message}`);
    }
  }
  let stopping = false;
  let failed = false;
  // request queues offered to the VMM (QEMU's num-request-queues must not exceed it): one per serving thread
  const connection = {
    requestQueues: cfg.threads,
    // a WRITE of max_write bytes and its headers; a longer chain is a hostile one
    maxRequestBytes: requestBufferSize(cfg.maxWrite),
    ...(plan.tag === undefined ? {} : { tag: plan.tag }),
  };
  const listener = new VhostUserListener(
    { listen: plan.listen, exitOnDisconnect: plan.exitOnDisconnect, socketGid: plan.socketGroup === null ? null : groupId(plan.socketGroup) },
    async (fd) => {
      if (cfg.supervise) {
        // the connection stays here; workers serve it and are replaced on SIGHUP or a crash
        const [{ VhostSupervisor }, { workerLaunch }] = await Promise.all([
          import('../frontends/supervisor/vhost-supervisor.js'), import('../sandbox/plan.js'),
        ]);
        // --sandbox/--seccomp/--modcaps: the worker is what is sandboxed (handlefs mount --help)
        const { core, launch } = workerLaunch(cfg, coreConfig(cfg), root);
        const sup = new VhostSupervisor(fd, { cfg: core, root, keys, connection, log: vlog, launch });
        await sup.start();
        return { done: sup.done, close: () => sup.close(), counters: () => sup.counterValues(), release: async () => {}, upgrade: () => sup.upgrade() };
      }
      // a guest has no notification queue here (VIRTIO_FS_F_NOTIFICATION is not offered): host
      // changes reach it through the cache timeouts, as with virtiofsd
      const shared = cfg.threads > 1 ? await sharedState() : null;
      const { core, fsys } = await makeCore(cfg, root, keys, log, { sharedFds: shared, settle: null });
      // a requester's pid is the guest's: the host's /proc knows nothing of it
      const server = new ProtocolServer(fsys, { ...protocolOptions(cfg), requesterGroups: () => null }, childLogger('fuse', log));
      // what INIT settles (and DESTROY ends) the other threads serve with, whichever queue it came on
      let threads: QueueThreads | null = null;
      const handler = shared === null ? server : {
        handle: async (req: Buffer, io?: TransportIo) => {
          const op = req.length >= 8 ? req.readUInt32LE(4) : -1;
          const reply = await server.handle(req, io);
          if (op === Op.INIT || op === Op.DESTROY) threads?.adopt(server.negotiatedState());
          return reply;
        },
        reuseReplies: () => server.reuseReplies(),
        recycle: (reply: Buffer) => server.recycle(reply),
      };
      if (shared) {
        const { QueueThreads } = await import('../frontends/vhost-user/queue-threads.js');
        const onFatal = (why: string): void => {
          failed = true;
          vlog.error(`${why}: stopping`);
          listener.stop();
        };
        threads = new QueueThreads(handler, {
          count: cfg.threads, tables: shared.buffers, fs: threadFsOptions(cfg, core), log: childLogger('threads', log), onFatal, inodeTable: shared.inodeTable,
        });
        await threads.launch();
      }
      const t = threads;
      return inProcessSession(fd, handler, { ...connection, requestQueues: t?.requestQueues ?? 1, ...(t ? { remote: t } : {}) }, vlog, {
        counters: () => ({ ...core.counters() as unknown as Record<string, number>, ...t?.counters() }),
        release: async () => {
          await t?.close();
          await fsys.destroy();
        },
      });
    },
    vlog,
  );
  listener.start();
  const where = 'path' in plan.listen ? plan.listen.path : `fd ${plan.listen.fd}`;
  return {
    live: Promise.resolve(`${root} on vhost-user socket ${where}`),
    ended: listener.done.then((end) => (failed || end.reason === 'error' ? EXIT_FAILURE : EXIT_OK)),
    stop: (why, failure = false) => {
      failed ||= failure;
      if (stopping) return;
      stopping = true;
      vlog.info(`${why}: closing the vhost-user connection`);
      listener.stop();
    },
    upgrade: cfg.supervise
      ? () => void listener.upgrade().catch((e: unknown) => vlog.error({ err: e }, 'upgrade failed'))
      : undefined,
    crash: async () => listener.stop(),
    release: async () => {},
    stats: { file: cfg.statsFile, counters: () => listener.counters() },
  };
}
