/**
 * The /dev/fuse transport: N readers on the device fd, each request handed to the protocol server,
 * each reply written back. No filesystem logic and no protocol parsing here (STYLE 6).
 *
 * Why readers are threads of their own ('thread', the default): a read on /dev/fuse blocks until
 * the kernel has a request. `fs.read` runs that read on the libuv pool, so every idle reader holds
 * one pool thread; with the default pool of 4, four readers would starve every other async fs call
 * and the addon's *Async calls, and the server would hang. Raising UV_THREADPOOL_SIZE does not work
 * from inside the program: Node 20 loads ES modules with async reads, so the pool already exists
 * (with the size from the environment at exec time) before the entry module's first line runs.
 * Measured: an ESM entry that sets UV_THREADPOOL_SIZE=16 first thing still gets 4 pool threads.
 * So 'thread' readers block in readSync on worker threads and transfer each request to the main
 * thread; 'pool' readers (fs.read) remain for when UV_THREADPOOL_SIZE was set by whoever started
 * the process (scripts/handlefs exports it), and are refused when the pool is too small.
 *
 * Buffer ownership: the protocol server keeps views into a request (names, WRITE data) until its
 * promise settles, and the filesystem may hold WRITE data across an async pwrite. Each request is
 * therefore copied out of the reader's reused buffer into a buffer of its own (n bytes, not the
 * full read size), and the reader restarts at once.
 *
 * Exit: a thread blocked in read(2) cannot be cancelled, and Node joins pool and worker threads at
 * exit, so the process can only exit after every reader has returned: unmounting (or aborting the
 * connection) makes every pending read fail with ENODEV, which ends the session.
 */
import * as fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { SlabPool } from '../../fuse/slab-pool.js';
import { LogOnce } from '../../log.js';
import { sys, F_GETFL, F_SETFL, O_NONBLOCK } from '../../sys/syscalls.js';

/** What the session needs from the protocol server (src/fuse/protocol-server.ts). */
export interface RequestHandler {
  handle(req: Buffer): Promise<Buffer | null>;
  bufferSize(): number;
  readonly negotiated?: unknown;
  /** told that every reply is given back (recycle) once written */
  reuseReplies?(): void;
  recycle?(reply: Buffer): void;
}

export type ReaderKind = 'poll' | 'thread' | 'pool';

/** Requests above this size (WRITE payloads) are served from the slab they were read into. */
const LARGE_REQUEST = 64 * 1024;

export interface SessionOptions {
  readers: number;
  kind: ReaderKind;
}

export interface SessionEnd {
  /** 'unmounted': the kernel ended the connection (ENODEV); 'error': a reader failed otherwise */
  reason: 'unmounted' | 'error';
  code?: string;
}

interface EndMessage {
  end: string;
  message?: string;
}

/** Pool threads that must stay free for the filesystem when readers use the pool. */
export const POOL_HEADROOM = 4;

/** The pool size libuv was started with (read from the environment, as libuv does). */
export function poolSize(): number {
  const n = Number(process.env.UV_THREADPOOL_SIZE);
  return Number.isInteger(n) && n > 0 ? Math.min(n, 1024) : 4;
}

const EAGAIN = 11;
const EINTR = 4;
const ENOENT = 2;

/** One non-blocking read of the device: the count, a negative errno to retry on, or the code of a failure. */
function readDev(fd: number, buf: Buffer, size: number): number | string {
  try {
    return sys.readNonblock(fd, buf, 0, size, -1);
  } catch (e) {
    return (e as { code?: string }).code ?? 'EIO';
  }
}

export class DevFuseSession {
  private readonly once: LogOnce;
  private running = 0;
  private ended = false;
  private endReason: SessionEnd | null = null;
  private resolveEnd!: (e: SessionEnd) => void;
  private resolveLive!: () => void;
  private isLive = false;
  private readonly workers: Worker[] = [];
  /** requests handed to the server and not yet answered */
  inflight = 0;
  requests = 0;

  /** Resolves when every reader has stopped. */
  readonly done: Promise<SessionEnd>;
  /** Resolves when the first reader stops (on an error the others must be ended by unmount/abort). */
  readonly firstEnd: Promise<SessionEnd>;
  private resolveFirst!: (e: SessionEnd) => void;
  /** Resolves once INIT has been answered: the mount serves requests. */
  readonly live: Promise<void>;

  constructor(
    private readonly fd: number,
    private readonly server: RequestHandler,
    private readonly opts: SessionOptions,
    private readonly log: Logger,
  ) {
    this.once = new LogOnce(log);
    this.done = new Promise((r) => (this.resolveEnd = r));
    this.firstEnd = new Promise((r) => (this.resolveFirst = r));
    this.live = new Promise((r) => (this.resolveLive = r));
  }

  start(): void {
    const size = this.server.bufferSize();
    // every reply goes through write(), which gives it back once written
    this.server.reuseReplies?.();
    if (this.opts.kind === 'pool' && poolSize() < this.opts.readers + POOL_HEADROOM) {
      throw new Error(
        `pool readers need UV_THREADPOOL_SIZE >= ${this.opts.readers + POOL_HEADROOM} set before node starts (it is ${poolSize()})`,
      );
    }
    if (this.opts.kind === 'poll') {
      this.running = 1;
      this.startPoll(size);
      return;
    }
    for (let i = 0; i < this.opts.readers; i++) {
      this.running++;
      if (this.opts.kind === 'thread') this.startThread(size);
      else this.startPool(size);
    }
  }

