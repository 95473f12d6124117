/**
 * `handlefs virtiofsd --threads 2`, run as a child process, driven by the fake VMM of
 * test/helpers/fake-vmm.ts over the server's own socket with two request queues: the second is
 * served by a thread of its own (src/frontends/vhost-user/queue-threads.ts), which answers there
 * what it can and hands the rest to the owner. Each case compares what the guest was told with
 * the host, reads the server's stats file for what each thread served, and checks that nothing
 * beside the share changed. The server is killed by pid in every case's teardown.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { Req } from '../../src/frontends/vhost-user/messages.js';
import { EntryOut, ForgetIn, GetattrIn, LinkIn, OpenIn, OutHeader, ReadIn, ReleaseIn, RenameIn, WriteIn, CreateIn, encodeStruct } from '../../src/fuse/abi.js';
import { cstr } from '../../src/fuse/codec.js';
import { Op } from '../../src/fuse/opcodes.js';
import { E } from '../../src/errors.js';
import { O_CREAT, O_RDONLY, O_RDWR } from '../../src/sys/constants.js';
import { sys } from '../../src/sys/syscalls.js';
import { CLI } from '../helpers/mount.js';
import { FakeVmm, connectWhenListening, sleep, u32, u64 } from '../helpers/fake-vmm.js';
import { ADJACENT_LAYOUT } from '../helpers/vhost-fake-driver.js';
import { initReq, ok, outErr, req } from '../helpers/vhost-requests.js';

const cleanup: Array<() => void> = [];
// every step runs, whatever an earlier one threw: a server left running would outlive the test
afterEach(() => {
  const errors: unknown[] = [];
  while (cleanup.length) {
    try {
      cleanup.pop()!();
    } catch (e) {
      errors.push(e);
    }
  }
  if (errors.length > 0) throw errors[0];
});

interface Served {
  child: ChildProcess;
  err: () => string;
  vmm: FakeVmm;
  share: string;
  stats: string;
  /** every entry beside the share, as it was before the server started */
  canary: () => string[];
}

const listing = (d: string): string[] => fs.readdirSync(d, { recursive: true }).map(String).sort()
  .map((p) => `${p} ${fs.lstatSync(join(d, p)).size} ${fs.lstatSync(join(d, p)).mtimeMs}`);

async function until<T>(what: string, get: () => T | null | undefined, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v !== null && v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const connect = (sock: string, layout?: readonly { gpa: number; size: number }[]): Promise<FakeVmm> => connectWhenListening(sock, layout, { requestQueues: 2 });

/** The server with two serving threads on a fresh share, the fake VMM connected and through the QEMU handshake, INIT answered. */
async function serve(extra: string[] = [], layout?: readonly { gpa: number; size: number }[], initQueue = 1, env: NodeJS.ProcessEnv = {}): Promise<Served> {
  const base = fs.mkdtempSync(join(os.tmpdir(), 'hfs-vthreads-'));
  cleanup.push(() => fs.rmSync(base, { recursive: true, force: true }));
  const share = join(base, 'share');
  const outside = join(base, 'outside');
  fs.mkdirSync(share);
  fs.mkdirSync(outside);
  fs.writeFileSync(join(outside, 'secret'), 'not for the guest');
  fs.writeFileSync(join(share, 'host.txt'), 'written on the host\n'.repeat(100));
  const before = listing(outside);
  const sock = join(base, 'vhost.sock');
  const stats = join(base, 'stats.json');
  const child = spawn(process.execPath, [CLI, 'virtiofsd', `--socket-path=${sock}`, `--shared-dir=${share}`, '--threads=2', `--stats-file=${stats}`, ...extra], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  cleanup.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const vmm = await connect(sock, layout);
  cleanup.push(() => vmm.release());
  await vmm.handshake({ num: 64 });
  await ok(vmm, initReq(), 4096, { queue: initQueue });
  return { child, err: () => err, vmm, share, stats, canary: () => (expect(listing(outside)).toEqual(before), before) };
}

interface ThreadStats { queue: number; requests: number; served: number; handedOver: number; handedOverByOp: Record<string, number> }
const readStats = (file: string): { queueThreads?: ThreadStats[]; threads?: number; requests?: number } | null => {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as { queueThreads?: ThreadStats[] };
  } catch {
    return null;
  }
};
/** The stats file once its second queue's thread shows `n` requests taken (it is written every second). */
const threadStats = (file: string, n: number): Promise<ThreadStats> =>
  until(`the stats file to show ${n} requests on queue 2`, () => readStats(file)?.queueThreads?.find((t) => t.queue === 2 && t.requests >= n) ?? null, 5000);

const exited = (c: ChildProcess): Promise<number | string | null> =>
  new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(c.exitCode ?? c.signalCode) : c.once('exit', (code, sig) => r(code ?? sig))));

