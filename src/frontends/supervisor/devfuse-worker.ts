/**
 * The supervised worker that reads and answers /dev/fuse itself (Linux 6.9+, FUSE_NOTIFY_RESEND):
 * the device fd on fd 4, a duplicate of the supervisor's, so the connection outlives us; the shared
 * record log on fd 5 (record-log.ts) and the resend journal on fd 6 (resend-journal.ts). It reports
 * the kernel's INIT to the supervisor before answering it. A successor asks the kernel to resend
 * what its predecessor read and did not answer, and answers each as if it had been done once.
 * Started only by the supervisor (run by hand it exits at once).
 */
import { InHeader } from '../../fuse/abi.js';
import { Op } from '../../fuse/opcodes.js';
import { childLogger } from '../../log.js';
import { sys } from '../../sys/syscalls.js';
import { DevFuseSession, notifyResend, type RequestHandler } from '../devfuse/index.js';
import { DEVICE_FD, DRAIN_MS, JOURNAL_FD } from './devfuse-supervisor.js';
import { asToWorker, type StartMsg } from './protocol.js';
import { JOURNAL_BYTES, ResendJournal } from './resend-journal.js';
import { RECORD_LOG_FD } from './vhost-supervisor.js';
import { commonMessage, flushRecs, requireSupervisor, send, startCore, suppliedGroups, supplyGroups, useSharedRecordLog, type WorkerCore } from './worker-core.js';

requireSupervisor('handlefs mount --supervise');

let worker: WorkerCore | null = null;
let session: DevFuseSession | null = null;
let nextAsk = 1;
const asked = new Map<number, (groups: number[] | null) => void>();

const sendNow = (m: Parameters<typeof send>[0]): Promise<void> =>
  new Promise((resolve) => process.send!(m, undefined, {}, () => resolve()));

async function start(m: StartMsg): Promise<void> {
  if (!m.devfuse) throw new Error('a /dev/fuse worker needs its start options');
  useSharedRecordLog(RECORD_LOG_FD);
  const journalMap = sys.mapShared(JOURNAL_FD, JOURNAL_BYTES, 0);
  sys.close(JOURNAL_FD);
  const sandboxed = m.cfg.sandbox !== 'none';
  const w = await startCore(m, (opts) => {
    if (sandboxed) opts.requesterGroups = suppliedGroups;
  });
  worker = w;
  const journal = new ResendJournal(w.server, journalMap);
  const handler: RequestHandler = {
    get negotiated() {
      return w.server.negotiated;
    },
    bufferSize: () => w.server.bufferSize(),
    reuseReplies: () => w.server.reuseReplies(),
    recycle: (b) => w.server.recycle(b),
    handle: async (req) => {
      const op = req.length >= InHeader.SIZE ? req.readUInt32LE(InHeader.opcode) : 0;
      let release: (() => void) | null = null;
      if (op === Op.ACCESS && sandboxed) {
        const pid = req.readUInt32LE(InHeader.pid);
        release = supplyGroups(pid, await askGroups(pid));
      }
      try {
        const rep = await journal.handle(req);
        // the supervisor has INIT before the kernel has its reply: a successor can replay it
        if (op === Op.INIT && rep) await sendNow({ t: 'init', buf: req });
        flushRecs(); // records before the reply that names them
        return rep;
      } finally {
        release?.();
      }
    },
  };
  // one serving thread, as the unsupervised raw server: it polls after each reply (--poll-us)
  const s = new DevFuseSession(DEVICE_FD, handler, childLogger('devfuse', w.log), m.cfg.pollUs / 1000);
  session = s;
  s.start();
  void s.done.then((end) => send({ t: 'ended', reason: end.reason, ...(end.code ? { code: end.code } : {}) }));
  if (m.devfuse.successor) {
    notifyResend(DEVICE_FD);
    // what was resent comes first; one line on how it was answered
    setTimeout(() => {
      if (journal.counters.resent > 0) w.log.warn({ ...journal.counters }, 'answered the requests the kernel resent after the predecessor died');
    }, 1000).unref();
  }
  w.log.info({ restored: w.restored, successor: m.devfuse.successor }, 'worker ready');
  send({ t: 'ready', restored: w.restored });
}

function askGroups(pid: number): Promise<number[] | null> {
  const id = nextAsk++;
  return new Promise((resolve) => {
    asked.set(id, resolve);
    send({ t: 'groups?', id, pid });
  });
}

process.on('message', (raw) => {
  const m = asToWorker(raw);
  if (!m) return;
  switch (m.t) {
    case 'start':
      start(m).catch((e: unknown) => {
        send({ t: 'fail', message: e instanceof Error ? e.message : String(e) });
        process.exit(1);
      });
      return;
    case 'drain':
      void (session ? session.pause(DRAIN_MS) : Promise.resolve()).then(() => send({ t: 'drained' }));
      return;
    case 'groups':
      asked.get(m.id)?.(m.groups);
      asked.delete(m.id);
      return;
    default:
      commonMessage(m, worker);
  }
});

// the supervisor went away: nothing can reach us any more
process.on('disconnect', () => process.exit(0));
