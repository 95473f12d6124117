/**
 * The /dev/fuse transport: one reader on the device fd, each request handed to the protocol server,
 * each reply written back. No filesystem logic and no protocol parsing here (STYLE 6).
 *
 * The reader is the event loop itself: the device fd is non-blocking and watched with uv_poll (the
 * addon's pollStart), and the main thread reads a request when the kernel has one. Nothing sits
 * blocked in read(2): a blocking read would hold a thread per reader (on the libuv pool it starves
 * every async fs call; on worker threads each request costs a hand-over between threads:
 * measured, a third of the random reads per second), and a thread blocked in read(2) cannot be cancelled, so the
 * process could not exit before the kernel ended the connection. Concurrency comes from the
 * filesystem's async calls, not from more readers.
 *
 * Buffer ownership: the protocol server keeps views into a request (names, WRITE data) until its
 * promise settles, and the filesystem may hold WRITE data across an async pwrite. Each request is
 * therefore copied out of the reader's reused buffer into a buffer of its own (n bytes, not the
 * full read size), except large ones (WRITEs), which keep the slab they were read into.
 */
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
  /** told before each read of the device (true), and when that read brought no request (false) */
  reading?(active: boolean): void;
  recycle?(reply: Buffer): void;
}

/** Requests above this size (WRITE payloads) are served from the slab they were read into. */
const LARGE_REQUEST = 64 * 1024;

export interface SessionEnd {
  /** 'unmounted': the kernel ended the connection (ENODEV, ECONNABORTED); 'error': reading the device failed otherwise */
  reason: 'unmounted' | 'error';
  code?: string;
}

/**
 * How a failed read of the device ends the session. ENODEV: the connection ended (unmounted, or
 * aborted). ECONNABORTED says the same: the kernel's answer to a read once the connection was
 * aborted, for a server that negotiated FUSE_ABORT_ERROR. This server does not negotiate it, yet
 * CI once saw it on the owner's read of a detached mount served by two threads, right after the
 * mount's last open file was closed (test/mount/smoke.test.ts, 1 run in about 40 here; what set
 * it is not known), and the server, already stopping, took it for a failure and exited 1. Either
 * way nothing is left to serve; any other error is a failure.
 */
export function sessionEnd(code: string): SessionEnd {
  if (code === 'ENODEV' || code === 'ECONNABORTED') return { reason: 'unmounted', code };
  return { reason: 'error', code };
}

/**
 * Which of the readers of one connection stands aside (DevFuseSession.standAside): one at a time,
 * so that someone always reads.
 */
export interface AsideTurn {
  /** true: this reader may stop reading now */
  take(): boolean;
  /** it reads again */
  give(): void;
}

interface EndMessage {
  end: string;
  message?: string;
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

/**
 * Keep this thread's event loop polling, without sleeping, for `ms` (a later call extends it): the
 * next request or hand-over is then taken on the next turn instead of after a wake-up, which on a
 * VM is an IPI and a halt exit (tens of microseconds). 0: nothing. One thread serving /dev/fuse
 * alone, measured side by side on tmpfs (partial scripts/bench, 2026-12-05, 0 against 200 us):
 * create+stat+unlink 23.9 -> 9.2 s, tar -x 18.5 -> 7.3 s, du 0.41 -> 0.27 s, random 4 KiB reads
 * 9,800 -> 23,300 IOPS, at the same or less server CPU per request (the sleep and wake-up cost
 * more than the polling).
 */
export function keepPolling(ms: number): void {
  if (ms > 0) sys.loopHot(ms);
}

export class DevFuseSession {
  private readonly once: LogOnce;
  private ended = false;
  private resolveEnd!: (e: SessionEnd) => void;
  private resolveLive!: () => void;
  private isLive = false;
  /** requests handed to the server and not yet answered */
  inflight = 0;
  requests = 0;

  private reader: unknown = null;
  private idle: (() => void) | null = null;
  private arm: (() => void) | null = null;
  private paused = false;
  /** the timer of standAside, while this session does not read */
  private aside: ReturnType<typeof setTimeout> | null = null;
  private asideTurn: AsideTurn | null = null;
  /** times this session stood aside */
  stoodAside = 0;
  /**
   * Where other readers serve the same connection (ServingThreads on clones): after reading a
   * request for which `when` holds (of the read buffer, the request's length), stop reading for
   * `ms` (standAside). null: never.
   */
  stepBack: { ms: number; when: (buf: Buffer, n: number) => boolean; turn: AsideTurn } | null = null;
  /** with hotMs 0: how long to poll after a reply all the same (0: not); asked at each reply */
  pollAfterReply: (() => number) | null = null;

