/**
 * The supervised worker: the filesystem core and the protocol server, fed request bytes by the
 * supervisor over the IPC channel, answering reply bytes. Started only by the supervisor (it needs
 * the IPC channel the supervisor created; run by hand it exits at once).
 */
import { InHeader } from '../../fuse/abi.js';
import { asToWorker, type StartMsg } from './protocol.js';
import { commonMessage, flushRecs, requireSupervisor, send, startCore, suppliedGroups, supplyGroups, type WorkerCore } from './worker-core.js';

requireSupervisor('handlefs mount --supervise');

let worker: WorkerCore | null = null;

async function start(m: StartMsg): Promise<void> {
  // sandboxed, the supervisor sends the groups with each ACCESS request (supplyGroups)
  const w = await startCore(m, (opts) => {
    if (m.cfg.sandbox !== 'none') opts.requesterGroups = suppliedGroups;
  });
  worker = w;
  w.log.info({ restored: w.restored }, 'worker ready');
  send({ t: 'ready', restored: w.restored });
}

process.on('message', (raw) => {
  const m = asToWorker(raw);
  if (!m) return;
  switch (m.t) {
    case 'req': {
      const srv = worker?.server;
      if (!srv) return;
      const buf = Buffer.from(m.buf.buffer, m.buf.byteOffset, m.buf.byteLength);
      const supplied = m.groups !== undefined && buf.length >= InHeader.SIZE ? supplyGroups(buf.readUInt32LE(InHeader.pid), m.groups) : null;
      srv.handle(buf).then(
        (rep) => {
          flushRecs(); // records before the reply that names them
          send({ t: 'rep', id: m.id, buf: rep });
        },
        () => send({ t: 'rep', id: m.id, buf: null }),
      ).finally(() => supplied?.());
      return;
    }
    case 'start':
      start(m).catch((e: unknown) => {
        send({ t: 'fail', message: e instanceof Error ? e.message : String(e) });
        process.exit(1);
      });
      return;
    default:
      commonMessage(m, worker);
  }
});

// the supervisor went away: nothing can reach us any more
process.on('disconnect', () => process.exit(0));
