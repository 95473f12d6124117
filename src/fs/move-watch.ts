import type { Logger } from 'pino';
import { E } from '../errors.js';
import {
  sys, AT_FDCWD, O_RDONLY, FAN_ATTRIB, FAN_CLASS_NOTIF, FAN_CLOEXEC, FAN_CREATE, FAN_DELETE, FAN_DIRENT,
  FAN_EVENT_INFO_TYPE_DFID, FAN_EVENT_INFO_TYPE_DFID_NAME, FAN_EVENT_INFO_TYPE_FID, FAN_MARK_ADD, FAN_MARK_FILESYSTEM,
  FAN_MODIFY, FAN_MOVED_FROM, FAN_MOVED_TO, FAN_NONBLOCK, FAN_ONDIR, FAN_Q_OVERFLOW, FAN_REPORT_DIR_FID, FAN_REPORT_FID,
  FAN_REPORT_NAME,
} from '../sys/syscalls.js';

/** struct fanotify_event_metadata */
const META_SIZE = 24;
/** struct fanotify_event_info_header + __kernel_fsid_t */
const FID_INFO_HEAD = 12;
/** struct file_handle's handle_bytes and handle_type */
const FILE_HANDLE_HEAD = 8;
const EVENT_BUF = 16384;
/**
 * More than the largest event this group can report: the metadata, a DFID_NAME record (info
 * header, fsid, handle head, MAX_HANDLE_SZ 128 bytes of handle, a 255-byte name, its NUL,
 * padding) and a FID record come to 580 bytes; FAN_RENAME's second name record (not asked for)
 * would make 984. A read that leaves this much of the buffer unused took every queued event.
 */
const MAX_EVENT = 2048;

/** A kernel file handle as fanotify reports it (the bytes are a copy). */
export interface EventHandle {
  type: number;
  bytes: Buffer;
}

/**
 * One fanotify event on the shared directory's filesystem. `dir` and `name`: the directory entry
 * it concerns (for an event on a child); `object`: the inode the event happened to. Either may be
 * missing (an event on the root of the filesystem has no parent).
 */
export interface HostEvent {
  mask: number;
  /** the process that caused it */
  pid: number;
  dir: EventHandle | null;
  name: Buffer | null;
  object: EventHandle | null;
}

/** What learns of the events beyond renames (src/fs/host-changes.ts). */
export interface HostEventSink {
  event(e: HostEvent): void;
  /**
   * Events caused by this pid go to `own` instead of `event`, unparsed (a sink that skips the
   * server's own events: they are most of the queue while a client writes, and parsing copies two
   * handles and a name out of each).
   */
  readonly ownPid?: number;
  own?(): void;
  /** the kernel's queue overflowed: events were lost */
  overflow(): void;
}

/**
 * The server's fanotify watch on the shared directory's filesystem. It serves two users:
 *
 * Confinement proofs: an epoch that grows on every rename (files and directories, by the host or by
 * the client, anywhere on that filesystem) and on a queue overflow. An fd follows its file, so a
 * directory the host moves outside the share stays reachable through the fd the server holds.
 * Proving it is still beneath the root costs a readlink of /proc/self/fd/N per name operation;
 * with this watch the proof is kept until the next rename, and checking costs one non-blocking
 * read of the fanotify queue. The queue is read before every use of a kept proof, so a move that
 * finished before the request was served is always seen; a rename racing the request itself is
 * the same window the readlink check has.
 *
 * Host changes (when a sink is given): creates, deletes, moves, writes and attribute changes,
 * each with the file handles of the directory and the object and the entry's name
 * (FAN_REPORT_DFID_NAME | FAN_REPORT_FID), handed to the sink. The queue is then also read from
 * the event loop as soon as it is readable (uv_poll), so a change reaches the sink at once rather
 * than at the next request.
 *
 * Needs CAP_SYS_ADMIN (a filesystem-wide mark) and a filesystem with file handles; without them
 * `enabled` is false and every check does the readlink.
 */
export class MoveWatch {
  readonly enabled: boolean;
  /** why the watch could not be set up (an errno code), when it could not */
  readonly failure: string | null = null;
  private readonly fd: number;
  private readonly buf = Buffer.allocUnsafeSlow(EVENT_BUF);
  private current = 0;
  private poll: unknown = null;
  /** the sink's own pid (HostEventSink.ownPid), or 0: every event is parsed */
  private readonly ownPid: number;
  /** renames (or overflows) seen; for the stats */
  events = 0;

