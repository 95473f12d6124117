/**
 * The supervised vhost-user worker: the filesystem core and the protocol server, serving the guest
 * through the connection its supervisor relays (vhost-supervisor.ts) on fd 4. Guest memory, the
 * kick and call eventfds and the rings are the worker's own: no request passes the supervisor.
 * New inode records go into a log in memory shared with the supervisor (fd 5, record-log.ts).
 * Started only by the supervisor (run by hand it exits at once).
 */
import { childLogger } from '../../log.js';
import { VhostUserConnection } from '../vhost-user/connection.js';
import { asToWorker, type StartMsg } from './protocol.js';
import { RECORD_LOG_FD, RELAY_FD } from './vhost-supervisor.js';
import { commonMessage, flushRecs, requireSupervisor, send, startCore, useSharedRecordLog, type WorkerCore } from './worker-core.js';

requireSupervisor('handlefs virtiofsd --supervise');

let worker: WorkerCore | null = null;

async function start(m: StartMsg): Promise<void> {
  if (!m.vhost) throw new Error('a vhost-user worker needs its connection options');
  // the record log the supervisor shares (fd 5): a new inode costs no message
  useSharedRecordLog(RECORD_LOG_FD);
  // a requester's pid is the guest's: the host's /proc knows nothing of it
  const w = await startCore(m, (opts) => (opts.requesterGroups = () => null));
  worker = w;
  const conn = new VhostUserConnection(RELAY_FD, w.server, { ...m.vhost, supervised: true, beforeReply: flushRecs }, childLogger('vhost-user', w.log));
  conn.start();
  // the supervisor closed the relay (the VMM went away, or it replaces us): nothing left to serve
  void conn.done.then(() => setTimeout(() => process.exit(0), 1000).unref());
  w.log.info({ restored: w.restored }, 'vhost-user worker ready');
  send({ t: 'ready', restored: w.restored });
}

process.on('message', (raw) => {
  const m = asToWorker(raw);
  if (!m) return;
  if (m.t === 'start') {
    start(m).catch((e: unknown) => {
      send({ t: 'fail', message: e instanceof Error ? e.message : String(e) });
      process.exit(1);
    });
    return;
  }
  commonMessage(m, worker);
});

// the supervisor went away: nothing can reach us any more
process.on('disconnect', () => process.exit(0));
