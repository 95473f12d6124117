/**
 * The serving thread of one virtio-fs request queue (queue-threads.ts): it maps guest memory from
 * the fds the owner gives it, runs the queue's ring (QueueRunner), answers what the filesystem as
 * it sees it can answer (src/frontends/thread-server.ts) and hands every other request to the
 * owner as bytes, writing the owner's reply into the chain. Before INIT is settled (and after
 * DESTROY) it hands everything over. It ends when the owner terminates it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { TransportIo } from '../../fuse/codec.js';
import { DECLINED } from '../../fuse/protocol-server.js';
import { LogOnce } from '../../log.js';
import { HandedOps, testFault, threadServer } from '../thread-server.js';
import { GuestMemory, type MemoryRegion } from './guest-memory.js';
import { closeQuietly, mapRegion, unmap } from './mapping.js';
import type { RemoteQueueSpec, RemoteRegion } from './connection.js';
import { QUEUE_STATS, type FromQueueThread, type HandOverBatch, type QueueThreadData, type ToQueueThread } from './queue-threads.js';
import { QueueRunner, type QueueHost } from './queue-runner.js';
import { SplitQueue } from './vring.js';

const d = workerData as QueueThreadData;
const { server, counters, enosys, log, update, close } = threadServer(d, { queue: d.queue });
const port = parentPort!;
const once = new LogOnce(log);
const ctl = new Int32Array(d.ctl);
const stats = new Float64Array(d.stats);
const handedOps = new HandedOps(d.handedOps);
const row = d.index * QUEUE_STATS;

let adopted = false;
let requests = 0;
let handedOver = 0;
/** requests answered ENOSYS here (the filesystem never sees them) */
let enosysHere = 0;

/** the queue as it runs: its memory, ring and the fds this thread owns */
interface Running {
  spec: RemoteQueueSpec;
  memory: GuestMemory;
  regions: MemoryRegion[];
  runner: QueueRunner;
  kickFd: number;
  callFd: number;
}
let running: Running | null = null;

/** hand-overs waiting for the owner's reply */
const waiting = new Map<number, (reply: Buffer | null) => void>();
let nextId = 1;

const post = (m: FromQueueThread, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);

/**
 * Hand-overs of this turn of the event loop, posted as one message once the turn's chains are
 * taken (the owner is woken once, and the message machinery runs once, for all of them).
 */
let outbox: HandOverBatch = [];
function flushOutbox(): void {
  const batch = outbox;
  outbox = [];
  post({ handOvers: batch }, batch.map((h) => h.req));
}

/** Hand a request to the owner (a WRITE with its payload, which stays in guest memory otherwise); its reply. */
function handOver(req: Buffer, io: TransportIo | undefined): Promise<Buffer | null> {
  let whole = req;
  if (io?.payload) whole = Buffer.concat([req, ...io.payload.map(([ab, off, len]) => Buffer.from(ab, off, len))]);
  const copy = new ArrayBuffer(whole.length);
  new Uint8Array(copy).set(whole);
  const id = nextId++;
  stats[row + 2] = ++handedOver;
  handedOps.count(d.index, whole);
  return new Promise((resolve) => {
    waiting.set(id, resolve);
    if (outbox.push({ id, req: copy }) === 1) setImmediate(flushOutbox);
  });
}

const host: QueueHost = {
  async handle(req, io) {
    stats[row] = ++requests;
    if (testFault(req)) return new Promise(() => {});
    if (adopted) {
      const reply = await server.handle(req, io);
      if (reply !== DECLINED) {
        if (req.length >= 8 && enosys.has(req.readUInt32LE(4))) enosysHere++;
        stats[row + 1] = counters.served + enosysHere;
        return reply;
      }
    }
    return handOver(req, io);
  },
  recycle: (reply) => server.recycle(reply),
  holding: () => false,
  taken: () => {},
  answering: () => {},
  answered: () => {},
  settled: () => {},
  broken: (_q, why) => stopBroken(why),
  fail: (why) => stopBroken(why),
  guard: (what, fn) => {
    try {
      fn();
    } catch (e) {
      log.error({ err: e, what }, 'vhost-user: internal error in a serving thread; its queue stops');
      stopBroken(`internal error in ${what}: ${(e as Error).message}`);
    }
  },
  counters: { requests: 0, replies: 0, signals: 0 },
  once,
};

/** The guest broke the ring (or this thread cannot go on): the queue stops here, and the owner is told. */
function stopBroken(why: string): void {
  if (running === null) return;
  running.runner.stop();
  post({ broken: why });
}

