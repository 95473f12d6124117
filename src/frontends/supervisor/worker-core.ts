/**
 * What every supervised worker does the same way, whatever its transport (/dev/fuse requests
 * relayed over IPC in worker.ts; a vhost-user relay in vhost-worker.ts): build the filesystem core
 * and the protocol server from the supervisor's start message, restore the sealed records of its
 * predecessors, replay the client's INIT, stream new records to the supervisor, and answer the
 * supervisor's state and stop messages.
 */
import { passthroughOptions, protocolOptions } from '../../config.js';
import { decorate } from '../../fs/decorate.js';
import { PassthroughFs } from '../../fs/passthrough.js';
import { ProtocolServer, type ProtocolOptions } from '../../fuse/protocol-server.js';
import { childLogger, makeLogger } from '../../log.js';
import { startStats } from '../../stats.js';
import { enterChroot, sys } from '../../sys/syscalls.js';
import type { Logger } from 'pino';
import type { FromWorker, StartMsg, ToWorker } from './protocol.js';
import { RECORD_LOG_BYTES, RecordLog } from './record-log.js';

export const send = (m: FromWorker): void => {
  process.send!(m);
};

let pendingRecs: Uint8Array[] = [];
let flushScheduled = false;

/** Send the records streamed since the last flush (before a reply that names them). */
export function flushRecs(): void {
  flushScheduled = false;
  if (pendingRecs.length === 0) return;
  const recs = pendingRecs;
  pendingRecs = [];
  send({ t: 'recs', recs });
}

/** Where records go first when the transport shares memory with the supervisor (record-log.ts). */
let recordLog: RecordLog | null = null;

/** Hand records to the log shared on `fd` from now on (IPC only for what does not fit); `fd` is closed. */
export function useSharedRecordLog(fd: number): void {
  recordLog = new RecordLog(new Uint8Array(sys.mapShared(fd, RECORD_LOG_BYTES, 0)));
  sys.close(fd);
}

/** A sealed record for the supervisor: into the shared log, or sent in a batch once the current request is done. */
function streamRecord(sealed: Buffer): void {
  if (recordLog?.append(sealed)) return;
  pendingRecs.push(sealed);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushRecs);
  }
}

/** Groups the supervisor read for requests in flight, by requester pid (several may share a pid). */
const supplied = new Map<number, { groups: number[] | null; uses: number }>();

/**
 * Make `groups` the answer for `pid` while its request runs; returns the release. A sandboxed
 * worker (its own pid namespace, or a chroot without /proc) cannot read a requester's /proc
 * entry: the supervisor reads the groups, and no other source is trusted.
 */
export function supplyGroups(pid: number, groups: number[] | null): () => void {
  const e = supplied.get(pid);
  if (e) {
    e.groups = groups;
    e.uses++;
  } else supplied.set(pid, { groups, uses: 1 });
  return () => {
    const cur = supplied.get(pid);
    if (cur && --cur.uses === 0) supplied.delete(pid);
  };
}

export const suppliedGroups = (pid: number): number[] | null => supplied.get(pid)?.groups ?? null;

export interface WorkerCore {
  core: PassthroughFs;
  server: ProtocolServer;
  log: Logger;
}

/** Refuse to run unless started by a supervisor (the IPC channel is how it proves that). */
export function requireSupervisor(command: string): void {
  if (process.send) return;
  process.stderr.write(`handlefs: the worker is started by \`${command}\`, not by hand\n`);
  process.exit(2);
}

/**
 * The core and the protocol server for `m`, restored and initialized; `ready` is sent by the
 * caller once its transport is in place. `overrides` adjust the protocol options for the transport.
 */
export async function startCore(m: StartMsg, overrides: (o: ProtocolOptions) => void = () => {}): Promise<WorkerCore & { restored: number }> {
  const { cfg } = m;
  const log = makeLogger(cfg.logLevel, { role: 'worker' });
  const keys = { key: Buffer.from(m.key), previousKeys: m.previousKeys.map((k) => Buffer.from(k)) };
  const core = new PassthroughFs(passthroughOptions(cfg, m.root, keys, log, { onRecord: streamRecord }));
  const opts = protocolOptions(cfg);
  overrides(opts);
  const server = new ProtocolServer(decorate(core, cfg), opts, childLogger('fuse', log));
  let restored = 0;
  // every record is verified by the core before use: a foreign or tampered one is refused and logged
  // after a crash there is no state, only the records streamed as inodes were made or moved: their
  // lookup counts may be behind the client's
  for (const blob of m.state ? [m.state, ...m.records] : m.records) {
    const r = core.importState(Buffer.from(blob), false, m.state === null);
    if (r.ok) restored += r.records;
  }
  if (m.init) {
    // the client sent INIT to a predecessor; replay it so that this protocol server is initialized
    // with the same negotiation (the reply is dropped: the client already has one)
    await server.handle(Buffer.from(m.init));
  }
  startStats(cfg.statsFile, () => ({ role: 'worker', ...core.counters() }), log);
  if (cfg.sandbox === 'chroot') {
    // everything is loaded and the share's fds are open: from here on the share is all there is
    enterChroot(Buffer.from(m.root));
    log.info({ root: m.root }, 'worker chrooted into the share');
  }
  return { core, server, log, restored };
}

/** The supervisor's state and stop messages; false for any other message (the caller's). */
export function commonMessage(m: ToWorker, w: WorkerCore | null, beforeExit: () => void = () => {}): boolean {
  switch (m.t) {
    case 'state':
      flushRecs();
      send({ t: 'state', blob: w ? w.core.exportState() : Buffer.alloc(0) });
      return true;
    case 'stop':
      flushRecs();
      beforeExit();
      void (w ? w.core.destroy() : Promise.resolve()).finally(() => process.exit(0));
      return true;
    default:
      return false;
  }
}
