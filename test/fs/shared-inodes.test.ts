/**
 * The inode table shared with the other serving threads (src/fs/shared-inodes.ts): a thread finds a
 * known inode by handle, parent link and name in the owner's SharedArrayBuffers and counts its
 * lookup in the slot's lookup word; the owner folds those counts into nlookup and drops a slot
 * only when no thread counted one. A count and a drop never both happen, and a count never lands
 * on a slot that holds another inode since it was read.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { InodeStore, type Inode } from '../../src/fs/inode-store.js';
import { CHUNK, SharedInodeLink, SharedInodes, type SharedInodeTables } from '../../src/fs/shared-inodes.js';
import type { FileHandle } from '../../src/handle/file-handle.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const distShared = path.resolve(here, '../../dist/fs/shared-inodes.js');
const log = pino({ level: 'silent' });
const S_IFDIR = 0o040000, S_IFREG = 0o100000, S_IFLNK = 0o120000;
const ROOT = 1;
const MOUNT = 7n;

const handle = (i: number, mountId = MOUNT): FileHandle => {
  const b = Buffer.alloc(12);
  b.writeUInt32LE(i >>> 0, 0);
  b.writeUInt32LE(0x5a5a5a5a, 4);
  b.writeUInt32LE(Math.imul(i, 2654435761) >>> 0, 8);
  return { type: 1, bytes: b, mountId };
};
const nameOf = (i: number): Buffer => Buffer.from(`n${i}`);

/** A shared store with its root (node id 1, on MOUNT) and a thread's view of it kept up to date. */
function sharedStore(): { store: InodeStore; root: Inode; view: SharedInodes; link: SharedInodeLink } {
  const link = new SharedInodeLink();
  const view = new SharedInodes();
  link.subscribe((t) => view.update(t));
  const store = new InodeStore(BigInt(ROOT), log, null, link);
  const root = store.create({ nodeid: 1n, generation: 3n, type: S_IFDIR, handle: handle(0), seal: null, reopenable: false, dev: 9, ino: 2n });
  root.nlookup = 1;
  return { store, root, view, link };
}

/** A known child `i` of `parent` (parent link and name set, one lookup), as the owner's adopt leaves it. */
function child(store: InodeStore, parent: Inode, i: number, nodeid: bigint, type = S_IFREG): Inode {
  const c = store.create({ nodeid, generation: 3n, type, handle: handle(i), seal: null, reopenable: true, dev: 9, ino: BigInt(1000 + i) });
  store.setParent(c, parent, nameOf(i));
  c.addLookup();
  return c;
}

