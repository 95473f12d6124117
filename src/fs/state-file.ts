/**
 * The state file (`--state-file FILE`): the sealed records of every node id a client may keep a
 * handle to, on disk, so that a new server on the same shared directory and key resolves them (a
 * mount cycle, a host reboot, a server killed without --supervise).
 *
 * Layout: "HFSLOG01" | frames, each u32 length (LE) | a sealed state (export-table.ts
 * encodeState: its own MAC). Records are appended as they appear or move, with one write(2) each,
 * before the reply that names them leaves the server: a SIGKILL loses nothing the client saw. A
 * later record of a node id replaces an earlier one on load. The file is compacted (the whole live
 * state written to FILE.tmp, fsync'd and renamed over FILE) when it has grown to twice its size
 * after the last compaction, so it stays bounded by the live records (at most the export table's
 * size beyond what is in memory). Created 0600; the frames are sealed, so a file changed by anyone
 * else is refused, never trusted.
 */
import * as fs from 'node:fs';
import type { Logger } from 'pino';

const MAGIC = Buffer.from('HFSLOG01', 'latin1');
/** a frame longer than this is corruption (a full state of 10 million records is far below) */
const MAX_FRAME = 1 << 30;
/** compaction is not worth it below this size */
const MIN_COMPACT = 1 << 20;

export class StateFileError extends Error {
  override readonly name = 'StateFileError';
}

/** What a sealed frame gave when taken in (PassthroughFs.importState). */
export type ImportResult = { ok: true; records: number } | { ok: false; reason: string };

export class StateFile {
  private fd: number;
  private size: number;
  private compactedSize: number;
  private compactScheduled = false;
  /** records appended since start, and compactions done (for the stats) */
  readonly counters = { appended: 0, compactions: 0, loadedRecords: 0 };

  private constructor(
    readonly path: string,
    private readonly log: Logger,
    private readonly exportAll: () => Buffer,
    fd: number,
    size: number,
  ) {
    this.fd = fd;
    this.size = size;
    this.compactedSize = size;
  }

  /**
   * Open (or create, 0600) the state file and take in every frame with `take`, oldest first. A
   * torn last frame (a crash during a write) is cut off. A file that is not ours, or whose frames
   * do not verify under this key, is refused with a StateFileError (one line for the operator):
   * it is never overwritten.
   */
  static open(path: string, log: Logger, take: (blob: Buffer) => ImportResult, exportAll: () => Buffer): StateFile {
    let fd: number;
    try {
      fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
    } catch (e) {
      throw new StateFileError(`cannot open the state file ${path}: ${(e as Error).message}`);
    }
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) throw new StateFileError(`the state file ${path} is not a regular file`);
      if (st.mode & 0o077) throw new StateFileError(`the state file ${path} is readable or writable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
      const sf = new StateFile(path, log, exportAll, fd, st.size);
      sf.load(take);
      return sf;
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  private load(take: (blob: Buffer) => ImportResult): void {
    if (this.size === 0) {
      fs.writeSync(this.fd, MAGIC, 0, MAGIC.length, 0);
      this.size = this.compactedSize = MAGIC.length;
      return;
    }
    const buf = Buffer.allocUnsafe(this.size);
    let got = 0;
    while (got < this.size) {
      const n = fs.readSync(this.fd, buf, got, this.size - got, got);
      if (n === 0) break;
      got += n;
    }
    if (got < MAGIC.length || !buf.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw new StateFileError(`${this.path} is not a handlefs state file (bad magic); move it away or name another file`);
    }
    let o = MAGIC.length;
    let frames = 0;
    let records = 0;
    while (o < got) {
      if (o + 4 > got) break;
      const len = buf.readUInt32LE(o);
      if (len === 0 || len > MAX_FRAME || o + 4 + len > got) break;
      const r = take(buf.subarray(o + 4, o + 4 + len));
      if (!r.ok) {
        if (frames === 0) {
          throw new StateFileError(`the state file ${this.path} does not verify under this key (${r.reason}); pass the --handle-key-file it was written with, or move it away`);
        }
        // a frame that does not verify after good ones: the file was changed behind our back
        this.log.error({ file: this.path, offset: o, reason: r.reason }, 'state file frame refused; ignoring it and what follows');
        break;
      }
      frames++;
      records += r.records;
      o += 4 + len;
    }
    if (o < got) {
      // a torn last frame (killed during a write) or refused bytes: cut them off
      this.log.warn({ file: this.path, kept: o, dropped: got - o }, 'state file: cut off an incomplete or refused tail');
      fs.ftruncateSync(this.fd, o);
    }
    this.size = this.compactedSize = o;
    this.counters.loadedRecords = records;
    this.log.info({ file: this.path, frames, records }, 'state file loaded');
  }

  /** Append one sealed state (one write: a torn frame is cut off on the next load). */
  append(blob: Buffer): void {
    if (this.fd < 0) return;
    const frame = Buffer.allocUnsafe(4 + blob.length);
    frame.writeUInt32LE(blob.length, 0);
    blob.copy(frame, 4);
    try {
      let off = 0;
      while (off < frame.length) off += fs.writeSync(this.fd, frame, off, frame.length - off, this.size + off);
      this.size += frame.length;
      this.counters.appended++;
    } catch (e) {
      this.log.error({ file: this.path, err: (e as Error).message }, 'cannot write the state file; persistent handles of new files will not survive a restart');
      return;
    }
    if (!this.compactScheduled && this.size > Math.max(MIN_COMPACT, 2 * this.compactedSize)) {
      this.compactScheduled = true;
      setImmediate(() => this.compact());
    }
  }

  /** Rewrite the file as one frame of the whole live state (FILE.tmp, fsync, rename). */
  compact(): void {
    this.compactScheduled = false;
    if (this.fd < 0) return;
    const tmp = `${this.path}.tmp`;
    let tfd = -1;
    try {
      const blob = this.exportAll();
      fs.rmSync(tmp, { force: true });
      tfd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32LE(blob.length, 0);
      const all = Buffer.concat([MAGIC, len, blob]);
      let off = 0;
      while (off < all.length) off += fs.writeSync(tfd, all, off, all.length - off, off);
      fs.fsyncSync(tfd);
      fs.renameSync(tmp, this.path);
      fs.closeSync(this.fd);
      this.fd = tfd;
      tfd = -1;
      this.size = this.compactedSize = all.length;
      this.counters.compactions++;
      this.log.info({ file: this.path, bytes: all.length }, 'state file compacted');
    } catch (e) {
      this.log.error({ file: this.path, err: (e as Error).message }, 'cannot compact the state file; it keeps growing');
      this.compactedSize = this.size;
    } finally {
      if (tfd >= 0) fs.closeSync(tfd);
    }
  }

  /** Flush to disk and close (a clean stop compacts first, so the next start reads one frame). */
  close(compact = true): void {
    if (this.fd < 0) return;
    if (compact) this.compact();
    try {
      fs.fsyncSync(this.fd);
    } catch {
      /* nothing more to do */
    }
    fs.closeSync(this.fd);
    this.fd = -1;
  }
}
