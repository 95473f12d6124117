/**
 * --translate-uid / --translate-gid as a FileSystem decorator: the requester's ids (the owner of
 * what it creates, the subject of ACCESS) and the ids of a SETATTR chown go from the client's to
 * the host's; every attribute the client is told (lookup, getattr, setattr, statx, the entries of
 * mknod, mkdir, symlink, link, create, tmpfile and readdirplus) goes from the host's to the
 * client's. An id a forbid-guest rule covers is EPERM (virtiofsd). A decorator rather than code in
 * attrs/entries/files: one place sees every request and every reply, for both frontends, and an
 * unmapped mount does not pay for it.
 */
import { E, FsError } from '../errors.js';
import { ForwardingFs } from './forwarding.js';
import type { FileSystem } from './filesystem.js';
import { guestToHost, hostToGuest, type IdMap } from './idmap.js';
import {
  FATTR_GID, FATTR_UID, type Attr, type AttrReply, type Context, type CreateOut, type DeviceNumber, type DirEntry,
  type Entry, type SetattrIn,
} from './types.js';

export class IdMapFs extends ForwardingFs {
  constructor(inner: FileSystem, private readonly uids: IdMap, private readonly gids: IdMap) {
    super(inner);
  }

  private hostId(m: IdMap, id: number): number {
    const h = guestToHost(m, id);
    if (h === null) throw new FsError(E.EPERM, `id ${id} is forbidden by --translate-${m === this.uids ? 'uid' : 'gid'}`);
    return h;
  }

  /** The requester as the host knows it; a forbidden supplementary group is dropped (it grants nothing). */
  private ctx(c: Context): Context {
    const out: Context = { ...c, uid: this.hostId(this.uids, c.uid), gid: this.hostId(this.gids, c.gid) };
    if (c.groups) out.groups = c.groups.map((g) => guestToHost(this.gids, g)).filter((g): g is number => g !== null);
    return out;
  }

  private attr(a: Attr): Attr {
    return { ...a, uid: hostToGuest(this.uids, a.uid), gid: hostToGuest(this.gids, a.gid) };
  }

  private entry(e: Entry): Entry {
    return { ...e, attr: this.attr(e.attr) };
  }

  private async reply(p: Promise<AttrReply>): Promise<AttrReply> {
    const r = await p;
    return { ...r, attr: this.attr(r.attr) };
  }

  private async entryOf(p: Promise<Entry>): Promise<Entry> {
    return this.entry(await p);
  }

  private async created(p: Promise<CreateOut>): Promise<CreateOut> {
    const r = await p;
    return { ...r, entry: this.entry(r.entry) };
  }

  override async lookup(c: Context, p: bigint, n: Buffer): Promise<Entry | FsError> {
    const e = await this.inner.lookup(c, p, n);
    return e instanceof FsError ? e : this.entry(e);
  }
  override getattr(c: Context, n: bigint, fh?: bigint): Promise<AttrReply> { return this.reply(this.inner.getattr(c, n, fh)); }
  override statx(c: Context, n: bigint, fh: bigint | undefined, f: number, m: number): Promise<AttrReply> {
    return this.reply(this.inner.statx(c, n, fh, f, m));
  }

  override async setattr(c: Context, n: bigint, s: SetattrIn): Promise<AttrReply> {
    const t = { ...s };
    if (s.valid & FATTR_UID) t.uid = this.hostId(this.uids, s.uid);
    if (s.valid & FATTR_GID) t.gid = this.hostId(this.gids, s.gid);
    return this.reply(this.inner.setattr(c, n, t));
  }

  override async symlink(c: Context, t: Buffer, p: bigint, n: Buffer): Promise<Entry> { return this.entryOf(this.inner.symlink(this.ctx(c), t, p, n)); }
  override async mknod(c: Context, p: bigint, n: Buffer, m: number, r: DeviceNumber, u: number): Promise<Entry> {
    return this.entryOf(this.inner.mknod(this.ctx(c), p, n, m, r, u));
  }
  override async mkdir(c: Context, p: bigint, n: Buffer, m: number, u: number): Promise<Entry> { return this.entryOf(this.inner.mkdir(this.ctx(c), p, n, m, u)); }
  override link(c: Context, n: bigint, np: bigint, nn: Buffer): Promise<Entry> { return this.entryOf(this.inner.link(c, n, np, nn)); }
  override async create(c: Context, p: bigint, n: Buffer, m: number, f: number, u: number): Promise<CreateOut> {
    return this.created(this.inner.create(this.ctx(c), p, n, m, f, u));
  }
  override async tmpfile(c: Context, p: bigint, m: number, f: number, u: number): Promise<CreateOut> {
    return this.created(this.inner.tmpfile(this.ctx(c), p, m, f, u));
  }
  override async access(c: Context, n: bigint, m: number): Promise<void> { return this.inner.access(this.ctx(c), n, m); }

  override readdirplus(c: Context, n: bigint, fh: bigint, o: bigint, s: number, add: (e: DirEntry, en: Entry | null) => boolean): Promise<void> {
    return this.inner.readdirplus(c, n, fh, o, s, (e, en) => add(e, en ? this.entry(en) : null));
  }
}