  /**
   * 'poll' (the default): the device fd is non-blocking and watched by the event loop (uv_poll);
   * when the kernel has requests, the main thread reads one itself and hands it to the server (the
   * loop only retries reads that a signal or an interrupted request cut short). No thread hands
   * requests over (a request costs no thread wake-ups besides the loop's own), nothing sits
   * blocked in read(2), and the process can always exit.
   */
  private startPoll(size: number): void {
    const fl = sys.fcntlInt(this.fd, F_GETFL, 0);
    sys.fcntlInt(this.fd, F_SETFL, fl | O_NONBLOCK);
    // a large request (a WRITE) keeps the slab it was read into until it is done, and the next
    // read gets another slab: no copy, and no fresh megabyte per request
    const slabs = new SlabPool(size);
    let buf = slabs.take();
    let handle: unknown = null;
    const stop = (m: EndMessage): void => {
      if (handle === null) return;
      sys.pollStop(handle);
      handle = null;
      this.readerEnded(m);
    };
    handle = sys.pollStart(this.fd, () => {
      // One request per wake-up: its reply (written from a microtask, once this callback returns)
      // goes out before anything else is read, so a lone client never waits for our EAGAIN read.
      // The poll is level-triggered: queued requests wake the loop again at once.
      for (let i = 0; i < 64 && handle !== null; i++) {
        const n = readDev(this.fd, buf, size);
        if (n === -EAGAIN) return; // drained
        // -EINTR: a signal; -ENOENT: the request was interrupted before we read it
        if (n === -EINTR || n === -ENOENT) continue;
        if (typeof n === 'string') {
          stop({ end: n, message: n });
          return;
        }
        if (n === 0) {
          stop({ end: 'EOF' });
          return;
        }
        if (n > LARGE_REQUEST) {
          const held = buf;
          buf = slabs.take();
          this.dispatch(held.subarray(0, n), () => slabs.give(held));
          return;
        }
        const req = Buffer.allocUnsafe(n);
        buf.copy(req, 0, 0, n);
        this.dispatch(req);
        return;
      }
    });
  }

  private startThread(size: number): void {
    const w = new Worker(new URL('./reader-thread.js', import.meta.url), { workerData: { fd: this.fd, size } });
    this.workers.push(w);
    let why: EndMessage = { end: 'EXIT' };
    w.on('message', (m: ArrayBuffer | EndMessage) => {
      if (m instanceof ArrayBuffer) this.dispatch(Buffer.from(m));
      else why = m;
    });
    w.on('error', (e) => (why = { end: 'EWORKER', message: e.message }));
    w.on('exit', () => this.readerEnded(why));
  }

  private startPool(size: number): void {
    const buf = Buffer.allocUnsafeSlow(size);
    const next = (): void => {
      fs.read(this.fd, buf, 0, size, null, (err, n) => {
        if (err) {
          const code = err.code ?? 'EIO';
          if (code === 'EINTR' || code === 'EAGAIN' || code === 'ENOENT') return next();
          return this.readerEnded({ end: code, message: err.message });
        }
        if (n === 0) return this.readerEnded({ end: 'EOF' });
        const req = Buffer.allocUnsafe(n);
        buf.copy(req, 0, 0, n);
        next();
        this.dispatch(req);
      });
    };
    next();
  }

  /** `done`: called once the request buffer is no longer read (its reply is built). */
  private dispatch(req: Buffer, done?: () => void): void {
    this.requests++;
    this.inflight++;
    this.server.handle(req).then(
      (reply) => {
        this.inflight--;
        done?.();
        if (reply) this.write(reply);
      },
      (e: unknown) => {
        // handle() never rejects by contract; a rejection is a bug, and the request stays unanswered
        this.inflight--;
        done?.();
        this.once.error('handle-rejected', { err: e }, 'protocol server rejected a request (bug)');
      },
    );
  }

  private write(reply: Buffer): void {
    if (!this.ended) this.writeOut(reply);
    this.server.recycle?.(reply);
  }

  private writeOut(reply: Buffer): void {
    try {
      // a write to /dev/fuse never blocks: the kernel copies the reply and wakes the requester
      // (the addon's write: fs.writeSync validates and sets up a libuv request each time)
      sys.pwrite(this.fd, reply, 0, reply.length, -1);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'ENOENT') return; // the request was interrupted and is gone
      if (code === 'ENODEV') return; // unmounted under us: the readers will see it too
      this.once.error(`write-${code}`, { code, len: reply.length }, `writing a reply to /dev/fuse failed (${code})`);
    }
    if (!this.isLive && this.server.negotiated) {
      this.isLive = true;
      this.resolveLive();
    }
  }

  private readerEnded(m: EndMessage): void {
    if (m.end === 'ENODEV') {
      this.endReason ??= { reason: 'unmounted' };
    } else {
      if (!this.ended) this.log.error({ code: m.end }, `reading /dev/fuse failed: ${m.message ?? m.end}`);
      this.endReason ??= { reason: 'error', code: m.end };
    }
    // further replies could only fail; the fd may be closed soon
    this.ended = true;
    this.resolveFirst(this.endReason);
    if (--this.running === 0) this.resolveEnd(this.endReason);
  }
}
