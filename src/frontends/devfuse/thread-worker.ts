/**
 * A serving thread other than the owner (src/frontends/devfuse/threads.ts): bound to its CPU, it
 * reads its clone of the connection, answers GETATTR, SETATTR (but sizes), STATX, READLINK and GETXATTR of published inodes,
 * LOOKUPs of absent names and of inodes the owner knows in published directories, UNLINKs and RMDIRs there while the owner keeps no
 * books on their victims, and READ, WRITE, FSYNC and FLUSH of published
 * open files itself (src/fs/thread-fs.ts), and posts every other request's bytes to the owner. It
 * ends when the connection does.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { encodeReply, type TransportIo } from '../../fuse/codec.js';
import { Op } from '../../fuse/opcodes.js';
import { DECLINED } from '../../fuse/protocol-server.js';
import { childLogger } from '../../log.js';
import { sys } from '../../sys/syscalls.js';
import { HandedOps, testFault, threadServer } from '../thread-server.js';
import { RING_DEPTH, RingSession, entryReplySpace, type RingRequests } from './ring.js';
import { DevFuseSession, keepPolling } from './session.js';
import {
  ANSWERED_AT_ONCE, asideTurn, HANDOVER_ASIDE_MS, NO_ASIDE, THREAD_STATS, awaitBack, BACK_WAITING, entryIo, farRead, type AnsweredHandOver, type RingHandOver, type ThreadData, type ThreadReady,
} from './threads.js';

const d = workerData as ThreadData;
const { server, counters, enosys, log, update, close } = threadServer(d);
const port = d.port;
if (d.cpu >= 0) {
  try {
    sys.pinThread(d.cpu);
  } catch (e) {
    log.warn({ cpu: d.cpu, code: (e as { code?: string }).code }, 'cannot bind the serving thread to its CPU');
  }
}
// each growth of the owner's inode table comes as a message
parentPort!.on('message', (m: unknown) => void update(m));
/** requests answered ENOSYS here (in the served count: the filesystem never sees them) */
let enosysHere = 0;
await server.adopt(d.negotiated);

const stats = new Float64Array(d.stats);
// [busy, done] per thread: busy from before a read until its request is served or handed over
// (ServingThreads.settle waits for it), done counts the requests that got there
const gate = new Int32Array(d.gate);
const busy = d.index * 2;
const release = (): void => {
  Atomics.store(gate, busy, 0);
  Atomics.add(gate, busy + 1, 1);
  Atomics.notify(gate, busy);
};
const row = d.index * THREAD_STATS;
const handedOps = new HandedOps(d.handedOps);
/** count a request handed over, by its opcode */
const handed = (req: Buffer): void => {
  stats[row + 2] = ++handedOver;
  handedOps.count(d.index, req);
};
const back = new Int32Array(d.back);
const turn = asideTurn(new Int32Array(d.aside), d.index);
let requests = 0;
let handedOver = 0;
let answeredAtOnce = 0;
let farReads = 0;


