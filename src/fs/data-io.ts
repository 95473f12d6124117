/**
 * Reads and writes without stalling the event loop on the disk. Page-cache hits are served at
 * once on this thread (RWF_NOWAIT); what would block goes to the pool. A short non-blocking read
 * ends at EOF when the file ends there (fstat), and is otherwise finished the slow way. Where the
 * filesystem cannot tell (RWF_NOWAIT unsupported: tmpfs, and buffered writes on ext4), requests up
 * to INLINE_IO_MAX are done here too, as virtiofsd does all of them by default: a pool round trip
 * costs more than copying that much into the page cache. A filesystem (device) that refused
 * RWF_NOWAIT once is not asked again.
 */
import { E } from '../errors.js';
import { sys, statAt, AT_EMPTY_PATH } from '../sys/syscalls.js';
import { EMPTY, type FsCounters } from './services.js';

/** Reads and writes up to this size are done inline when RWF_NOWAIT cannot be used. */
const INLINE_IO_MAX = 128 * 1024;

export class NowaitIo {
  /** devices whose filesystem refused RWF_NOWAIT reads / writes (EOPNOTSUPP) */
  private readonly refused = { read: new Set<number>(), write: new Set<number>() };

  constructor(private readonly counters: FsCounters) {}

  /** Read up to `size` bytes at `offset` into `buf`; the count read (short only at EOF). */
  read(fd: number, buf: Buffer, size: number, offset: number, dev: number): number | Promise<number> {
    const r = this.refused.read.has(dev) ? -E.EOPNOTSUPP : sys.preadNowait(fd, buf, 0, size, offset);
    if (r === size) return r;
    if (r < 0 && r !== -E.EAGAIN) {
      this.noteRefusal(this.refused.read, dev, r);
      if (size <= INLINE_IO_MAX) return sys.pread(fd, buf, 0, size, offset);
      return sys.preadAsync(fd, buf, 0, size, offset);
    }
    const fast = r < 0 ? 0 : r;
    if (BigInt(offset + fast) >= statAt(fd, EMPTY, AT_EMPTY_PATH).size) return fast;
    return sys.preadAsync(fd, buf, fast, size - fast, offset + fast).then((m) => fast + m);
  }

  /** Write all of `data` at `pos` (-1: at the file's end, O_APPEND). */
  write(fd: number, data: Buffer, pos: number, dev: number): number | Promise<number> {
    const len = data.length;
    const r = pos >= 0 && !this.refused.write.has(dev) ? sys.pwriteNowait(fd, data, 0, len, pos) : -E.EOPNOTSUPP;
    if (r === len) return r;
    if (r < 0 && r !== -E.EAGAIN) {
      if (pos >= 0) this.noteRefusal(this.refused.write, dev, r);
      if (len <= INLINE_IO_MAX) return sys.pwrite(fd, data, 0, len, pos);
      return sys.pwriteAsync(fd, data, 0, len, pos);
    }
    const fast = r < 0 ? 0 : r;
    return sys.pwriteAsync(fd, data, fast, len - fast, pos + fast).then((m) => fast + m);
  }

  private noteRefusal(set: Set<number>, dev: number, r: number): void {
    if (r !== -E.EOPNOTSUPP || set.has(dev)) return;
    set.add(dev);
    this.counters.nowaitRefusals++;
  }
}
