// The floor server of scripts/bench-floor: FUSE answered from constants (LOOKUP of any name is one
// file, GETATTR, INIT, FORGET; everything else ENOSYS), so that what a stat loop costs through it
// is the channel and the event loop alone. Shared by the tool and its per-CPU worker threads.
import { sys, F_GETFL, F_SETFL, O_NONBLOCK } from '../../dist/sys/syscalls.js';

const IN_HEADER = 40, OUT_HEADER = 16, ATTR = 88;
const OP = { LOOKUP: 1, FORGET: 2, GETATTR: 3, INIT: 26, DESTROY: 38, BATCH_FORGET: 42 } as const;
const FILE_ID = 2n;

function reply(unique: bigint, payload: number, error = 0): Buffer {
  const b = Buffer.alloc(OUT_HEADER + (error ? 0 : payload));
  b.writeUInt32LE(b.length, 0);
  b.writeInt32LE(-error, 4);
  b.writeBigUInt64LE(unique, 8);
  return b;
}

function attr(b: Buffer, at: number, ino: bigint): void {
  const dir = ino === 1n;
  b.writeBigUInt64LE(ino, at);
  b.writeBigUInt64LE(dir ? 0n : 3n, at + 8); // size
  b.writeUInt32LE(dir ? 0o40755 : 0o100644, at + 60); // mode
  b.writeUInt32LE(dir ? 2 : 1, at + 64); // nlink
  b.writeUInt32LE(4096, at + 80); // blksize
}

/** The RequestHandler of the floor: INIT, LOOKUP of anything as one file, GETATTR, FORGET; else ENOSYS. */
export class FloorServer {
  negotiated: unknown = null;
  bufferSize(): number {
    return 1 << 17;
  }
  async handle(req: Buffer): Promise<Buffer | null> {
    return this.answer(req);
  }
  answer(req: Buffer): Buffer | null {
    const op = req.readUInt32LE(4);
    const unique = req.readBigUInt64LE(8);
    const nodeid = req.readBigUInt64LE(16);
    switch (op) {
      case OP.INIT: {
        const b = reply(unique, 64);
        b.writeUInt32LE(7, OUT_HEADER);
        b.writeUInt32LE(Math.min(req.readUInt32LE(IN_HEADER + 4), 31), OUT_HEADER + 4);
        b.writeUInt32LE(1 << 17, OUT_HEADER + 8); // max_readahead
        b.writeUInt32LE(1 << 16, OUT_HEADER + 20); // max_write: a read needs room for it and a WRITE's headers
        this.negotiated = true;
        return b;
      }
      case OP.LOOKUP: {
        const b = reply(unique, 128);
        b.writeBigUInt64LE(FILE_ID, OUT_HEADER); // nodeid; generation, entry and attr timeouts 0
        attr(b, OUT_HEADER + 40, FILE_ID);
        return b;
      }
      case OP.GETATTR: {
        const b = reply(unique, 16 + ATTR);
        attr(b, OUT_HEADER + 16, nodeid);
        return b;
      }
      case OP.FORGET:
      case OP.BATCH_FORGET:
        return null;
      case OP.DESTROY:
        return reply(unique, 0);
      default:
        return reply(unique, 0, 38); // ENOSYS
    }
  }
}

/**
 * The bare loop: the device watched with uv_poll, each request read and answered in the poll
 * callback itself (no promise, no copy of the request): what the event loop and N-API cost alone.
 */
export function bareLoop(fd: number, server: FloorServer): { done: Promise<void>; stop(): void } {
  const buf = Buffer.allocUnsafe(server.bufferSize());
  let settle!: () => void;
  const done = new Promise<void>((r) => (settle = r));
  let live = true;
  const stop = (): void => {
    if (!live) return;
    live = false;
    sys.pollStop(poll);
    settle();
  };
  sys.fcntlInt(fd, F_SETFL, sys.fcntlInt(fd, F_GETFL, 0) | O_NONBLOCK);
  const poll = sys.pollStart(fd, () => {
    let n: number;
    try {
      n = sys.readNonblock(fd, buf, 0, buf.length, -1);
    } catch {
      n = 0;
    }
    if (n === 0) {
      stop(); // the connection ended (ENODEV) or the device failed
      return;
    }
    if (n < 0) return; // EAGAIN, EINTR, ENOENT: nothing to answer
    const out = server.answer(buf);
    if (out) {
      try {
        sys.pwrite(fd, out, 0, out.length, -1);
      } catch {
        /* the request was interrupted */
      }
    }
  });
  return { done, stop };
}

/** What a per-CPU floor thread (tools/lib/floor-worker.ts) is given. */
export interface FloorWorkerData {
  /** its own channel: a FUSE_DEV_IOC_CLONE of the connection */
  fd: number;
  cpu: number;
}