const handler: RingRequests = {
  negotiated: true,
  // after a large READ of a caller on another CPU this thread polls for the next one: the reader
  // streams, and this is not the CPU it copies on
  answered: (req, qid) => {
    if (qid !== d.cpu && farRead(req)) keepPolling(d.hotMs);
  },
  bufferSize: () => server.bufferSize(),
  reuseReplies: () => server.reuseReplies(),
  recycle: (reply) => server.recycle(reply),
  reading: (active) => {
    if (active) Atomics.store(gate, busy, 1);
    else release();
  },
  async handle(req: Buffer, entry?: number, qid?: number, io?: TransportIo): Promise<Buffer | null> {
    // A large READ of a caller on this CPU is served by the owner, on another CPU (FAR_READ). An
    // entry of another queue (it came here with a large READ the owner handed over) goes home with
    // anything but such a READ. Neither waits for its reply: the owner commits it through its own
    // ring, and the entry follows it.
    if (entry !== undefined && ring !== null && qid !== undefined && (qid === d.cpu) === farRead(req)) {
      stats[row] = ++requests;
      handed(req);
      if (qid === d.cpu) stats[row + 6] = ++farReads;
      const copy = new ArrayBuffer(req.length);
      new Uint8Array(copy).set(req);
      port.postMessage({ entry, req: copy } satisfies RingHandOver, [copy]);
      release();
      return null;
    }
    if (testFault(req)) return new Promise(() => {});
    const reply = await server.handle(req, io);
    stats[row] = ++requests;
    if (reply !== DECLINED && enosys.has(req.readUInt32LE(4))) enosysHere++;
    stats[row + 1] = counters.served + enosysHere;
    stats[row + 3] = counters.negativeLookups;
    stats[row + 5] = counters.removals;
    stats[row + 7] = counters.positiveLookups;
    if (reply !== DECLINED) {
      release();
      return reply;
    }
    // the owner serves it; the bytes are copied (the buffer is reused)
    handed(req);
    const copy = new ArrayBuffer(req.length);
    new Uint8Array(copy).set(req);
    // a RELEASE is answered here at once, the owner closes the fds without a reply (ANSWERED_AT_ONCE)
    if (ANSWERED_AT_ONCE.has(req.readUInt32LE(4))) {
      port.postMessage({ answered: true, req: copy } satisfies AnsweredHandOver, [copy]);
      stats[row + 4] = ++answeredAtOnce;
      release();
      return encodeReply(req.readBigUInt64LE(8));
    }
    // from a clone: the owner answers on this thread's clone, and reads the device alone a while
    if (entry === undefined || ring === null) {
      if (ring === null && !NO_ASIDE) {
        session.standAside(HANDOVER_ASIDE_MS, turn);
        stats[row + 8] = session.stoodAside;
      }
      port.postMessage(copy, [copy]);
      release();
      return null;
    }
    // from the ring (ReplyBack): its caller waits, and so does this thread, for the owner to build
    // the reply in the entry's reply space; committed through this thread's ring, the entry stays
    // with it. If the owner takes too long, it commits the reply itself
    const space = entryReplySpace(entry);
    Atomics.store(back, 0, entry * 4 + BACK_WAITING);
    port.postMessage({ entry, req: copy } satisfies RingHandOver, [copy]);
    const n = awaitBack(back, entry);
    release();
    return n < 0 ? null : space.subarray(0, n);
  },
};
const session = new DevFuseSession(d.fd, handler, childLogger('devfuse', log));
session.start();
// Over io_uring the kernel sends this thread the requests of callers on its CPU; the clone above
// still brings what the kernel keeps on /dev/fuse (FORGET, INTERRUPT), or everything should the
// kernel refuse a ring entry and fall back. What this thread hands over, the owner answers through
// its own ring; a READ or WRITE of this thread's queue that reached the owner comes back here.
let ring: RingSession | null = null;
if (d.ring !== null) {
  try {
    ring = new RingSession(d.fd, handler, childLogger('ring', log));
    if (d.cpu >= 0 && d.cpu < d.ring.possible) ring.register({ qids: [d.cpu], perQueue: RING_DEPTH, payloadSize: d.ring.payloadSize });
    ring.start(d.ring.payloadSize);
    const r = ring;
    port.on('message', (m: RingHandOver) => {
      const req = Buffer.from(m.req);
      handler.handle(req, m.entry, undefined, entryIo(req, m.entry)).then((reply) => {
        if (reply === null) return;
        r.commit(m.entry, reply);
        // a large READ comes from the owner only for a caller on another CPU (routeRing, FAR_READ):
        // poll for the reader's next one, as after those this ring reads itself
        if (farRead(req)) keepPolling(d.hotMs);
      }, (e: unknown) => log.error({ err: e }, 'serving a request handed back failed (bug)'));
    });
  } catch (e) {
    // the owner registers this queue instead
    log.warn({ code: (e as { code?: string }).code, cpu: d.cpu }, 'cannot register a FUSE ring on this thread; the owner serves its queue');
    ring?.close();
    ring = null;
  }
}
parentPort!.postMessage({ ready: true, qids: ring ? ring.qids : [] } satisfies ThreadReady);
await session.done;
// the connection ended: the ring's entries ended with it
ring?.close();
close();
process.exit(0);