describe('SharedInodes: a thread\'s view of the owner\'s inode table', () => {
  it('finds a known inode by handle, parent link and name, and its counted lookup is in the owner\'s nlookup', () => {
    const { store, root, view } = sharedStore();
    const a = child(store, root, 5, 40n);
    const d = child(store, root, 6, 41n, S_IFDIR);
    const f = view.find(1, handle(5).bytes, ROOT, nameOf(5), ROOT);
    expect(f).toMatchObject({ nodeid: 40, generation: 3n, type: S_IFREG, ino: 1005n, dev: 9, multiLinked: false });
    expect(view.count(f!)).toBe(true);
    expect(a.nlookup).toBe(2);
    // one forget each: the thread's lookup keeps it after the owner's own is forgotten
    expect(store.forget(a, 1)).toBe(true);
    expect(store.get(40n)?.nlookup).toBe(1);
    expect(store.forget(a, 1)).toBe(true);
    expect(store.get(40n)).toBeUndefined();
    // a directory below the root, and the root itself never
    expect(view.find(1, handle(6).bytes, ROOT, nameOf(6), ROOT)?.nodeid).toBe(Number(d.nodeid));
    expect(view.find(1, handle(0).bytes, ROOT, Buffer.from('x'), ROOT)).toBeNull();
  });

  it('finds nothing under another parent, another name, another mount, a dropped or unlinked inode, a long name', () => {
    const { store, root, view } = sharedStore();
    const d = child(store, root, 6, 41n, S_IFDIR);
    const a = child(store, d, 5, 40n);
    expect(view.find(1, handle(5).bytes, 41, nameOf(5), ROOT)?.nodeid).toBe(40);
    expect(view.find(1, handle(5).bytes, ROOT, nameOf(5), ROOT)).toBeNull();
    expect(view.find(1, handle(5).bytes, 41, Buffer.from('other'), ROOT)).toBeNull();
    expect(view.find(2, handle(5).bytes, 41, nameOf(5), ROOT)).toBeNull();
    // another mount's handles have another mount index: never the root's
    const sub = store.create({ nodeid: 50n, generation: 3n, type: S_IFREG, handle: handle(8, 99n), seal: null, reopenable: false, dev: 10, ino: 5n });
    store.setParent(sub, d, nameOf(8));
    expect(view.find(1, handle(8).bytes, 41, nameOf(8), ROOT)).toBeNull();
    a.unlinked = true;
    expect(view.find(1, handle(5).bytes, 41, nameOf(5), ROOT)).toBeNull();
    a.unlinked = false;
    const long = Buffer.alloc(40, 0x61);
    const l = store.create({ nodeid: 51n, generation: 3n, type: S_IFLNK, handle: handle(9), seal: null, reopenable: true, dev: 9, ino: 6n });
    store.setParent(l, d, long);
    expect(view.find(1, handle(9).bytes, 41, long, ROOT)).toBeNull();
    // a directory on another device than its parent is a submount: the owner's
    const m = store.create({ nodeid: 52n, generation: 3n, type: S_IFDIR, handle: handle(10), seal: null, reopenable: true, dev: 11, ino: 7n });
    store.setParent(m, d, nameOf(10));
    expect(view.find(1, handle(10).bytes, 41, nameOf(10), ROOT)).toBeNull();
    store.forget(a, 1);
    expect(view.find(1, handle(5).bytes, 41, nameOf(5), ROOT)).toBeNull();
  });

  it('a count fails once the owner dropped the slot it read, or put another inode in it', () => {
    const { store, root, view } = sharedStore();
    const a = child(store, root, 5, 40n);
    const f = view.find(1, handle(5).bytes, ROOT, nameOf(5), ROOT)!;
    store.forget(a, 1);
    expect(store.get(40n)).toBeUndefined();
    expect(view.count(f)).toBe(false);
    // the slot reused by another inode (another node id, the same handle even): the old read still fails
    const b = child(store, root, 5, 60n);
    expect(b.slot).toBe(a.slot);
    expect(view.count(f)).toBe(false);
    expect(b.nlookup).toBe(1);
    const g = view.find(1, handle(5).bytes, ROOT, nameOf(5), ROOT)!;
    expect(g.nodeid).toBe(60);
    expect(view.count(g)).toBe(true);
    expect(b.nlookup).toBe(2);
  });

  it('the owner does not drop an inode whose lookups a thread counted after its last look, and folds them', () => {
    const { store, root, view } = sharedStore();
    const a = child(store, root, 5, 40n);
    const f = view.find(1, handle(5).bytes, ROOT, nameOf(5), ROOT)!;
    expect(view.count(f)).toBe(true);
    const g = view.find(1, handle(5).bytes, ROOT, nameOf(5), ROOT)!;
    expect(view.count(g)).toBe(true);
    // the owner's maybeDrop path (its own count at 0, another thread's at 2): kept
    expect(store.forget(a, 1)).toBe(true);
    expect(store.get(40n)?.nlookup).toBe(2);
    expect(store.forget(a, 3)).toBe(false);
    expect(store.get(40n)).toBeUndefined();
  });

  it('the thread hears of each new chunk and each bigger index, and finds inodes in them', () => {
    const { store, root, view, link } = sharedStore();
    const seen: SharedInodeTables[] = [];
    link.subscribe((t) => seen.push(t));
    const n = CHUNK + 100;
    for (let i = 1; i <= n; i++) child(store, root, i, BigInt(100 + i));
    // the index doubled past CHUNK (half full), a second chunk came at CHUNK slots
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(seen.at(-1)!.chunks.length).toBe(2);
    for (const i of [1, 777, CHUNK - 1, CHUNK + 50, n]) {
      const f = view.find(1, handle(i).bytes, ROOT, nameOf(i), ROOT);
      expect(f?.nodeid, `inode ${i}`).toBe(100 + i);
    }
  });

  it('raced by a real thread counting lookups while the owner forgets, drops and reuses slots: no count is lost, none lands on another inode, nothing held is dropped', { timeout: 60_000 }, async () => {
    expect(fs.existsSync(distShared), `${distShared} (npm run build)`).toBe(true);
    const { store, root, link } = sharedStore();
    const NAMES = 6;
    let next = 100n;
    /** per name: the owner's own lookups of its live inode (as a kernel would hold them), and the inode */
    const own: number[] = [];
    const live: Inode[] = [];
    for (let i = 0; i < NAMES; i++) {
      live.push(child(store, root, i, next++));
      own.push(1);
    }
    // [stop, ready], then per name the lookups the thread counted and the owner did not forget yet
    const ctl = new Int32Array(new SharedArrayBuffer(4 * (2 + NAMES)));
    const worker = new Worker(`
      const { workerData, parentPort } = require('node:worker_threads');
      import(workerData.mod).then(({ SharedInodes }) => {
        const view = new SharedInodes();
        view.update(workerData.tables);
        parentPort.on('message', (t) => view.update(t));
        const ctl = new Int32Array(workerData.ctl);
        const handle = (i) => { const b = Buffer.alloc(12); b.writeUInt32LE(i >>> 0, 0); b.writeUInt32LE(0x5a5a5a5a, 4); b.writeUInt32LE(Math.imul(i, 2654435761) >>> 0, 8); return b; };
        let tries = 0, total = 0;
        Atomics.store(ctl, 1, 1);
        const t0 = Date.now();
        while (Atomics.load(ctl, 0) === 0 && Date.now() - t0 < 20000) {
          const i = (tries++ * 7919) % ${NAMES};
          const f = view.find(1, handle(i), 1, Buffer.from('n' + i), 1);
          if (f !== null && view.count(f)) {
            Atomics.add(ctl, 2 + i, 1);
            total++;
          }
        }
        parentPort.postMessage(total);
      });
    `, { eval: true, workerData: { mod: pathToFileURL(distShared).href, tables: link.current, ctl: ctl.buffer } });
    link.subscribe((t) => worker.postMessage(t));
    const result = new Promise<number>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    for (let i = 0; i < 400 && Atomics.load(ctl, 1) === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(Atomics.load(ctl, 1)).toBe(1);
    // the owner: lookups of its own; now and then it forgets all that is held of a name's inode,
    // its own and what the thread counted so far (the inode goes unless the thread counted more
    // meanwhile), and puts a new inode under the name once one went, often in the slot just freed
    let drops = 0, kept = 0, forgotten = 0;
    const t0 = Date.now();
    for (let step = 0; step < 2_000_000 && Date.now() - t0 < 4000; step++) {
      const i = step % NAMES;
      const c = live[i]!;
      if (step % 3 !== 0) {
        c.addLookup();
        own[i]!++;
        continue;
      }
      const theirs = Atomics.exchange(ctl, 2 + i, 0);
      forgotten += theirs;
      // never below zero: every count the thread made is on this very inode
      expect(store.forget(c, own[i]! + theirs)).toBe(true);
      own[i] = 0;
      if (store.get(c.nodeid) === undefined) {
        drops++;
        live[i] = child(store, root, i, next++);
        own[i] = 1;
      } else kept++;
    }
    Atomics.store(ctl, 0, 1);
    const total = await result;
    await worker.terminate();
    console.log(`owner: ${drops} drops, ${kept} inodes kept by lookups the thread counted meanwhile; thread: ${total} lookups counted`);
    expect(drops).toBeGreaterThan(100);
    expect(kept).toBeGreaterThan(0);
    expect(total).toBeGreaterThan(100);
    // each live inode holds exactly its own lookups and the thread's not yet forgotten; forgetting
    // them leaves only the root
    for (let i = 0; i < NAMES; i++) {
      const theirs = Atomics.load(ctl, 2 + i);
      forgotten += theirs;
      expect(store.get(live[i]!.nodeid)?.nlookup).toBe(own[i]! + theirs);
      expect(store.forget(live[i]!, own[i]! + theirs)).toBe(true);
    }
    expect(forgotten).toBe(total);
    expect(store.size).toBe(1);
  });
});