/** Map `regions` (taking their fds over): the memory, or an error. */
function mapAll(regions: readonly RemoteRegion[]): { memory: GuestMemory; regions: MemoryRegion[] } | { error: string } {
  const mapped: MemoryRegion[] = [];
  try {
    for (const r of regions) mapped.push(...mapRegion(r, r.fd));
  } catch (e) {
    for (const m of mapped) unmap(m);
    return { error: (e as Error).message };
  } finally {
    for (const r of regions) closeQuietly(r.fd);
  }
  const memory = new GuestMemory();
  const res = memory.replaceAll(mapped);
  if ('error' in res) {
    for (const m of mapped) unmap(m);
    return { error: res.error };
  }
  return { memory, regions: mapped };
}

function ring(memory: GuestMemory, spec: RemoteQueueSpec, lastAvail: number): SplitQueue | { error: string } {
  return SplitQueue.create(memory, {
    num: spec.num, desc: spec.desc, avail: spec.avail, used: spec.used, lastAvail, eventIdx: spec.eventIdx, indirect: spec.indirect, maxChainBytes: spec.maxChainBytes,
  });
}

function start(spec: RemoteQueueSpec, regions: RemoteRegion[]): number {
  if (running !== null) stop();
  const m = mapAll(regions);
  const fail = (why: string): number => {
    closeQuietly(spec.kickFd);
    closeQuietly(spec.callFd);
    log.warn({ queue: d.queue, why }, 'vhost-user: a serving thread cannot start its queue');
    return -1;
  };
  if ('error' in m) return fail(m.error);
  const r = ring(m.memory, spec, spec.lastAvail);
  if (!(r instanceof SplitQueue)) {
    for (const g of m.regions) unmap(g);
    return fail(r.error);
  }
  const runner = new QueueRunner(d.queue, r, spec.kickFd, spec.callFd, host);
  running = { spec, memory: m.memory, regions: m.regions, runner, kickFd: spec.kickFd, callFd: spec.callFd };
  // a kick fd that cannot be polled breaks the queue (the owner is told, and stops it)
  runner.start();
  log.info({ queue: d.queue, size: spec.num, from: spec.lastAvail }, 'serving a request queue on its own thread');
  return 0;
}

/** Stop the queue (if it runs): where it stopped. The memory is unmapped once no I/O uses it (the addon's unmap). */
function stop(): number {
  if (running === null) return 0;
  const r = running;
  running = null;
  const at = r.runner.stop();
  for (const g of r.regions) unmap(g);
  r.memory.clear();
  closeQuietly(r.kickFd);
  closeQuietly(r.callFd);
  return at;
}

function remap(regions: RemoteRegion[]): number {
  if (running === null) {
    for (const g of regions) closeQuietly(g.fd);
    return 0;
  }
  const m = mapAll(regions);
  if ('error' in m) {
    log.warn({ queue: d.queue, why: m.error }, 'vhost-user: a serving thread cannot map the new memory table');
    return -1;
  }
  const r = ring(m.memory, running.spec, running.runner.lastAvailIdx);
  if (!(r instanceof SplitQueue)) {
    for (const g of m.regions) unmap(g);
    log.warn({ queue: d.queue, why: r.error }, 'vhost-user: a serving thread cannot rebuild its ring in the new memory table');
    return -1;
  }
  running.runner.replaceRing(r);
  const old = running.regions;
  running.memory = m.memory;
  running.regions = m.regions;
  for (const g of old) unmap(g);
  return 0;
}

/** The answer to the owner's call `seq`. */
function answer(seq: number, result: number): void {
  Atomics.store(ctl, 1, result);
  Atomics.store(ctl, 0, seq);
  Atomics.notify(ctl, 0);
}

port.on('message', (m: ToQueueThread) => {
  if (update(m)) return;
  if ('replies' in m) {
    for (const r of m.replies) {
      const resolve = waiting.get(r.id);
      waiting.delete(r.id);
      resolve?.(r.bytes === null ? null : Buffer.from(r.bytes));
    }
  } else if ('adopt' in m) {
    if (m.adopt === null) adopted = false;
    else {
      server.adopt(m.adopt).then(() => (adopted = true), (e: unknown) => {
        adopted = false;
        once.warn('adopt', { err: e }, 'a serving thread cannot take over what INIT settled; the owner serves its queue');
      });
    }
  } else if ('start' in m) answer(m.seq, start(m.start, m.regions));
  else if ('stop' in m) answer(m.seq, stop());
  else if ('remap' in m) answer(m.seq, remap(m.remap));
  else if ('kick' in m) {
    if (running === null) closeQuietly(m.kick);
    else {
      closeQuietly(running.kickFd);
      running.kickFd = m.kick;
      running.runner.setKick(m.kick);
    }
  } else if ('end' in m) {
    stop();
    close();
    process.exit(0);
  } else if ('call' in m) {
    if (running === null) closeQuietly(m.call);
    else {
      closeQuietly(running.callFd);
      running.callFd = m.call;
      running.runner.callFd = m.call;
    }
  }
});
post({ ready: true });