  constructor(rootPath: Buffer, log: Logger, private readonly sink: HostEventSink | null = null) {
    let fd = -1;
    const report = sink ? FAN_REPORT_FID | FAN_REPORT_DIR_FID | FAN_REPORT_NAME : FAN_REPORT_DIR_FID;
    const mask = sink ? FAN_DIRENT | FAN_MODIFY | FAN_ATTRIB | FAN_ONDIR : FAN_MOVED_FROM | FAN_ONDIR;
    try {
      fd = sys.fanotifyInit(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | report, O_RDONLY);
      sys.fanotifyMark(fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, BigInt(mask), AT_FDCWD, rootPath);
    } catch (e) {
      if (fd >= 0) sys.close(fd);
      fd = -1;
      this.failure = (e as { code?: string }).code ?? 'EIO';
      log.debug({ code: this.failure }, 'no fanotify watch: confinement proofs are redone per request');
    }
    this.fd = fd;
    this.enabled = fd >= 0;
    this.ownPid = sink?.ownPid !== undefined && sink.own !== undefined ? sink.ownPid : 0;
    if (this.enabled && sink) this.poll = sys.pollStart(fd, () => this.drain());
  }

  /** The current epoch, after taking in every event queued so far. */
  epoch(): number {
    if (!this.enabled) return -1;
    this.drain();
    return this.current;
  }

  /**
   * The epoch as of the last read, without reading (-1 when disabled). A proof stamped with it is
   * conservative: a rename after that read shows up as a later epoch at the next read.
   */
  get last(): number {
    return this.enabled ? this.current : -1;
  }

  close(): void {
    if (this.poll !== null) sys.pollStop(this.poll);
    this.poll = null;
    if (this.enabled) sys.close(this.fd);
  }

  private drain(): void {
    for (;;) {
      let n: number;
      try {
        n = sys.readNonblock(this.fd, this.buf, 0, EVENT_BUF, -1);
      } catch {
        // the queue cannot be read: assume a move, so that no kept proof is trusted
        this.current++;
        return;
      }
      if (n === -E.EINTR) continue;
      if (n <= 0) return;
      this.take(n);
      // fanotify's read copies queued events while the next one fits: a read that left room for
      // the largest event found the queue empty, and reading on would only return EAGAIN
      if (n <= EVENT_BUF - MAX_EVENT) return;
    }
  }

  private take(n: number): void {
    const b = this.buf;
    for (let off = 0; off + META_SIZE <= n;) {
      const len = b.readUInt32LE(off);
      if (len < META_SIZE || off + len > n) {
        // a malformed read: take it as a move, so that no kept proof is trusted
        this.current++;
        return;
      }
      // the mask is 64 bits; every event bit is in the low word
      const mask = b.readUInt32LE(off + 8);
      if (mask & (FAN_MOVED_FROM | FAN_Q_OVERFLOW)) {
        this.current++;
        this.events++;
      }
      if (this.sink) {
        if (mask & FAN_Q_OVERFLOW) this.sink.overflow();
        else if (this.ownPid !== 0 && b.readInt32LE(off + 20) === this.ownPid) this.sink.own!();
        else this.sink.event(parseEvent(b, off, len, mask));
      }
      off += len;
    }
  }
}

/** The info records of one event (DFID_NAME, DFID, FID) after its metadata. */
function parseEvent(b: Buffer, off: number, len: number, mask: number): HostEvent {
  const e: HostEvent = { mask, pid: b.readInt32LE(off + 20), dir: null, name: null, object: null };
  const end = off + len;
  for (let p = off + b.readUInt16LE(off + 6); p + 4 <= end;) {
    const type = b[p]!;
    const rlen = b.readUInt16LE(p + 2);
    if (rlen < 4 || p + rlen > end) break;
    const h = p + FID_INFO_HEAD;
    if (rlen >= FID_INFO_HEAD + FILE_HANDLE_HEAD) {
      const hlen = b.readUInt32LE(h);
      const start = h + FILE_HANDLE_HEAD;
      if (start + hlen <= p + rlen) {
        const handle: EventHandle = { type: b.readInt32LE(h + 4), bytes: Buffer.from(b.subarray(start, start + hlen)) };
        if (type === FAN_EVENT_INFO_TYPE_FID) e.object = handle;
        else if (type === FAN_EVENT_INFO_TYPE_DFID || type === FAN_EVENT_INFO_TYPE_DFID_NAME) {
          e.dir = handle;
          if (type === FAN_EVENT_INFO_TYPE_DFID_NAME) {
            // a NUL-terminated name follows the handle (the record is padded to 4 bytes)
            const nul = b.indexOf(0, start + hlen);
            e.name = Buffer.from(b.subarray(start + hlen, nul < 0 || nul > p + rlen ? p + rlen : nul));
          }
        }
      }
    }
    p += rlen;
  }
  return e;
}
