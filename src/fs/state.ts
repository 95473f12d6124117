/** The sealed state handed to a successor (an upgrade or a crash under --supervise), and taken over from a predecessor. */
import { decodeState, encodeState, type HandleRecord, type InodeRecord } from './export-table.js';
import { ROOT_ID } from './filesystem.js';
import { outlivesWorker } from './handle-table.js';
import { recordOf } from './records.js';
import type { Services } from './services.js';

/** Sealed state for a successor: every inode the client may still name, with its lookup count. */
export function exportState(s: Services): Buffer {
  const records: InodeRecord[] = [];
  for (const inode of s.store.all()) {
    if (inode.is(s.root)) continue;
    const r = recordOf(inode, inode.nlookup, s.sealer);
    if (r) records.push(r);
  }
  for (const r of s.exports.values()) records.push(r);
  // open files and directories: a successor reopens them on first use (their locks do not move)
  const handles: HandleRecord[] = [];
  for (const h of s.handles.all()) {
    if (outlivesWorker(h.inode)) handles.push({ fh: h.fh, nodeid: h.inode.nodeid, flags: h.flags, kind: h.kind });
  }
  for (const p of s.handles.pendingRecords()) handles.push(p);
  return encodeState(s.sealer, { nextNodeid: s.store.next, generation: s.generation, records, handles });
}

/**
 * Take over a predecessor's sealed state: refused whole when its seal does not verify (another
 * key, truncated, reordered, flipped). Records are brought back lazily, on first use. `fresh`: the
 * state comes from a server of another mount (the state file), so the client holds no lookups and
 * no open files of it: lookup counts start at zero and open handles are left out. `approximate`:
 * records a crashed worker streamed, whose lookup counts may be behind the client's.
 */
export function importState(s: Services, blob: Buffer, fresh = false, approximate = false): { ok: true; records: number } | { ok: false; reason: string } {
  const r = decodeState(s.sealer, blob);
  if (!r.ok) {
    s.counters.sealFailures++;
    s.log.error({ reason: r.reason }, 'refusing the predecessor state');
    return { ok: false, reason: r.reason };
  }
  s.store.next = r.state.nextNodeid;
  for (const rec of r.state.records) {
    if (rec.nodeid === ROOT_ID || s.store.get(rec.nodeid)) continue;
    if (fresh) rec.nlookup = 0;
    if (approximate) rec.approximate = true;
    s.exports.put(rec);
  }
  if (!fresh) for (const h of r.state.handles ?? []) s.handles.restore(h.fh, h.nodeid, h.flags, h.kind);
  s.log.debug({ records: r.state.records.length }, 'sealed state accepted');
  return { ok: true, records: r.state.records.length };
}
