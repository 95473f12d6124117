/**
 * Mapping guest memory from the fds the VMM sends (SET_MEM_TABLE, ADD_MEM_REG): each region in
 * pieces an ArrayBuffer can hold, refused where its file does not cover it; and the fds
 * themselves. Used by the connection and by the serving threads that map the same regions for
 * their queues (queue-threads.ts, queue-worker.ts).
 */
import { AT_EMPTY_PATH, F_DUPFD_CLOEXEC, PAGE_SIZE, S_IFMT, S_IFREG } from '../../sys/constants.js';
import { statAt, sys } from '../../sys/syscalls.js';
import type { MemoryRegion } from './guest-memory.js';
import type { RegionDesc } from './messages.js';

const PAGE_MASK = BigInt(PAGE_SIZE - 1);
/** a region is mapped in pieces of at most this (page-aligned, below the 4 GiB an ArrayBuffer holds) */
const MAX_PIECE = (1n << 32n) - 65536n;
const EMPTY_NAME = Buffer.alloc(0);

/** The pieces a region is mapped in: consecutive, each at most MAX_PIECE (`piece` smaller in tests). */
export function regionPieces(r: RegionDesc, piece = MAX_PIECE): RegionDesc[] {
  const out: RegionDesc[] = [];
  for (let off = 0n; off < r.size; off += piece) {
    const size = r.size - off < piece ? r.size - off : piece;
    out.push({ gpa: r.gpa + off, size, uva: r.uva + off, mmapOffset: r.mmapOffset + off });
  }
  return out;
}

/** Map one piece (regionPieces) of `fd` from the page holding its start (mmap's offset must be page-aligned). */
export function mapPiece(p: RegionDesc, fd: number): MemoryRegion {
  const lead = p.mmapOffset & PAGE_MASK;
  const ab = sys.mapShared(fd, p.size + lead, p.mmapOffset - lead);
  return { ...p, bytes: new Uint8Array(ab, Number(lead), Number(p.size)) };
}

export const unmap = (r: MemoryRegion): void => sys.unmapShared(r.bytes.buffer as ArrayBuffer);

/**
 * Map a region. One mapping holds at most 4 GiB (an ArrayBuffer's limit in Node 20), so a larger
 * region is mapped in pieces. mmap accepts a range past the end of a file, but touching those pages
 * raises SIGBUS and kills the process: a region a regular file (memfd, shm, hugetlbfs) does not
 * cover is refused here. Throws; nothing stays mapped then.
 */
export function mapRegion(r: RegionDesc, fd: number, piece?: bigint): MemoryRegion[] {
  if (r.size === 0n) throw new Error('a memory region of size 0');
  const st = statAt(fd, EMPTY_NAME, AT_EMPTY_PATH);
  if ((st.mode & S_IFMT) === S_IFREG && st.size < r.mmapOffset + r.size) {
    throw new Error(`region [${r.mmapOffset}, +${r.size}) ends past the end of its file (${st.size} bytes)`);
  }
  const out: MemoryRegion[] = [];
  try {
    for (const p of regionPieces(r, piece)) out.push(mapPiece(p, fd));
  } catch (e) {
    for (const m of out) unmap(m);
    throw e;
  }
  return out;
}

export const closeQuietly = (fd: number | null | undefined): void => {
  if (fd === null || fd === undefined || fd < 0) return;
  try {
    sys.close(fd);
  } catch {
    /* already closed */
  }
};

/** A dup of `fd` for another thread to take over (and close), or -1 for none. */
export const dupFor = (fd: number): number => (fd < 0 ? -1 : sys.fcntlInt(fd, F_DUPFD_CLOEXEC, 3));