  /** Resolves when the reader has stopped: the connection ended (unmount, abort) or a read failed. */
  readonly done: Promise<SessionEnd>;
  /** Resolves once INIT has been answered: the mount serves requests. */
  readonly live: Promise<void>;

  constructor(
    private readonly fd: number,
    private readonly server: RequestHandler,
    private readonly log: Logger,
    /** after each reply, keep polling this long (keepPolling); 0: sleep at once */
    private readonly hotMs = 0,
  ) {
    this.once = new LogOnce(log);
    this.done = new Promise((r) => (this.resolveEnd = r));
    this.live = new Promise((r) => (this.resolveLive = r));
  }

  /**
   * Watch the device fd on the event loop (uv_poll); when the kernel has requests, the main thread
   * reads one itself and hands it to the server (the loop only retries reads that a signal or an
   * interrupted request cut short).
   */
  start(): void {
    const size = this.server.bufferSize();
    // every reply goes through write(), which gives it back once written
    this.server.reuseReplies?.();
    const fl = sys.fcntlInt(this.fd, F_GETFL, 0);
    sys.fcntlInt(this.fd, F_SETFL, fl | O_NONBLOCK);
    // a large request (a WRITE) keeps the slab it was read into until it is done, and the next
    // read gets another slab: no copy, and no fresh megabyte per request
    const slabs = new SlabPool(size);
    let buf = slabs.take();
    const gate = this.server.reading?.bind(this.server);
    const stop = (m: EndMessage): void => {
      if (this.reader === null) return;
      sys.pollStop(this.reader);
      this.reader = null;
      this.readerEnded(m);
    };
    const onReadable = (): void => {
      // One request per wake-up: its reply (written from a microtask, once this callback returns)
      // goes out before anything else is read, so a lone client never waits for our EAGAIN read.
      // The poll is level-triggered: queued requests wake the loop again at once.
      for (let i = 0; i < 64 && this.reader !== null; i++) {
        gate?.(true);
        const n = readDev(this.fd, buf, size);
        if (typeof n !== 'number' || n <= 0) gate?.(false);
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
        const back = this.stepBack;
        if (back !== null && back.when(buf, n)) this.standAside(back.ms, back.turn);
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
    };
    this.arm = () => {
      this.reader = sys.pollStart(this.fd, onReadable);
    };
    this.arm();
  }

  /**
   * Stop reading for `ms` (a request already read is still served), if `turn` lets this reader
   * (another reader of the connection that stood aside could leave no one reading): the other
   * readers take what comes meanwhile. Not after pause() or the end.
   */
  standAside(ms: number, turn: AsideTurn): void {
    if (this.reader === null || this.aside !== null || !turn.take()) return;
    sys.pollStop(this.reader);
    this.reader = null;
    this.stoodAside++;
    this.asideTurn = turn;
    this.aside = setTimeout(() => {
      this.endAside();
      if (!this.ended && !this.paused) this.arm?.();
    }, ms);
  }

  /** No longer standing aside (the timer ran out, pause(), the end): the turn goes back. */
  private endAside(): void {
    if (this.aside !== null) clearTimeout(this.aside);
    this.aside = null;
    this.asideTurn?.give();
    this.asideTurn = null;
  }

  /**
   * Stop reading (requests not read stay queued in the kernel for whoever reads the device next)
   * and resolve once every request read is answered, or after `waitMs`.
   */
  async pause(waitMs: number): Promise<void> {
    this.paused = true;
    this.endAside();
    if (this.reader !== null) sys.pollStop(this.reader);
    this.reader = null;
    if (this.inflight === 0) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, waitMs);
      this.idle = () => {
        clearTimeout(t);
        resolve();
      };
    });
    this.idle = null;
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
        if (this.inflight === 0) this.idle?.();
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
      keepPolling(this.hotMs > 0 ? this.hotMs : this.pollAfterReply?.() ?? 0);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'ENOENT') return; // the request was interrupted and is gone
      if (code === 'ENODEV') return; // unmounted under us: the reader sees it too
      this.once.error(`write-${code}`, { code, len: reply.length }, `writing a reply to /dev/fuse failed (${code})`);
    }
    if (!this.isLive && this.server.negotiated) {
      this.isLive = true;
      this.resolveLive();
    }
  }

  private readerEnded(m: EndMessage): void {
    const end = sessionEnd(m.end);
    if (end.reason === 'error') this.log.error({ code: m.end }, `reading /dev/fuse failed: ${m.message ?? m.end}`);
    else if (m.end !== 'ENODEV') this.log.info({ code: m.end }, `the kernel ended the connection (${m.end})`);
    // further replies could only fail; the fd may be closed soon
    this.ended = true;
    this.endAside();
    this.resolveEnd(end);
  }
}
