/**
 * READDIR / READDIRPLUS reply packing (go-fuse direntry.go, virtiofsd add_dirent).
 *
 * Records are 8-byte aligned (FUSE_DIRENT_ALIGN) with zeroed padding. `add`/`addPlus` return false
 * when the next record would not fit in the client's `size`: the record is NOT taken, and the
 * filesystem stops there (and, for readdirplus, undoes the lookup it did for that entry: see the
 * FileSystem contract). The next READDIR resumes from the `off` cookie of the last record taken.
 */
import type { DirEntry, Entry } from '../fs/types.js';
import { Dirent, Direntplus, direntAlign, EntryOut, OutHeader, writeDirent, writeEntryOut, writeNoEntryOut } from './abi.js';
import { allocReply, truncateReply } from './codec.js';

export class DirentList {
  private readonly buf: Buffer;
  private pos = OutHeader.SIZE;
  private readonly limit: number;
  /** Records taken so far. */
  count = 0;

  /** `size` is the client's buffer size (ReadIn.size), already capped by the caller. */
  constructor(unique: bigint, size: number) {
    this.buf = allocReply(unique, size);
    this.limit = OutHeader.SIZE + size;
  }

  /** READDIR record. Bound once per list: the filesystem receives it as its `add` callback. */
  readonly add = (e: DirEntry): boolean => {
    const size = direntAlign(Dirent.SIZE + e.name.length);
    if (this.pos + size > this.limit) return false;
    this.pos += writeDirent(this.buf, this.pos, e.ino, e.off, e.type, e.name);
    this.count++;
    return true;
  };

  /** READDIRPLUS record; `entry` null ('.', '..') is sent as an all-zero EntryOut (no lookup). */
  readonly addPlus = (e: DirEntry, entry: Entry | null): boolean => {
    const size = direntAlign(Direntplus.SIZE + e.name.length);
    if (this.pos + size > this.limit) return false;
    if (entry === null) writeNoEntryOut(this.buf, this.pos);
    else writeEntryOut(this.buf, this.pos, entry);
    this.pos += EntryOut.SIZE + writeDirent(this.buf, this.pos + EntryOut.SIZE, e.ino, e.off, e.type, e.name);
    this.count++;
    return true;
  };

  /** The reply: header + the records taken (an empty listing means end of directory). */
  finish(): Buffer {
    return truncateReply(this.buf, this.pos);
  }
}