const Q2 = { queue: 2 };
const getattr = (nodeid: bigint): Buffer => req(Op.GETATTR, nodeid, encodeStruct(GetattrIn, { getattr_flags: 0, dummy: 0, fh: 0n }));

/** A request on `queue` that must fail with `errno`. */
async function fails(vmm: FakeVmm, r: Buffer, errno: number, queue = 2): Promise<void> {
  const got = await vmm.request(r, 4096, { queue });
  expect(got, 'no reply on the used ring').not.toBeNull();
  expect(outErr(got!.reply)).toBe(-errno);
}

describe('handlefs virtiofsd --threads 2: a request queue per thread', () => {
  it('offers two request queues; the second thread answers GETATTR and READ itself, hands LOOKUP and CREATE over; the host agrees', async () => {
    const s = await serve();
    const { vmm } = s;
    expect(await vmm.get(Req.GET_QUEUE_NUM)).toBe(3n);
    // the owner settled INIT: let the thread take it over, then everything goes to queue 2
    await sleep(200);
    const looked = await ok(vmm, req(Op.LOOKUP, 1n, cstr('host.txt')), 4096, Q2);
    const node = looked.readBigUInt64LE(OutHeader.SIZE);
    const host = fs.statSync(join(s.share, 'host.txt'), { bigint: true });
    for (let i = 0; i < 5; i++) {
      const attr = await ok(vmm, getattr(node), 4096, Q2);
      // fuse_attr_out: attr_valid, attr_valid_nsec, dummy, then fuse_attr (ino, size)
      expect(attr.readBigUInt64LE(OutHeader.SIZE + 16)).toBe(host.ino);
      expect(attr.readBigUInt64LE(OutHeader.SIZE + 24)).toBe(host.size);
    }
    const opened = await ok(vmm, req(Op.OPEN, node, encodeStruct(OpenIn, { flags: O_RDONLY, open_flags: 0 })), 4096, Q2);
    const fh = opened.readBigUInt64LE(OutHeader.SIZE);
    const read = await ok(vmm, req(Op.READ, node, encodeStruct(ReadIn, { fh, offset: 0n, size: 8192, read_flags: 0, lock_owner: 0n, flags: O_RDONLY, padding: 0 })), 8192 + 16, Q2);
    expect(read.subarray(OutHeader.SIZE)).toEqual(fs.readFileSync(join(s.share, 'host.txt')));
    await ok(vmm, req(Op.RELEASE, node, encodeStruct(ReleaseIn, { fh, flags: O_RDONLY, release_flags: 0, lock_owner: 0n })), 4096, Q2);
    // a file made from queue 2: CREATE goes to the owner, the WRITE of its fd may be served there
    const created = await ok(vmm, req(Op.CREATE, 1n, encodeStruct(CreateIn, { flags: O_RDWR | O_CREAT, mode: 0o100644, umask: 0o022, open_flags: 0 }), cstr('made')), 4096, Q2);
    const made = created.readBigUInt64LE(OutHeader.SIZE);
    const mfh = created.readBigUInt64LE(OutHeader.SIZE + EntryOut.SIZE);
    const data = Buffer.from('bytes from the second queue '.repeat(40));
    const wrote = await ok(vmm, req(Op.WRITE, made, encodeStruct(WriteIn, { fh: mfh, offset: 0n, size: data.length, write_flags: 0, lock_owner: 0n, flags: O_RDWR, padding: 0 }), data), 4096, Q2);
    expect(wrote.readUInt32LE(OutHeader.SIZE)).toBe(data.length);
    await ok(vmm, req(Op.RELEASE, made, encodeStruct(ReleaseIn, { fh: mfh, flags: O_RDWR, release_flags: 0, lock_owner: 0n })), 4096, Q2);
    expect(fs.readFileSync(join(s.share, 'made'))).toEqual(data);
    await fails(vmm, req(Op.LOOKUP, 1n, cstr('missing')), E.ENOENT);
    // 13 requests on queue 2: some answered there, the rest by the owner
    const t = await threadStats(s.stats, 13);
    expect(t.requests).toBe(13);
    expect(t.served).toBeGreaterThanOrEqual(6); // five GETATTRs and the READ at least
    expect(t.handedOver).toBeGreaterThanOrEqual(2); // OPEN and CREATE at least
    expect(t.served + t.handedOver).toBe(13);
    expect(t.handedOverByOp.CREATE).toBe(1);
    expect(t.handedOverByOp.GETATTR ?? 0).toBe(0);
    // queue 1 is the owner's, and still serves
    await ok(vmm, getattr(1n), 4096, { queue: 1 });
    s.canary();
    vmm.hangUp();
    expect(await exited(s.child), s.err()).toBe(0);
    // at exit the stats file keeps the ended connection's numbers
    expect(readStats(s.stats)).toMatchObject({ threads: 2, queueThreads: [{ queue: 2, requests: 13 }] });
  });

  it('an INIT that comes on the second queue is settled by the owner, and the thread then serves with it', async () => {
    const s = await serve([], undefined, 2);
    const { vmm } = s;
    await sleep(200);
    for (let i = 0; i < 3; i++) await ok(vmm, getattr(1n), 4096, Q2);
    const t = await threadStats(s.stats, 4);
    expect(t.handedOverByOp).toEqual({ INIT: 1 });
    expect(t.served).toBe(3);
    vmm.hangUp();
    expect(await exited(s.child), s.err()).toBe(0);
  });

  it('the second queue stops where the VMM asks (GET_VRING_BASE), resumes from there, and its thread remaps a new memory table', async () => {
    const s = await serve([], ADJACENT_LAYOUT);
    const { vmm } = s;
    for (let i = 0; i < 3; i++) await ok(vmm, getattr(1n), 4096, Q2);
    vmm.send(Req.SET_VRING_ENABLE, u32(2, 0));
    vmm.send(Req.GET_VRING_BASE, u32(2, 0));
    expect(await vmm.reply()).toMatchObject({ request: Req.GET_VRING_BASE, payload: u32(2, 3) });
    // stopped: a request posted now is not taken
    const waiting = vmm.post(getattr(1n), 256, Q2);
    expect((await vmm.used(1, 300, 2)).used).toEqual([]);
    // QEMU's restart of the queue: its base, addresses and kick again, then enabled
    const d = vmm.driverOf(2);
    vmm.send(Req.SET_VRING_BASE, u32(2, 3));
    vmm.send(Req.SET_VRING_ADDR, vmm.addrPayload(2, d.desc, d.avail, d.used));
    vmm.vringFd(Req.SET_VRING_KICK, 2, vmm.kick[2]!);
    vmm.send(Req.SET_VRING_ENABLE, u32(2, 1));
    const { used } = await vmm.used(1, 3000, 2);
    expect(used.map(([id]) => id)).toEqual([waiting.head]);
    // the third region (no ring in it) goes and comes back: the thread maps each new table
    const extra = vmm.guest.descs[2]!;
    const extraBytes = Buffer.concat([u64(0n), u64(extra.gpa, extra.size, extra.uva, extra.mmapOffset)]);
    expect(await vmm.acked(Req.REM_MEM_REG, extraBytes)).toBe(0n);
    await ok(vmm, getattr(1n), 4096, Q2);
    expect(await vmm.acked(Req.ADD_MEM_REG, extraBytes, [vmm.guest.memfd])).toBe(0n);
    // a request whose reply space lies in the region added back: the thread maps it
    const d2 = vmm.driverOf(2);
    const r = getattr(1n);
    const inAt = d2.alloc(r.length);
    vmm.guest.write(inAt, r);
    const outAt = Number(extra.gpa) + 0x100;
    const head = d2.chain([{ gpa: inAt, len: r.length }, { gpa: outAt, len: 256, write: true }]);
    d2.setUsedEvent(d2.usedSeen);
    d2.post(head);
    sys.eventfdWrite(vmm.kick[2]!, 1);
    const got = await vmm.used(1, 3000, 2);
    expect(got.used.map(([id]) => id)).toEqual([head]);
    const reply = vmm.guest.read(outAt, got.used[0]![1]);
    expect(outErr(reply)).toBe(0);
    expect(reply.readBigUInt64LE(OutHeader.unique)).toBe(r.readBigUInt64LE(8));
    const t = await threadStats(s.stats, 6);
    expect(t.requests).toBe(6);
    expect(readStats(s.stats), s.err()).toMatchObject({ brokenQueues: 0, badMessages: 0 });
    s.canary();
    vmm.hangUp();
    expect(await exited(s.child), s.err()).toBe(0);
  });

  it('a hostile chain on the thread\'s queue breaks that queue only: its error eventfd fires, the owner\'s queue serves on, nothing outside the share is touched', async () => {
    const s = await serve();
    const { vmm } = s;
    await ok(vmm, getattr(1n), 4096, Q2);
    const d = vmm.driverOf(2);
    // a CREATE whose reply buffer lies outside guest memory
    const r = req(Op.CREATE, 1n, encodeStruct(CreateIn, { flags: O_RDWR | O_CREAT, mode: 0o100644, umask: 0o022, open_flags: 0 }), cstr('victim'));
    const at = d.alloc(r.length);
    vmm.guest.write(at, r);
    const head = d.chain([{ gpa: at, len: r.length }, { gpa: 0x7fff_0000, len: 4096, write: true }]);
    d.post(head);
    sys.eventfdWrite(vmm.kick[2]!, 1);
    await until('the error eventfd of queue 2', () => sys.eventfdRead(vmm.err[2]!), 5000);
    expect((await vmm.used(1, 100, 2)).used).toEqual([]);
    expect(fs.readdirSync(s.share).sort()).toEqual(['host.txt']);
    expect(vmm.guest.guardsIntact()).toBe(true);
    await ok(vmm, getattr(1n), 4096, { queue: 1 });
    await until('the broken queue in the stats', () => (readStats(s.stats) as { brokenQueues?: number } | null)?.brokenQueues === 1 || null, 5000);
    s.canary();
    vmm.hangUp();
    expect(await exited(s.child), s.err()).toBe(0);
  });

  it('both queues at once: creates, writes, renames, links and unlinks in flight together; the host agrees, every inode forgotten and every handle released at the end', async () => {
    const s = await serve();
    const { vmm } = s;
    /** Post every request at once, then take every reply (matched by queue and head); a request without a reply space gets none. */
    const batch = async (items: Array<{ queue: number; req: Buffer; room?: number }>): Promise<Buffer[]> => {
      const posted = items.map((it) => ({ ...it, ...vmm.post(it.req, it.room ?? 256, { queue: it.queue }) }));
      const got = new Map<string, number>();
      for (const q of [1, 2]) {
        const want = posted.filter((p) => p.queue === q).length;
        if (want === 0) continue;
        const { used } = await vmm.used(want, 10_000, q);
        expect(used.length, `replies on queue ${q}`).toBe(want);
        for (const [id, len] of used) got.set(`${q}:${id}`, len);
      }
      return posted.map((p) => {
        const len = got.get(`${p.queue}:${p.head}`);
        expect(len, `a reply to opcode ${p.req.readUInt32LE(4)} on queue ${p.queue}`).toBeDefined();
        const reply = vmm.guest.read(p.out, len!);
        if ((p.room ?? 256) > 0) expect(outErr(reply), `opcode ${p.req.readUInt32LE(4)} on queue ${p.queue}`).toBe(0);
        return reply;
      });
    };
    const N = 24;
    const name = (i: number): Buffer => cstr(`f${i}`);
    const other = (i: number): number => (i % 2 === 0 ? 2 : 1);
    const mine = (i: number): number => (i % 2 === 0 ? 1 : 2);
    const ids = [...Array(N).keys()];
    const created = await batch(ids.map((i) => ({ queue: mine(i), req: req(Op.CREATE, 1n, encodeStruct(CreateIn, { flags: O_RDWR | O_CREAT, mode: 0o100644, umask: 0o022, open_flags: 0 }), name(i)) })));
    const node = created.map((r) => r.readBigUInt64LE(OutHeader.SIZE));
    const fh = created.map((r) => r.readBigUInt64LE(OutHeader.SIZE + EntryOut.SIZE));
    const lookups = ids.map(() => 1n);
    const data = ids.map((i) => Buffer.from(`content of f${i} `.repeat(i + 1)));
    // each file written and released from the queue that did not create it
    await batch(ids.map((i) => ({ queue: other(i), req: req(Op.WRITE, node[i]!, encodeStruct(WriteIn, { fh: fh[i]!, offset: 0n, size: data[i]!.length, write_flags: 0, lock_owner: 0n, flags: O_RDWR, padding: 0 }), data[i]!) })));
    await batch(ids.map((i) => ({ queue: other(i), req: req(Op.RELEASE, node[i]!, encodeStruct(ReleaseIn, { fh: fh[i]!, flags: O_RDWR, release_flags: 0, lock_owner: 0n })) })));
    // looked up and stat'ed from both queues together
    const looked = await batch(ids.flatMap((i) => [
      { queue: other(i), req: req(Op.LOOKUP, 1n, name(i)) },
      { queue: mine(i), req: getattr(node[i]!) },
    ]));
    ids.forEach((i) => {
      expect(looked[2 * i]!.readBigUInt64LE(OutHeader.SIZE), `f${i}`).toBe(node[i]);
      lookups[i]!++;
    });
    // a third renamed, a third linked, a third unlinked, every kind on both queues at once
    await batch(ids.map((i) => {
      const q = i % 4 < 2 ? 1 : 2;
      if (i % 3 === 0) return { queue: q, req: req(Op.RENAME, 1n, encodeStruct(RenameIn, { newdir: 1n }), name(i), cstr(`r${i}`)) };
      if (i % 3 === 1) return { queue: q, req: req(Op.LINK, 1n, encodeStruct(LinkIn, { oldnodeid: node[i]! }), cstr(`l${i}`)) };
      return { queue: q, req: req(Op.UNLINK, 1n, name(i)), room: 16 };
    }));
    ids.forEach((i) => void (i % 3 === 1 && lookups[i]!++));
    const expected = ids.flatMap((i) => (i % 3 === 0 ? [`r${i}`] : i % 3 === 1 ? [`f${i}`, `l${i}`] : [])).sort();
    expect(fs.readdirSync(s.share).filter((n) => n !== 'host.txt').sort()).toEqual(expected);
    for (const i of ids) {
      if (i % 3 === 2) continue;
      expect(fs.readFileSync(join(s.share, i % 3 === 0 ? `r${i}` : `l${i}`)), `f${i}`).toEqual(data[i]);
    }
    // the guest forgets every inode, from both queues: the server's inode table is back to the root, no handle open
    await batch(ids.map((i) => ({ queue: mine(i), req: req(Op.FORGET, node[i]!, encodeStruct(ForgetIn, { nlookup: lookups[i]! })), room: 0 })));
    const end = await until('every inode forgotten', () => {
      const st = readStats(s.stats) as { inodes?: number; openHandles?: number; queueThreads?: ThreadStats[] } | null;
      return st?.inodes === 1 && st.openHandles === 0 ? st : null;
    }, 5000);
    const t = end.queueThreads!.find((x) => x.queue === 2)!;
    // on queue 2: 12 CREATEs, 12 WRITEs, 12 RELEASEs, 12 LOOKUPs and 12 GETATTRs, 12 name operations, 12 FORGETs
    expect(t.requests).toBe(7 * (N / 2));
    expect(readStats(s.stats)).toMatchObject({ brokenQueues: 0, badMessages: 0 });
    s.canary();
    vmm.hangUp();
    expect(await exited(s.child), s.err()).toBe(0);
  });

  it('--keep-listening: each VMM that goes leaves no fd and no guest memory behind, its threads\' included', async () => {
    const s = await serve(['--keep-listening']);
    const pid = s.child.pid!;
    const fds = (): string[] => fs.readdirSync(`/proc/${pid}/fd`).map((n) => {
      try {
        return fs.readlinkSync(`/proc/${pid}/fd/${n}`);
      } catch {
        return '?';
      }
    }).sort();
    const guestMaps = (): number => fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter((l) => l.includes('memfd:fake-vmm-ram')).length;
    let vmm = s.vmm;
    let after: string[] = [];
    for (let round = 0; round < 3; round++) {
      await ok(vmm, getattr(1n), 4096, Q2);
      await ok(vmm, getattr(1n), 4096, { queue: 1 });
      // both queues' threads have the guest mapped while it is connected
      expect(guestMaps()).toBeGreaterThan(0);
      vmm.hangUp();
      // the connection's filesystem is released after the VMM went: nothing open on the share then
      await until('the server to let the VMM go', () => (guestMaps() === 0 && !fds().some((f) => f.startsWith(s.share)) ? true : null));
      const idle = fds();
      if (round > 0) expect(idle, `round ${round}`).toEqual(after);
      after = idle;
      vmm = await connect(join(s.share, '..', 'vhost.sock'));
      const v = vmm;
      cleanup.push(() => v.release());
      await vmm.handshake({ num: 64 });
      await ok(vmm, initReq(), 4096, { queue: 1 });
      await sleep(200);
    }
    vmm.hangUp();
    s.child.kill('SIGTERM');
    expect(await exited(s.child), s.err()).toBe(0);
  });

  it('a queue thread that dies of a bug stops the server (exit 1, one line naming the thread) instead of leaving its requests unanswered', async () => {
    const s = await serve([], undefined, 1, { HANDLEFS_TEST_THREAD_FAULT: 'boom' });
    const { vmm } = s;
    vmm.post(req(Op.LOOKUP, 1n, cstr('boom')), 256, Q2);
    expect(await exited(s.child)).toBe(1);
    expect(s.err()).toMatch(/serving thread 1 failed: HANDLEFS_TEST_THREAD_FAULT: LOOKUP of boom: stopping/);
    s.canary();
  });

  it('--threads above 1 with --supervise: a usage error naming both', async () => {
    const child = spawn(process.execPath, [CLI, 'virtiofsd', '--socket-path=/nonexistent/s', '--shared-dir=/', '--threads=2', '--supervise'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (x: string) => (err += x));
    expect(await exited(child)).toBe(2);
    expect(err).toMatch(/--threads above 1 does not go with --supervise/);
  });
});
