/**
 * Node ids that outlive the inode in memory: the sealed record of an inode a client may still
 * name (a persistent client handle, a successor after a restart), and the lazy return of such an
 * inode under its old node id.
 */
import type { Logger } from 'pino';
import { E, FsError } from '../errors.js';
import type { FileHandle } from '../handle/file-handle.js';
import type { Sealer } from '../handle/seal.js';
import { encodeState, type ExportTable, type InodeRecord } from './export-table.js';
import type { FdCache } from './fd-cache.js';
import { ROOT_ID } from './filesystem.js';
import type { Inode, InodeStore } from './inode-store.js';
import { MAX_DEPTH, type InodeFds, type ReopenCounters } from './reopen.js';

/**
 * The record a successor (or a later LOOKUP of ".") needs to find this inode again; null if it
 * cannot be reopened. With `sealer` the record leaves memory and is sealed (the inode keeps the
 * seal); without, it stays in this process (the export table) and carries the seal only if the
 * inode has one.
 */
export function recordOf(inode: Inode, nlookup: number, sealer?: Sealer): InodeRecord | null {
  const h = inode.reopenable ? inode.handle : null;
  const parent = inode.parent, name = inode.name;
  if (!h || !parent || !name) return null;
  return {
    nodeid: inode.nodeid, generation: inode.generation, parent: parent.nodeid, name,
    type: inode.type, handleType: h.type, handle: h.bytes, seal: sealer ? sealOf(inode, sealer) : inode.seal, nlookup,
  };
}

/** The inode's seal, made on first need and kept (null without a handle). */
export function sealOf(inode: Inode, sealer: Sealer): Buffer | null {
  const h = inode.handle;
  if (!h) return null;
  return (inode.seal ??= sealer.seal(h.type, h.bytes));
}

export interface RecordsParts {
  store: InodeStore;
  exports: ExportTable;
  cache: FdCache;
  fds: InodeFds;
  sealer: Sealer;
  root: Inode;
  generation: bigint;
  counters: ReopenCounters;
  log: Logger;
  /** streams each new or moved inode's sealed record (a supervisor keeps them) */
  onRecord: ((sealed: Buffer) => void) | null;
}

/** node id -> inode, for every node id the server handed out and can still prove. */
export class Records {
  constructor(private readonly p: RecordsParts) {}

  /** The inode of `nodeid`: in memory, or brought back from its record (ESTALE when there is none). */
  inode(nodeid: bigint): Inode {
    if (nodeid === ROOT_ID) return this.p.root;
    return this.p.store.get(nodeid) ?? this.resurrect(nodeid, 0);
  }

  /**
   * Bring back an inode that left memory, under its old node id, from its record: a sealed one
   * (from a predecessor, the state file, or an inode that had been sealed) is verified first, an
   * unsealed one was made by this process from a handle it holds; the parent is brought back the same way (bounded depth); the inode is then
   * reopened beneath its parent by name (or, for a directory with CAP_DAC_READ_SEARCH, by handle
   * and proven beneath the root) and its handle compared byte for byte. Anything else is ESTALE.
   */
  private resurrect(nodeid: bigint, depth: number): Inode {
    const { store, exports, cache, sealer, root, counters } = this.p;
    const rec = exports.get(nodeid);
    if (!rec) throw new FsError(E.ESTALE, 'unknown node id');
    if (depth > MAX_DEPTH) throw new FsError(E.ESTALE, 'parent chain too deep');
    if (rec.seal && !sealer.verify(rec.handleType, rec.handle, rec.seal)) {
      counters.sealFailures++;
      this.p.log.error({ nodeid: String(nodeid) }, 'inode record seal does not verify; refusing it (tampering or a bug)');
      throw new FsError(E.ESTALE, 'record seal');
    }
    const parent = rec.parent === ROOT_ID ? root : store.get(rec.parent) ?? this.resurrect(rec.parent, depth + 1);
    const handle: FileHandle = { type: rec.handleType, bytes: rec.handle, mountId: root.mountId! };
    const fd = this.p.fds.openRecord(parent, rec.name, handle, rec.type);
    // another node may own this identity already (an alias): found by node id only
    const inode = store.create({
      nodeid: rec.nodeid, generation: rec.generation, type: rec.type, handle, seal: rec.seal, reopenable: true, dev: -1, ino: -1n,
      indexed: store.byHandle(handle) === undefined,
    });
    store.setParent(inode, parent, rec.name);
    inode.nlookup = rec.nlookup;
    if (rec.approximate) inode.countApproximate = true;
    exports.delete(nodeid);
    cache.insertPinned(inode.fdKey, fd, 'path');
    cache.unpin(inode.fdKey, fd);
    counters.resurrected++;
    return inode;
  }

  /** Stream the inode's record to whoever keeps them (a new inode, or one that moved). */
  emit(inode: Inode): void {
    if (!this.p.onRecord) return;
    const r = recordOf(inode, inode.nlookup, this.p.sealer);
    if (r) this.p.onRecord(encodeState(this.p.sealer, { nextNodeid: this.p.store.next, generation: this.p.generation, records: [r] }));
  }
}
