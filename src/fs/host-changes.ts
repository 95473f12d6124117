import type { Inode, InodeStore } from './inode-store.js';
import { FAN_ATTRIB, FAN_DIRENT, FAN_MODIFY } from '../sys/constants.js';
import type { EventHandle, HostEvent, HostEventSink } from './move-watch.js';
import type { HostChangeListener } from './options.js';

/** Events within this many ms of the first pending one go out together, each (parent, name) or inode once. */
const WINDOW_MS = 5;
/** Notifications per second at most (a token bucket), and the burst it allows. */
const RATE = 2000;
const BURST = 500;
/** Pending notifications at most; beyond that new ones are dropped (and counted). */
const MAX_PENDING = 8192;

export interface HostChangeCounters {
  /** fanotify events read on the shared directory's filesystem (renames included) */
  hostEvents: number;
  /** of those, caused by the server itself (a client's request): no notification */
  hostEventsOwn: number;
  /** invalidations handed to the transport, by kind */
  notifyEntry: number;
  notifyInode: number;
  /** invalidations merged into one already pending */
  notifyCoalesced: number;
  /** invalidations dropped because too many were pending */
  notifyDropped: number;
  /** times the kernel's event queue overflowed (events lost: the client learns at its timeouts) */
  hostOverflows: number;
}

export function noHostChanges(): HostChangeCounters {
  return { hostEvents: 0, hostEventsOwn: 0, notifyEntry: 0, notifyInode: 0, notifyCoalesced: 0, notifyDropped: 0, hostOverflows: 0 };
}

type Pending = { entry: true; parent: bigint; name: Buffer } | { entry: false; nodeid: bigint; data: boolean };

/**
 * Host changes -> invalidations of the client's cache. A fanotify event names file handles; the
 * inodes the client may have cached are exactly those in the InodeStore (it holds every inode
 * the client has not forgotten), found by the same handle key. A name added, removed or moved in
 * a known directory invalidates that entry and the directory's attributes and listing; a write
 * invalidates the file's data and attributes; an attribute change its attributes.
 *
 * Events the server itself caused (it serves the client's own changes, which the kernel already
 * accounts for) are skipped by pid. What remains is coalesced over a few milliseconds and bounded
 * in rate, so a host writing in a loop costs the client one invalidation per window, not one per
 * write.
 */
export class HostChanges implements HostEventSink {
  readonly counters = noHostChanges();
  private readonly pending = new Map<string, Pending>();
  private timer: NodeJS.Timeout | null = null;
  private tokens = BURST;
  private refilled = performance.now();
  /** MoveWatch hands this pid's events to own(), unparsed */
  readonly ownPid = process.pid;

  constructor(
    private readonly listener: HostChangeListener,
    private readonly store: InodeStore,
    /** mount id of the root's handle: the handles fanotify reports are of that filesystem */
    private readonly mountId: bigint,
  ) {}

  event(e: HostEvent): void {
    this.counters.hostEvents++;
    if (e.pid === this.ownPid) {
      this.counters.hostEventsOwn++;
      return;
    }
    const self = e.name !== null && e.name.length === 1 && e.name[0] === 0x2e; // '.': the event is on the directory itself
    if (e.mask & FAN_DIRENT && e.name && !self) {
      const parent = this.known(e.dir);
      if (parent) {
        this.queue(`e${parent.nodeid}/${e.name.toString('latin1')}`, { entry: true, parent: parent.nodeid, name: e.name });
        this.invalInode(parent.nodeid, true);
      }
    }
    if (e.mask & (FAN_MODIFY | FAN_ATTRIB)) {
      const target = this.known(e.object ?? (self ? e.dir : null));
      if (target) this.invalInode(target.nodeid, (e.mask & FAN_MODIFY) !== 0);
    }
  }

  /** an event the server caused itself, left unparsed (HostEventSink.own) */
  own(): void {
    this.counters.hostEvents++;
    this.counters.hostEventsOwn++;
  }

  overflow(): void {
    this.counters.hostEvents++;
    this.counters.hostOverflows++;
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pending.clear();
  }

  private known(h: EventHandle | null): Inode | undefined {
    return h ? this.store.byHandle({ mountId: this.mountId, type: h.type, bytes: h.bytes }) : undefined;
  }

  /** `data`: the content changed too (its cached pages go), not only the attributes. */
  private invalInode(nodeid: bigint, data: boolean): void {
    const key = `i${nodeid}`;
    const p = this.pending.get(key);
    if (p && !p.entry) {
      p.data ||= data;
      this.counters.notifyCoalesced++;
      return;
    }
    this.queue(key, { entry: false, nodeid, data });
  }

  private queue(key: string, p: Pending): void {
    if (this.pending.has(key)) {
      this.counters.notifyCoalesced++;
      return;
    }
    if (this.pending.size >= MAX_PENDING) {
      this.counters.notifyDropped++;
      return;
    }
    this.pending.set(key, p);
    this.schedule(WINDOW_MS);
  }

  private schedule(ms: number): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
    }, ms);
    this.timer.unref();
  }

  private flush(): void {
    const now = performance.now();
    this.tokens = Math.min(BURST, this.tokens + ((now - this.refilled) * RATE) / 1000);
    this.refilled = now;
    for (const [key, p] of this.pending) {
      if (this.tokens < 1) break;
      this.tokens--;
      this.pending.delete(key);
      if (p.entry) {
        this.counters.notifyEntry++;
        this.listener.invalEntry(p.parent, p.name);
      } else {
        this.counters.notifyInode++;
        this.listener.invalInode(p.nodeid, p.data);
      }
    }
    // the rest waits for the bucket to refill
    if (this.pending.size > 0) this.schedule(Math.max(WINDOW_MS, ((1 - this.tokens) * 1000) / RATE));
  }
}
