/**
 * The live vhost-user back-end against a hostile VMM, no QEMU: a real VhostUserConnection over a
 * real ProtocolServer over a real PassthroughFs on a temp share, driven by the fake VMM of
 * test/helpers/fake-vmm.ts (a socketpair, memfd guest RAM both sides map, eventfds).
 *
 * After every case: no fd of this process leaked (the /proc/self/fd listing is as before), the
 * connection's `done` resolved, a canary directory beside the share is byte-for-byte unchanged,
 * and the process is alive to check (a SIGBUS or a hang would end the run instead).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Private, VhostUserConnection, type ConnectionEnd } from '../../src/frontends/vhost-user/connection.js';
import { INFLIGHT_BYTES, InflightTable } from '../../src/frontends/vhost-user/inflight.js';
import { Feature, FLAG_NEED_REPLY, FLAG_REPLY, Req, featureMask } from '../../src/frontends/vhost-user/messages.js';
import {
  CreateIn, EntryOut, GetattrIn, InHeader, InitIn, OutHeader, ReadIn, ReleaseIn, WriteIn, encodeStruct, requestBufferSize,
} from '../../src/fuse/abi.js';
import { cstr, encodeRequest } from '../../src/fuse/codec.js';
import { Op } from '../../src/fuse/opcodes.js';
import { ProtocolServer } from '../../src/fuse/protocol-server.js';
import { E } from '../../src/errors.js';
import { EFD_CLOEXEC, EFD_NONBLOCK, O_CREAT, O_RDWR } from '../../src/sys/constants.js';
import { sys } from '../../src/sys/syscalls.js';
import { captureLogger, makeFs, tmpdir, type Captured } from '../helpers/fs-fixture.js';
import { FakeVmm, sleep, u32, u64, wire, type HandshakeOpts, type PostOpts } from '../helpers/fake-vmm.js';
import { fileRoundTrip, initReq, ok, outErr, outLen, req, unique } from '../helpers/vhost-requests.js';
import { mulberry32 } from '../helpers/prng.js';
import { VRING_DESC_F_NEXT, VRING_DESC_F_WRITE } from '../../src/frontends/vhost-user/vring.js';

const MAX_WRITE = 64 * 1024;
const silent = pino({ level: 'silent' });
const UID = process.getuid?.() ?? 0;
const GID = process.getgid?.() ?? 0;

// ------------------------------------------------------------------ the world around a case

const fdListing = (): Map<string, string> => {
  const out = new Map<string, string>();
  for (const n of fs.readdirSync('/proc/self/fd')) {
    try {
      out.set(n, fs.readlinkSync(`/proc/self/fd/${n}`));
    } catch {
      /* the readdir's own fd */
    }
  }
  return out;
};

/** Every entry below `dir` (not following links): path, type, mode, size, mtime, contents. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of fs.readdirSync(d).sort()) {
      const p = path.join(d, name);
      const st = fs.lstatSync(p);
      const data = st.isFile() ? fs.readFileSync(p).toString('hex') : st.isSymbolicLink() ? fs.readlinkSync(p) : '';
      out.push(`${path.relative(dir, p)} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${data}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

interface Env {
  vmm: FakeVmm;
  conn: VhostUserConnection;
  share: string;
  cap: Captured;
  server: ProtocolServer;
}

/** Log lines of the connection at warn and above. */
const warnings = (cap: Captured): string[] => cap.lines.filter((l) => (l.level as number) >= 40).map((l) => String(l.msg));

async function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let t: NodeJS.Timeout | undefined;
  const r = await Promise.race([p, new Promise<'timeout'>((res) => (t = setTimeout(() => res('timeout'), ms)))]);
  clearTimeout(t);
  return r;
}

interface CaseOpts {
  layout?: readonly { gpa: number; size: number }[];
  /** the connection must have ended by itself (socket error, fatal message) before teardown */
  endsItself?: boolean;
  /** the back-end maps regions in pieces of this many bytes (its default is just under 4 GiB) */
  pieceBytes?: bigint;
  /** --tag: the config space the back-end offers */
  tag?: string;
  /** request queues the back-end offers and the VMM sets up (default 1) */
  requestQueues?: number;
  /** the peer is a supervisor (ConnectionOptions.supervised: the private messages, in-flight records) */
  supervised?: boolean;
}

/**
 * One case: a base dir holding the share and a canary, a fresh connection; the body drives it.
 * Afterwards the VMM hangs up (if it has not), `done` must resolve, the fds and the canary must
 * be as before. Returns how the connection ended.
 */
async function withConnection(body: (env: Env) => Promise<void>, o: CaseOpts = {}): Promise<ConnectionEnd> {
  const base = tmpdir('hfs-vhost-');
  const share = path.join(base, 'share');
  const canary = path.join(base, 'canary');
  fs.mkdirSync(share);
  fs.mkdirSync(path.join(canary, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(canary, 'keep'), 'canary bytes');
  fs.writeFileSync(path.join(canary, 'sub', 'deep'), 'x'.repeat(100));
  fs.symlinkSync('../share', path.join(canary, 'link'));
  const before = snapshot(base).filter((l) => !l.startsWith('share'));
  const fdsBefore = fdListing();
  const { pfs } = makeFs(share);
  const server = new ProtocolServer(pfs, { maxWrite: MAX_WRITE, requesterGroups: () => null }, silent);
  const { log, cap } = captureLogger('warn');
  const vmm = new FakeVmm(o.layout, { requestQueues: o.requestQueues ?? 1 });
  const conn = new VhostUserConnection(vmm.backFd, server, { requestQueues: o.requestQueues ?? 1, maxRequestBytes: requestBufferSize(MAX_WRITE), mapPieceBytes: o.pieceBytes, ...(o.tag === undefined ? {} : { tag: o.tag }), ...(o.supervised ? { supervised: true } : {}) }, log);
  let settled = false;
  void conn.done.then(() => (settled = true));
  conn.start();
  let end: ConnectionEnd | 'timeout';
  try {
    await body({ vmm, conn, share, cap, server });
    if (o.endsItself) expect(await within(conn.done, 3000)).not.toBe('timeout');
  } finally {
    vmm.release();
    end = await within(conn.done, 3000);
    await pfs.destroy();
  }
  expect(end, 'the connection did not end after the VMM hung up').not.toBe('timeout');
  expect(settled).toBe(true);
  // the back-end released its mappings, eventfds, received fds and its socket end
  const fdsAfter = fdListing();
  const leaked = [...fdsAfter].filter(([n, t]) => fdsBefore.get(n) !== t);
  expect(leaked, 'fds left open').toEqual([]);
  expect(snapshot(base).filter((l) => !l.startsWith('share'))).toEqual(before);
  fs.rmSync(base, { recursive: true, force: true });
  return end as ConnectionEnd;
}

// ------------------------------------------------------------------ FUSE requests as the guest sends them

beforeAll(async () => {
  // warm-up: whatever the process opens once and keeps (libuv's pool, io_uring) is opened here
  await withConnection(async (env) => {
    await env.vmm.handshake();
    await fileRoundTrip(env, 'warm');
  });
});

// ------------------------------------------------------------------ 1. the happy path

describe('vhost-user connection: happy path', () => {
  for (const [label, hs] of [
    ['ADD_MEM_REG, EVENT_IDX, INDIRECT', {}],
    ['SET_MEM_TABLE, no EVENT_IDX, no INDIRECT', { memSlots: false, eventIdx: false, indirect: false }],
    ['ADD_MEM_REG, no EVENT_IDX, INDIRECT', { eventIdx: false }],
    ['SET_MEM_TABLE, EVENT_IDX, no INDIRECT, queue of 8', { memSlots: false, indirect: false, num: 8 }],
  ] as [string, HandshakeOpts][]) {
    it(`handshake, INIT, create + write + read a file (${label})`, async () => {
      const end = await withConnection(async (env) => {
        await env.vmm.handshake(hs);
        await fileRoundTrip(env, 'f', { splitReadable: true });
        expect(env.conn.counters).toMatchObject({ brokenQueues: 0, badMessages: 0 });
        expect(warnings(env.cap)).toEqual([]);
        // guest poweroff as QEMU does it: disable, then the next avail index of each queue
        for (const i of [0, 1]) env.vmm.send(Req.SET_VRING_ENABLE, u32(i, 0));
        env.vmm.send(Req.GET_VRING_BASE, u32(0, 0));
        expect(await env.vmm.reply()).toMatchObject({ request: Req.GET_VRING_BASE, payload: u32(0, 0) });
        env.vmm.send(Req.GET_VRING_BASE, u32(1, 0));
        expect(await env.vmm.reply()).toMatchObject({ request: Req.GET_VRING_BASE, payload: u32(1, env.conn.counters.requests) });
      });
      expect(end).toEqual({ reason: 'closed' });
    });
  }

  it('two request queues: each request is answered on its own queue\'s used ring and call eventfd', async () => {
    const end = await withConnection(async (env) => {
      const { vmm } = env;
      await vmm.handshake();
      expect(await vmm.get(Req.GET_QUEUE_NUM)).toBe(3n);
      const nothing = { used: [], called: false };
      // one at a time: INIT on vring 1, GETATTR on vring 2; the other queue sees nothing
      await ok(vmm, initReq(), 4096, { queue: 1 });
      expect(await vmm.used(1, 20, 2)).toEqual(nothing);
      const attr = await ok(vmm, getattr(), 4096, { queue: 2 });
      expect(attr.readBigUInt64LE(OutHeader.unique)).toBe(unique);
      expect(await vmm.used(1, 20, 1)).toEqual(nothing);
      // both at once: the same head index on each ring, each reply in its own queue's buffer
      const posted = [1, 2].map((queue) => { const r = getattr(); return { queue, unique: r.readBigUInt64LE(InHeader.unique), ...vmm.post(r, 256, { queue }) }; });
      expect(posted[0]!.head).toBe(posted[1]!.head);
      for (const p of posted) {
        const { used, called } = await vmm.used(1, 3000, p.queue);
        expect(used.map(([id]) => id), `vring ${p.queue}`).toEqual([p.head]);
        expect(called).toBe(true);
        const reply = vmm.guest.read(p.out, used[0]![1]);
        expect(outErr(reply)).toBe(0);
        expect(reply.readBigUInt64LE(OutHeader.unique)).toBe(p.unique);
      }
      expect(env.conn.counters).toMatchObject({ requests: 4, replies: 4, brokenQueues: 0, badMessages: 0 });
      expect(warnings(env.cap)).toEqual([]);
      // each queue's next avail index is its own: two requests taken from each
      for (const i of [0, 1, 2]) env.vmm.send(Req.SET_VRING_ENABLE, u32(i, 0));
      for (const [i, next] of [[0, 0], [1, 2], [2, 2]] as const) {
        env.vmm.send(Req.GET_VRING_BASE, u32(i, 0));
        expect(await env.vmm.reply()).toMatchObject({ request: Req.GET_VRING_BASE, payload: u32(i, next) });
      }
    }, { requestQueues: 2 });
    expect(end).toEqual({ reason: 'closed' });
  });

  it('regions mapped in pieces (as a region over 4 GiB is): buffers across piece boundaries work, REM_MEM_REG unmaps every piece', async () => {
    await withConnection(async (env) => {
      const before = ramMaps();
      await env.vmm.handshake();
      const mapped = ramMaps();
      await fileRoundTrip(env, 'pieces', { splitReadable: true });
      expect(env.conn.counters).toMatchObject({ brokenQueues: 0, badMessages: 0 });
      expect(warnings(env.cap)).toEqual([]);
      // the low region holds no ring: removing it leaves the queues, and takes all its pieces
      const lo = env.vmm.guest.descs[0]!;
      expect(await env.vmm.acked(Req.REM_MEM_REG, addMemReg(lo), [])).toBe(0n);
      expect(ramMaps()).toBeLessThan(mapped);
      expect(ramMaps()).toBeGreaterThan(before);
      // and a region that is not one of ours, piece-sized or not, is refused
      expect(await env.vmm.acked(Req.REM_MEM_REG, addMemReg({ ...lo, size: 0x4000n }), [])).not.toBe(0n);
    }, { pieceBytes: 0x1000n }); // a page: the 8 KiB READ reply and the ~2 KiB WRITE cross pieces
  });

  it('indirect chains carry the whole session', async () => {
    await withConnection(async (env) => {
      await env.vmm.handshake({ indirect: true });
      await fileRoundTrip(env, 'ind', { indirect: true, splitReadable: true });
      expect(env.conn.counters.brokenQueues).toBe(0);
    });
  });
});

// ------------------------------------------------------------------ 2. message-level hostility

/**
 * Bytes of the fake guest's memfd mapped in this process (the test's own and the back-end's). Bytes,
 * not /proc/self/maps lines: the kernel merges adjacent mappings of consecutive file ranges.
 */
const ramMaps = (): number => fs.readFileSync('/proc/self/maps', 'utf8').split('\n')
  .filter((l) => l.includes('memfd:fake-vmm-ram'))
  .reduce((n, l) => { const [a, b] = l.split(' ')[0]!.split('-'); return n + parseInt(b!, 16) - parseInt(a!, 16); }, 0);
/** What the back-end maps for the high region (0x34000 bytes at a page offset of GUARD). */
const HIGH_MAP = 0x35000;
const ev = (): number => sys.eventfdCreate(EFD_NONBLOCK | EFD_CLOEXEC);
const addMemReg = (r: { gpa: bigint; size: bigint; uva: bigint; mmapOffset: bigint }): Buffer => Buffer.concat([u64(0n), u64(r.gpa, r.size, r.uva, r.mmapOffset)]);
const HIGH_UVA = 0x7f13_0000_0000n;

/** The QEMU handshake and the guest's INIT. */
async function serving(env: Env, hs: HandshakeOpts = {}): Promise<void> {
  await env.vmm.handshake(hs);
  await ok(env.vmm, initReq());
}

/** After a refusal the connection still works: a value request is answered and a FUSE request served. */
async function stillServes(env: Env): Promise<void> {
  await env.vmm.barrier();
  if (env.server.negotiated === null) await ok(env.vmm, initReq());
  await ok(env.vmm, req(Op.GETATTR, 1n, encodeStruct(GetattrIn, { getattr_flags: 0, dummy: 0, fh: 0n })));
}

describe('vhost-user connection: hostile messages', () => {
  it('unknown requests: no reply without NEED_REPLY, a failure ack with it', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      await serving(env);
      vmm.send(99);
      vmm.send(0x7fffffff, Buffer.alloc(16));
      expect(await vmm.get(Req.GET_QUEUE_NUM)).toBe(2n); // the first reply is this one: nothing answered the unknown ones
      expect(await vmm.acked(99, Buffer.alloc(8))).not.toBe(0n);
      // features we did not offer: the log base with its fd (closed), the back-end channel
      expect(await vmm.acked(Req.SET_LOG_BASE, u64(4096n, 0n), [vmm.guest.memfd])).not.toBe(0n);
      expect(await vmm.acked(Req.SET_BACKEND_REQ_FD, Buffer.alloc(0), [vmm.kick[0]!])).not.toBe(0n);
      expect(await vmm.acked(Req.SET_FEATURES, u64(featureMask(Feature.VIRTIO_F_RING_PACKED)))).not.toBe(0n);
      await stillServes(env);
      expect(env.conn.counters.badMessages).toBe(3); // the three unknown ones
    });
  });

  it('with --tag, CONFIG is offered and GET_CONFIG reads the tag and the queue count; SET_CONFIG is refused', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      expect((await vmm.get(Req.GET_PROTOCOL_FEATURES)) & (1n << 9n)).toBe(1n << 9n);
      await vmm.handshake();
      vmm.send(Req.GET_CONFIG, Buffer.concat([u32(0, 40, 0), Buffer.alloc(40)]));
      const r = await vmm.reply();
      expect(r).not.toBe('closed');
      const p = (r as { payload: Buffer }).payload;
      expect([p.readUInt32LE(0), p.readUInt32LE(4)]).toEqual([0, 40]);
      expect(p.subarray(12, 12 + 36)).toEqual(Buffer.concat([Buffer.from('vm1-share'), Buffer.alloc(27)]));
      expect(p.readUInt32LE(12 + 36)).toBe(1);
      // past the end of the space: an empty answer, and the connection lives
      vmm.send(Req.GET_CONFIG, Buffer.concat([u32(36, 8, 0), Buffer.alloc(8)]));
      expect(((await vmm.reply()) as { payload: Buffer }).payload.readUInt32LE(4)).toBe(0);
      expect(await vmm.acked(Req.SET_CONFIG, Buffer.concat([u32(0, 4, 0), Buffer.alloc(4)]))).not.toBe(0n);
      await stillServes(env);
    }, { tag: 'vm1-share' });
  });

  it('a request that expects a value it cannot get ends the connection with one log line', async () => {
    const end = await withConnection(async (env) => {
      await env.vmm.handshake();
      env.vmm.send(Req.GET_CONFIG, Buffer.concat([u32(0, 4, 0), Buffer.alloc(4)]));
      expect(await env.vmm.reply()).toBe('closed');
      expect(warnings(env.cap).filter((m) => m.includes('closing the connection'))).toHaveLength(1);
    }, { endsItself: true });
    expect(end).toMatchObject({ reason: 'error' });
  });

  it('wrong payload sizes: a failure ack; on a value request, the end', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      await vmm.handshake();
      expect(await vmm.acked(Req.SET_VRING_NUM, u32(1))).not.toBe(0n);
      expect(await vmm.acked(Req.SET_FEATURES, u64(1n, 2n))).not.toBe(0n);
      expect(await vmm.acked(Req.SET_MEM_TABLE, Buffer.concat([u32(9, 0), Buffer.alloc(9 * 32)]))).not.toBe(0n);
      expect(await vmm.acked(Req.SET_VRING_CALL, u64(1n | (1n << 20n)), [ev()].map((f) => vmm.own(f)))).not.toBe(0n);
      await stillServes(env);
    });
    const end = await withConnection(async (env) => {
      await env.vmm.handshake();
      env.vmm.send(Req.GET_VRING_BASE, u32(1));
      expect(await env.vmm.reply()).toBe('closed');
    }, { endsItself: true });
    expect(end).toMatchObject({ reason: 'error' });
  });

  it('missing and extra fds: refused, every received fd closed', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      await vmm.handshake();
      const extra = [ev(), ev(), ev()].map((f) => vmm.own(f));
      const fdsBefore = fdListing().size;
      const maps = ramMaps();
      const d = vmm.guest.descs[1]!;
      expect(await vmm.acked(Req.ADD_MEM_REG, addMemReg({ ...d, gpa: 0x100000n, uva: HIGH_UVA }))).not.toBe(0n);
      expect(await vmm.acked(Req.SET_VRING_KICK, u64(1n))).not.toBe(0n);
      expect(await vmm.acked(Req.SET_FEATURES, u64(0n), extra)).not.toBe(0n);
      expect(await vmm.acked(Req.SET_OWNER, Buffer.alloc(0), [vmm.guest.memfd])).not.toBe(0n);
      expect(await vmm.acked(Req.ADD_MEM_REG, addMemReg({ ...d, gpa: 0x100000n, uva: HIGH_UVA }), [vmm.guest.memfd, vmm.guest.memfd])).not.toBe(0n);
      expect(await vmm.acked(Req.SET_VRING_KICK, u64(1n | 0x100n), [vmm.kick[1]!])).not.toBe(0n);
      // a table of two regions with one fd
      expect(await vmm.acked(Req.SET_MEM_TABLE, vmm.memTablePayload(vmm.guest.descs), [vmm.guest.memfd])).not.toBe(0n);
      expect(fdListing().size).toBe(fdsBefore);
      expect(ramMaps()).toBe(maps);
      await stillServes(env);
    });
  });

  it('more than 8 fds on one message end the connection; all closed', async () => {
    for (const count of [9, 32]) {
      const end = await withConnection(async (env) => {
        await env.vmm.handshake();
        const fds = Array.from({ length: count }, () => env.vmm.own(ev()));
        env.vmm.send(Req.SET_FEATURES, u64(0n), { fds });
        expect(await env.vmm.reply()).toBe('closed');
      }, { endsItself: true });
      expect(end).toMatchObject({ reason: 'error' });
    }
  });

  it('header sizes: oversized and wrong version end the connection; a header cut by the hang-up ends it cleanly', async () => {
    for (const bytes of [
      Buffer.concat([u32(Req.SET_FEATURES, 1, 1 << 20), u64(0n)]),
      Buffer.concat([u32(Req.SET_FEATURES, 1, 0xffffffff), u64(0n)]),
      wire(Req.GET_FEATURES).fill(0x02, 4, 5), // version 2
      wire(Req.GET_FEATURES).fill(0x00, 4, 5), // version 0
      wire(Req.GET_FEATURES).fill(0x03, 4, 5), // version 3
    ]) {
      const end = await withConnection(async (env) => {
        await env.vmm.handshake();
        env.vmm.sendRaw(bytes, [env.vmm.own(ev())]);
        expect(await env.vmm.reply()).toBe('closed');
      }, { endsItself: true });
      expect(end).toMatchObject({ reason: 'error' });
    }
    // a short header, a header without its payload (with an fd): the VMM hangs up mid-message
    for (const bytes of [wire(Req.SET_FEATURES, u64(0n)).subarray(0, 6), wire(Req.ADD_MEM_REG, Buffer.alloc(40)).subarray(0, 30)]) {
      const end = await withConnection(async (env) => {
        await env.vmm.handshake();
        env.vmm.sendRaw(bytes, [env.vmm.guest.memfd]);
        await sleep(5);
        env.vmm.hangUp();
      });
      expect(end).toEqual({ reason: 'closed' });
    }
  });

  it('overlapping regions (SET_MEM_TABLE and ADD_MEM_REG) are refused; nothing stays mapped', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      await vmm.handshake({ memSlots: false });
      const maps = ramMaps();
      const [lo, hi] = vmm.guest.descs as [typeof vmm.guest.descs[0], typeof vmm.guest.descs[0]];
      const fd = vmm.guest.memfd;
      // gpa overlap, uva overlap, a region overlapping itself twice
      for (const table of [
        [lo, { ...hi, gpa: lo.gpa + 0x1000n }],
        [lo, { ...hi, uva: lo.uva + 0x10n }],
        [hi, hi],
      ]) {
        expect(await vmm.acked(Req.SET_MEM_TABLE, vmm.memTablePayload(table), table.map(() => fd))).not.toBe(0n);
        expect(ramMaps()).toBe(maps);
      }
      for (const r of [{ ...hi, mmapOffset: lo.mmapOffset, size: 0x1000n }, { ...lo, gpa: 0x200000n }, { ...hi, uva: 0x1n << 40n, gpa: hi.gpa + hi.size - 0x1000n }]) {
        expect(await vmm.acked(Req.ADD_MEM_REG, addMemReg(r), [fd])).not.toBe(0n);
        expect(ramMaps()).toBe(maps);
      }
      // sizes 0, past 2^64, over 4 GiB; an fd that cannot be mapped; an mmap offset past 2^63
      for (const [r, f] of [
        [{ ...hi, gpa: 0x200000n, uva: HIGH_UVA, size: 0n }, fd],
        [{ ...hi, gpa: 0xffff_ffff_ffff_f000n, uva: HIGH_UVA }, fd],
        [{ ...hi, gpa: 0x200000n, uva: HIGH_UVA, size: 5n << 32n }, fd],
        [{ ...hi, gpa: 0x200000n, uva: HIGH_UVA }, vmm.kick[0]!],
        [{ ...hi, gpa: 0x200000n, uva: HIGH_UVA, mmapOffset: 0x8000_0000_0000_0000n }, fd],
      ] as const) {
        expect(await vmm.acked(Req.ADD_MEM_REG, addMemReg(r), [f])).not.toBe(0n);
        expect(ramMaps()).toBe(maps);
      }
      await stillServes(env);
    });
  });

  it('a region past the end of its memfd is refused (its pages would SIGBUS)', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      await serving(env);
      const fileSize = BigInt(fs.fstatSync(vmm.guest.memfd).size);
      const maps = ramMaps();
      // mostly past EOF; wholly past EOF; past EOF through a SET_MEM_TABLE
      for (const mmapOffset of [fileSize - 0x1000n, fileSize + 0x10000n]) {
        const r = { gpa: 0x100000n, size: 0x10000n, uva: HIGH_UVA, mmapOffset };
        expect(await vmm.acked(Req.ADD_MEM_REG, addMemReg(r), [vmm.guest.memfd])).not.toBe(0n);
        expect(ramMaps()).toBe(maps);
      }
      const table = [...vmm.guest.descs, { gpa: 0x100000n, size: 0x10000n, uva: HIGH_UVA, mmapOffset: fileSize - 0x1000n }];
      expect(await vmm.acked(Req.SET_MEM_TABLE, vmm.memTablePayload(table), table.map(() => vmm.guest.memfd))).not.toBe(0n);
      expect(ramMaps()).toBe(maps);
      // a request whose buffer would lie in the refused region: the queue breaks, no access
      const d = vmm.driver!;
      const out = d.alloc(256);
      d.post(d.chain([{ gpa: 0x102000, len: 64 }, { gpa: out, len: 256, write: true }]));
      sys.eventfdWrite(vmm.kick[1]!, 1);
      await vmm.barrier();
      await sleep(20);
      expect(env.conn.counters.brokenQueues).toBe(1);
      expect(sys.eventfdRead(vmm.err[1]!)).toBe(1n);
    });
  });
});

/**
 * A safety net for the cases that hung the event loop before their fix: a child that, after `ms`,
 * makes the eventfd non-blocking, resets it and adds 1 (unblocking a read or a write stuck on it).
 */
function rescuer(fd: number, ms: number): { stop: () => void } {
  const addon = path.resolve('native/build/Release/handlefs_sys.node');
  const script = `const a = require(${JSON.stringify(addon)}); setTimeout(() => {
    a.fcntlInt(3, 4, a.fcntlInt(3, 3, 0) | 0o4000); try { a.eventfdRead(3); } catch {} a.eventfdWrite(3, 1); }, ${ms});`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'ignore', 'inherit', fd] });
  return { stop: () => { if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL'); } };
}

describe('vhost-user connection: hostile queue set-up', () => {
  it('rings outside guest memory, a bad queue size, a queue index out of range', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      await vmm.handshake();
      // queues we do not have: refused (an fd that came along is closed); GET_VRING_BASE answers 0
      expect(await vmm.acked(Req.SET_VRING_NUM, u32(2, 8))).not.toBe(0n);
      expect(await vmm.acked(Req.SET_VRING_ADDR, vmm.addrPayload(200, 0xc000, 0xc100, 0xc200))).not.toBe(0n);
      expect(await vmm.acked(Req.SET_VRING_KICK, u64(0xffn), [vmm.own(ev())])).not.toBe(0n);
      expect(await vmm.acked(Req.SET_VRING_ENABLE, u32(0xffffffff, 1))).not.toBe(0n);
      vmm.send(Req.GET_VRING_BASE, u32(77, 0));
      const r = await vmm.reply();
      expect(r).toMatchObject({ request: Req.GET_VRING_BASE, flags: 1 | FLAG_REPLY });
      expect((r as { payload: Buffer }).payload).toEqual(u32(77, 0));
      // a running queue's size cannot change
      expect(await vmm.acked(Req.SET_VRING_NUM, u32(1, 64))).not.toBe(0n);
      await stillServes(env);
      expect(env.conn.counters.brokenQueues).toBe(0);
    });
    for (const [what, setup] of [
      ['desc ring in the hole', (vmm: FakeVmm) => vmm.send(Req.SET_VRING_ADDR, Buffer.concat([u32(1, 0), u64(vmm.guest.uva(0x9ff0), vmm.guest.uva(0xd000), vmm.guest.uva(0xd800), 0n)]))],
      ['used ring at an unknown VMM address', (vmm: FakeVmm) => vmm.send(Req.SET_VRING_ADDR, Buffer.concat([u32(1, 0), u64(vmm.guest.uva(0xc000), 0x1234n, vmm.guest.uva(0xd800), 0n)]))],
      ['avail ring at 2^64 - 2', (vmm: FakeVmm) => vmm.send(Req.SET_VRING_ADDR, Buffer.concat([u32(1, 0), u64(vmm.guest.uva(0xc000), vmm.guest.uva(0xd000), 0xffff_ffff_ffff_fffen, 0n)]))],
      ['misaligned used ring', (vmm: FakeVmm) => vmm.send(Req.SET_VRING_ADDR, Buffer.concat([u32(1, 0), u64(vmm.guest.uva(0xc000), vmm.guest.uva(0xd002), vmm.guest.uva(0xd800), 0n)]))],
      ['queue size 100', (vmm: FakeVmm) => vmm.send(Req.SET_VRING_NUM, u32(1, 100))],
      ['queue size 65536', (vmm: FakeVmm) => vmm.send(Req.SET_VRING_NUM, u32(1, 65536))],
      ['base past 16 bits', (vmm: FakeVmm) => vmm.send(Req.SET_VRING_BASE, u32(1, 0x10000))],
    ] as const) {
      await withConnection(async (env) => {
        const { vmm } = env;
        await vmm.handshake();
        // stop the request queue as QEMU does at reboot, then set it up again with the hostile value
        vmm.send(Req.SET_VRING_ENABLE, u32(1, 0));
        vmm.send(Req.GET_VRING_BASE, u32(1, 0));
        expect(await vmm.reply()).toMatchObject({ request: Req.GET_VRING_BASE });
        setup(vmm);
        vmm.send(Req.SET_VRING_ENABLE, u32(1, 1));
        await vmm.barrier();
        expect(env.conn.counters.brokenQueues, what).toBe(1);
        expect(sys.eventfdRead(vmm.err[1]!), what).toBe(1n);
        // the queue is not served; the connection is
        vmm.post(initReq(), 4096);
        expect((await vmm.used(1, 50)).used).toEqual([]);
        await vmm.barrier();
        expect(warnings(env.cap).filter((m) => m.includes('broke a queue'))).toHaveLength(1);
      });
    }
  });

  it('kick, call and err fds that are not non-blocking eventfds cannot stall or kill the back-end', async () => {
    // a blocking kick eventfd (a second read would sleep for ever), a semaphore one with a huge
    // count (a drain loop would spin), a blocking call eventfd at its maximum (a write would sleep)
    for (const [what, make, which] of [
      ['blocking kick eventfd', () => sys.eventfdCreate(EFD_CLOEXEC), 'kick'],
      ['semaphore kick eventfd', () => { const f = ev() | 0; sys.close(f); const s = sys.eventfdCreate(EFD_CLOEXEC | EFD_NONBLOCK | 1); sys.eventfdWrite(s, 50_000_000); return s; }, 'kick'],
      ['blocking call eventfd at its maximum', () => { const f = sys.eventfdCreate(EFD_CLOEXEC); sys.eventfdWrite(f, 0xffff_ffff_ffff_fffen); return f; }, 'call'],
    ] as const) {
      await withConnection(async (env) => {
        const { vmm } = env;
        await vmm.handshake();
        await ok(vmm, initReq());
        const fd = vmm.own(make());
        const net = rescuer(fd, 3000);
        try {
          const t0 = Date.now();
          vmm.vringFd(which === 'kick' ? Req.SET_VRING_KICK : Req.SET_VRING_CALL, 1, fd);
          await vmm.barrier();
          const { out } = vmm.post(req(Op.GETATTR, 1n, encodeStruct(GetattrIn, { getattr_flags: 0, dummy: 0, fh: 0n })), 4096);
          sys.eventfdWrite(fd, 1);
          const { used } = await vmm.used(1, 2000);
          expect(Date.now() - t0, `${what}: the event loop stalled`).toBeLessThan(1500);
          expect(used, what).toHaveLength(1);
          expect(outErr(vmm.guest.read(out, 16))).toBe(0);
          await vmm.barrier();
        } finally {
          net.stop();
        }
      });
    }
  });

  it('a kick fd that cannot be polled (a memfd) breaks the queue, with one warning', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      await vmm.handshake();
      const memfd = vmm.own(sys.memfdCreate('not-an-eventfd', 4096));
      vmm.vringFd(Req.SET_VRING_KICK, 1, memfd);
      await vmm.barrier();
      expect(env.conn.counters.brokenQueues).toBe(1);
      expect(warnings(env.cap)).toHaveLength(1);
    });
  });
});

/**
 * After the handshake and INIT: the FUSE requests the connection passes on from now are held in
 * the protocol server (in flight) until open().
 */
async function servingHeld(env: Env): Promise<{ open: () => void; restore: () => void }> {
  await serving(env);
  const { server } = env;
  const real = server.handle.bind(server);
  let open = (): void => {};
  const held = new Promise<void>((r) => (open = r));
  server.handle = async (b: Buffer) => { await held; return real(b); };
  return { open, restore: () => { server.handle = real; } };
}
const getattr = (): Buffer => req(Op.GETATTR, 1n, encodeStruct(GetattrIn, { getattr_flags: 0, dummy: 0, fh: 0n }));

describe('vhost-user connection: memory and queues changing under requests in flight', () => {
  it('REM_MEM_REG of the region holding the rings: the queue breaks, late replies go nowhere', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      const held = await servingHeld(env);
      const posted = [vmm.post(getattr(), 256), vmm.post(getattr(), 256)];
      await vmm.barrier();
      await sleep(5);
      expect(env.conn.counters.requests).toBe(3);
      const mapsBefore = ramMaps();
      const high = vmm.guest.descs[1]!;
      expect(await vmm.acked(Req.REM_MEM_REG, Buffer.concat([u64(0n), u64(high.gpa, high.size, high.uva, high.mmapOffset)]))).toBe(0n);
      expect(ramMaps()).toBe(mapsBefore - HIGH_MAP);
      expect(env.conn.counters.brokenQueues).toBe(1);
      held.open();
      await sleep(20);
      // nothing was written to the (still mapped, in this process) ring or reply buffers
      expect((await vmm.used(1, 20)).used).toEqual([]);
      for (const p of posted) {
        expect(vmm.guest.read(p.out, 256).every((b) => b === 0xa5)).toBe(true);
        expect(vmm.guardsAround(p.out, 256)).toBe(true);
      }
      // removing it again, or a region that never was: refused
      expect(await vmm.acked(Req.REM_MEM_REG, Buffer.concat([u64(0n), u64(high.gpa, high.size, high.uva, high.mmapOffset)]))).not.toBe(0n);
      expect(await vmm.acked(Req.REM_MEM_REG, Buffer.concat([u64(0n), u64(0x5000_0000n, 0x1000n, 0n, 0n)]))).not.toBe(0n);
      await vmm.barrier();
    });
  });

  it('SET_MEM_TABLE replacing the table under a running queue: the rings are rebuilt, requests go on', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      await vmm.handshake({ memSlots: false });
      await ok(vmm, initReq());
      const mapsBefore = ramMaps();
      expect(await vmm.acked(Req.SET_MEM_TABLE, vmm.memTablePayload(vmm.guest.descs), vmm.guest.descs.map(() => vmm.guest.memfd))).toBe(0n);
      expect(ramMaps()).toBe(mapsBefore);
      await ok(vmm, getattr());
      // a table without the rings' region: the queue breaks
      expect(await vmm.acked(Req.SET_MEM_TABLE, vmm.memTablePayload(vmm.guest.descs.slice(0, 1)), [vmm.guest.memfd])).toBe(0n);
      expect(env.conn.counters.brokenQueues).toBe(1);
      expect(ramMaps()).toBe(mapsBefore - HIGH_MAP);
    });
  });

  it('GET_VRING_BASE with requests in flight: the base counts them, their replies are dropped, the queue restarts there', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      const held = await servingHeld(env);
      const p1 = vmm.post(getattr(), 256);
      vmm.post(getattr(), 256);
      await vmm.barrier();
      await sleep(5);
      vmm.send(Req.SET_VRING_ENABLE, u32(1, 0));
      vmm.send(Req.GET_VRING_BASE, u32(1, 0));
      expect(await vmm.reply()).toMatchObject({ payload: u32(1, 3) });
      held.open();
      await sleep(20);
      expect((await vmm.used(1, 20)).used).toEqual([]);
      expect(vmm.guest.read(p1.out, 16).every((b) => b === 0xa5)).toBe(true);
      // a request posted while stopped waits; the queue restarts from the base the VMM gives back
      held.restore();
      const p3 = vmm.post(getattr(), 256);
      expect((await vmm.used(1, 30)).used).toEqual([]);
      vmm.send(Req.SET_VRING_BASE, u32(1, 3));
      vmm.send(Req.SET_VRING_ENABLE, u32(1, 1));
      const { used } = await vmm.used(1);
      expect(used.map(([id]) => id)).toEqual([p3.head]);
      expect(outErr(vmm.guest.read(p3.out, 16))).toBe(0);
      // the device's used idx went on from the ring's: the guest sees one entry, not three
      expect(env.conn.counters.brokenQueues).toBe(0);
    });
  });

  it('RESET_OWNER with requests in flight: queues stop, replies dropped, the connection lives', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      const held = await servingHeld(env);
      const p = vmm.post(getattr(), 256);
      await vmm.barrier();
      await sleep(5);
      vmm.send(Req.RESET_OWNER);
      await vmm.barrier();
      held.open();
      await sleep(20);
      expect((await vmm.used(1, 20)).used).toEqual([]);
      expect(vmm.guardsAround(p.out, 256)).toBe(true);
    });
  });
});

// ------------------------------------------------------------------ 3. ring hostility

describe('vhost-user connection: hostile rings', () => {
  /** After INIT, `hostile` posts a bad chain (and kicks): the queue breaks, nothing is served or written. */
  const breaks = (what: string, hostile: (vmm: FakeVmm) => void, hs: HandshakeOpts = {}) =>
    it(`${what}: the queue breaks, the share is untouched`, async () => {
      await withConnection(async (env) => {
        const { vmm } = env;
        await serving(env, { num: 8, ...hs });
        const served = env.conn.counters.replies;
        hostile(vmm);
        sys.eventfdWrite(vmm.kick[1]!, 1);
        await vmm.barrier();
        await sleep(10);
        expect(env.conn.counters.brokenQueues).toBe(1);
        expect(env.conn.counters.replies).toBe(served);
        expect(sys.eventfdRead(vmm.err[1]!)).toBe(1n);
        expect((await vmm.used(1, 10)).used).toEqual([]);
        expect(fs.readdirSync(env.share)).toEqual([]);
        expect(vmm.guest.guardsIntact()).toBe(true);
        expect(warnings(env.cap).filter((m) => m.includes('broke a queue'))).toHaveLength(1);
      });
    });

  const create = (name: string) => req(Op.CREATE, 1n, encodeStruct(CreateIn, { flags: O_RDWR | O_CREAT, mode: 0o100644, umask: 0o022, open_flags: 0 }), cstr(name));
  /** A CREATE chain at descriptors `idx`, then `edit` spoils it. */
  const spoiled = (edit: (vmm: FakeVmm, idx: number[], reqAt: number, outAt: number) => void) => (vmm: FakeVmm): void => {
    const d = vmm.driver!;
    const r = create('victim');
    const reqAt = d.alloc(r.length);
    vmm.guest.write(reqAt, r);
    const outAt = d.alloc(256);
    const idx = d.takeDescs(2);
    d.post(d.chain([{ gpa: reqAt, len: r.length }, { gpa: outAt, len: 256, write: true }], idx));
    edit(vmm, idx, reqAt, outAt);
  };

  breaks('a descriptor loop', spoiled((vmm, [a, b], _reqAt, outAt) => vmm.driver!.setDesc(b!, outAt, 256, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, a!)));
  breaks('a descriptor pointing to itself', spoiled((vmm, [a], reqAt) => vmm.driver!.setDesc(a!, reqAt, 16, VRING_DESC_F_NEXT, a!)));
  breaks('an out-of-range head', (vmm) => vmm.driver!.post(200));
  breaks('an out-of-range next', spoiled((vmm, [a], reqAt) => vmm.driver!.setDesc(a!, reqAt, 16, VRING_DESC_F_NEXT, 8)));
  breaks('a readable descriptor after a writable one', spoiled((vmm, [a, b], reqAt, outAt) => {
    vmm.driver!.setDesc(a!, outAt, 256, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, b!);
    vmm.driver!.setDesc(b!, reqAt, 64, 0, 0);
  }));
  breaks('a buffer in the hole between regions', spoiled((vmm, [a, b]) => vmm.driver!.setDesc(a!, 0xa000, 64, VRING_DESC_F_NEXT, b!)));
  breaks('a buffer straddling the end of RAM', spoiled((vmm, [a, b]) => vmm.driver!.setDesc(a!, 0x40000 - 8, 64, VRING_DESC_F_NEXT, b!)));
  breaks('a buffer at 2^64 - 8', spoiled((vmm, [a, b]) => vmm.driver!.setDesc(a!, 0xffff_ffff_ffff_fff8n, 64, VRING_DESC_F_NEXT, b!)));
  breaks('a reply buffer of 4 GiB - 1', spoiled((vmm, [, b], _r, outAt) => vmm.driver!.setDesc(b!, outAt, 0xffffffff, VRING_DESC_F_WRITE, 0)));
  breaks('the avail index jumping past the queue size', (vmm) => vmm.driver!.setAvailIdx(vmm.driver!.availIdx + 100));
  breaks('an indirect descriptor without INDIRECT_DESC negotiated', (vmm) => {
    const d = vmm.driver!;
    const at = d.alloc(64);
    d.post(d.indirectChain([{ gpa: at, len: 64 }]));
  }, { indirect: false });
  breaks('an indirect table outside memory', (vmm) => {
    const d = vmm.driver!;
    const [h] = d.takeDescs(1);
    d.setDesc(h!, 0xa000, 32, 4, 0);
    d.post(h!);
  });
  breaks('a nested indirect table', (vmm) => {
    const d = vmm.driver!;
    const inner = d.alloc(32);
    const head = d.indirectChain([{ gpa: inner, len: 32 }]);
    const [table] = d.tables.at(-1)!;
    d.setDesc(0, inner, 32, 4, 0, table);
    d.post(head);
  });

  it('a reply larger than its space is truncated to it, guard bytes intact', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      await serving(env);
      for (const room of [0, 1, 15, 16, 17, 100]) {
        const got = await vmm.request(getattr(), room);
        expect(got, `room ${room}`).not.toBeNull();
        expect(got!.len).toBe(room);
        expect(got!.guards).toBe(true);
        if (room >= 16) expect(outLen(got!.reply)).toBe(16 + 104); // the full reply's length, cut
      }
      expect(warnings(env.cap).filter((m) => m.includes('did not fit'))).toHaveLength(1);
      expect(env.conn.counters.brokenQueues).toBe(0);
    });
  });

  it('truncated and lying FUSE headers are answered with an error or dropped, never touching the share', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      await serving(env);
      const c = create('never');
      const cases: [string, Buffer][] = [
        ['empty', Buffer.alloc(0)],
        ['10 header bytes', c.subarray(0, 10)],
        ['20 header bytes', c.subarray(0, 20)],
        ['header only', c.subarray(0, 40)],
        ['cut in the argument', c.subarray(0, 50)],
        ['len says more', Buffer.from(c).fill(0xff, 0, 2)],
        ['len says less', (() => { const b = Buffer.from(c); b.writeUInt32LE(41, 0); return b; })()],
        ['name without its NUL', c.subarray(0, c.length - 1)],
        ['unknown opcode', (() => { const b = Buffer.from(c); b.writeUInt32LE(9999, 4); return b; })()],
      ];
      for (const [what, body] of cases) {
        const got = await vmm.request(body.length === 0 ? Buffer.alloc(0) : body, 256);
        expect(got, what).not.toBeNull();
        expect(got!.guards, what).toBe(true);
        if (got!.len > 0) {
          expect(got!.len, what).toBe(16);
          expect(outErr(got!.reply), what).toBeLessThan(0);
        }
      }
      // a chain with no readable part at all
      const d = vmm.driver!;
      const outAt = d.alloc(64);
      const head = d.chain([{ gpa: outAt, len: 64, write: true }]);
      d.post(head);
      sys.eventfdWrite(vmm.kick[1]!, 1);
      expect((await vmm.used(1)).used).toEqual([[head, 0]]);
      expect(fs.readdirSync(env.share)).toEqual([]);
      expect(env.conn.counters.brokenQueues).toBe(0);
      await stillServes(env);
    });
  });

  it('a request longer than the largest accepted breaks the queue', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      await serving(env);
      const big = Buffer.alloc(requestBufferSize(MAX_WRITE) + 1);
      vmm.post(big, 16);
      await vmm.barrier();
      await sleep(5);
      expect(env.conn.counters.brokenQueues).toBe(1);
      expect(env.conn.counters.replies).toBe(1);
    });
  });
});

// ------------------------------------------------------------------ 4. bounded fuzz

const pick = <T>(rnd: () => number, xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
const int = (rnd: () => number, n: number): number => Math.floor(rnd() * n);
/** Drains the replies already sent (the fuzz does not wait for them). */
async function drain(vmm: FakeVmm): Promise<void> {
  for (let r = await vmm.reply(0); r !== null && r !== 'closed'; r = await vmm.reply(0));
}

describe('vhost-user connection: bounded fuzz', () => {
  it('seeded mutations of a QEMU session and its rings: no exception, no leak, the canary untouched', async () => {
    const RUNS = 240;
    const ends = new Map<string, number>();
    let served = 0;
    for (let run = 0; run < RUNS; run++) {
      const seed = (0xc0ffee + run * 7919) >>> 0;
      const rnd = mulberry32(seed);
      try {
        const end = await withConnection(async (env) => {
          const { vmm } = env;
          const frames = vmm.qemuFrames({
            memSlots: rnd() < 0.7, eventIdx: rnd() < 0.5, indirect: rnd() < 0.5, num: pick(rnd, [8, 16, 128]),
          }).map((f) => ({ ...f, fds: [...f.fds] }));
          const spare = (): number => pick(rnd, [vmm.own(ev()), vmm.guest.memfd, vmm.kick[1]!, vmm.own(sys.memfdCreate('fuzz', 4096))]);
          const mutations = rnd() < 0.25 ? 0 : 1 + int(rnd, 4);
          for (let m = 0; m < mutations; m++) {
            const i = int(rnd, frames.length);
            const f = frames[i]!;
            switch (int(rnd, 9)) {
              case 0: if (f.payload.length > 0) f.payload[int(rnd, f.payload.length)] ^= 1 << int(rnd, 8); break;
              case 1: if (f.payload.length >= 8) f.payload.writeBigUInt64LE(pick(rnd, [0n, 1n, 0xffff_ffff_ffff_ffffn, 1n << 63n, BigInt(int(rnd, 2 ** 32))]), 8 * int(rnd, f.payload.length / 8)); break;
              case 2: f.payload = f.payload.subarray(0, int(rnd, f.payload.length + 1)); break;
              case 3: f.payload = Buffer.concat([f.payload, Buffer.alloc(1 + int(rnd, 40), int(rnd, 256))]); break;
              case 4: frames.splice(i, 1); break;
              case 5: frames.splice(i, 0, { ...f, fds: [...f.fds] }); break;
              case 6: f.fds = rnd() < 0.5 ? [] : [...f.fds, spare()]; break;
              case 7: if (f.fds.length > 0) f.fds[int(rnd, f.fds.length)] = spare(); break;
              default: f.request = rnd() < 0.5 ? int(rnd, 45) : f.request; f.flags = int(rnd, 16); break;
            }
          }
          // some frames go out together in one sendmsg, some cut in two
          for (let i = 0; i < frames.length; i++) {
            const f = frames[i]!;
            const bytes = Buffer.concat([u32(f.request, f.flags | (rnd() < 0.02 ? 2 : 1), f.payload.length), f.payload]);
            if (rnd() < 0.05 && bytes.length > 4) {
              const cut = 1 + int(rnd, bytes.length - 1);
              if (!vmm.sendRaw(bytes.subarray(0, cut), f.fds) || !vmm.sendRaw(bytes.subarray(cut))) break;
            } else if (!vmm.sendRaw(bytes, f.fds)) break;
            if (rnd() < 0.3) await drain(vmm);
          }
          await drain(vmm);
          const alive = (await within(env.conn.done, 0)) === 'timeout';
          const d = vmm.driver!;
          if (alive && d.num >= 8) {
            // a FUSE session, with the rings spoiled now and then; and a control message in between
            const reqs = [initReq(), req(Op.CREATE, 1n, encodeStruct(CreateIn, { flags: O_RDWR | O_CREAT, mode: 0o100644, umask: 0o022, open_flags: 0 }), cstr(`f${run}`)), getattr(), req(Op.LOOKUP, 1n, cstr('..')), req(Op.LOOKUP, 1n, cstr(`f${run}`))];
            for (const r of reqs) {
              const body = rnd() < 0.2 ? (() => { const b = Buffer.from(r); b[int(rnd, b.length)] ^= 0xff; return b; })() : r;
              const { head } = vmm.post(body, pick(rnd, [0, 16, 200, 4096]), { indirect: d.opts.indirect && rnd() < 0.5 });
              if (rnd() < 0.15) d.setDesc(head, BigInt(int(rnd, 0x50000)), int(rnd, 0x2000), int(rnd, 8), int(rnd, d.num + 2));
              if (rnd() < 0.05) d.setAvailIdx(d.availIdx + int(rnd, 400));
              if (rnd() < 0.08) {
                const hi = vmm.guest.descs[1]!;
                pick(rnd, [
                  () => vmm.send(Req.REM_MEM_REG, Buffer.concat([u64(0n), u64(hi.gpa, hi.size, hi.uva, hi.mmapOffset)])),
                  () => vmm.send(Req.GET_VRING_BASE, u32(1, 0)),
                  () => vmm.send(Req.RESET_OWNER),
                  () => vmm.send(Req.SET_VRING_ENABLE, u32(1, 0)),
                  () => vmm.send(Req.SET_MEM_TABLE, vmm.memTablePayload(vmm.guest.descs.slice(0, 1)), { fds: [vmm.guest.memfd] }),
                ])();
              }
              served += (await vmm.used(1, 15)).used.length;
            }
          }
          await drain(vmm);
          expect(vmm.guest.guardsIntact()).toBe(true);
          // an exception caught by the connection's guard is logged at error level: none
          expect(env.cap.lines.filter((l) => (l.level as number) >= 50)).toEqual([]);
        });
        const k = end.reason === 'closed' ? 'closed' : end.message.replace(/[0-9]+/g, 'N');
        ends.set(k, (ends.get(k) ?? 0) + 1);
      } catch (e) {
        throw new Error(`fuzz run ${run} (seed ${seed}) failed: ${(e as Error).stack ?? String(e)}`);
      }
    }
    // the fuzz reached both the served queue and the fatal paths
    expect(served).toBeGreaterThan(RUNS / 2);
    expect(ends.get('closed')).toBeGreaterThan(RUNS / 4);
    expect(ends.size).toBeGreaterThan(2);
  }, 60_000);
});

// ------------------------------------------------------------------ 5. disconnect

describe('vhost-user connection: disconnect', () => {
  it('the VMM hangs up with requests in flight: done resolves, every mapping and fd of the back-end released', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      const mine = fdListing();
      const ownMaps = ramMaps();
      const later = await servingHeld(env);
      for (let i = 0; i < 3; i++) vmm.post(getattr(), 256);
      await vmm.barrier();
      await sleep(5);
      expect(ramMaps()).toBe(2 * ownMaps); // the back-end maps what the test maps
      vmm.hangUp();
      expect(await within(env.conn.done, 2000)).toEqual({ reason: 'closed' });
      expect(ramMaps()).toBe(ownMaps);
      // what is left is the test's own: its eventfds and memfd (the back-end's dups are closed)
      const left = fdListing();
      expect([...mine.keys()].filter((n) => !left.has(n)).sort()).toEqual([String(vmm.backFd), String(vmm.sock)].sort());
      expect([...left.keys()].filter((n) => !mine.has(n))).toEqual([]);
      later.open();
      await sleep(20);
      expect(vmm.guest.guardsIntact()).toBe(true);
      expect(env.cap.lines.filter((l) => (l.level as number) >= 50)).toEqual([]);
    });
  });

  it('the VMM hangs up after every prefix of the handshake', async () => {
    const count = new FakeVmm();
    const n = count.qemuFrames().length;
    count.release();
    sys.close(count.backFd);
    for (let k = 0; k <= n; k++) {
      const end = await withConnection(async (env) => {
        const frames = env.vmm.qemuFrames().slice(0, k);
        for (const f of frames) env.vmm.sendFrame(f);
        await drain(env.vmm);
        env.vmm.hangUp();
        const e = await within(env.conn.done, 2000);
        expect(e, `after ${k} frames: ${JSON.stringify(e)}`).toEqual({ reason: 'closed' });
      });
      expect(end, `after ${k} frames: ${JSON.stringify(end)}`).toEqual({ reason: 'closed' });
    }
  });

  it('close() from our side with requests in flight: the VMM sees the socket close, done resolves', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      const held = await servingHeld(env);
      vmm.post(getattr(), 256);
      await vmm.barrier();
      env.conn.close();
      expect(await within(env.conn.done, 1000)).toEqual({ reason: 'closed' });
      expect(await vmm.reply()).toBe('closed');
      held.open();
      await sleep(10);
      expect((await vmm.used(1, 10)).used).toEqual([]);
    });
  });
});

describe('vhost-user connection: replies due when the connection ends', () => {
  it('the VMM hangs up with a value request unanswered: a disconnect, not an internal error', async () => {
    for (const request of [Req.GET_FEATURES, Req.GET_VRING_BASE]) {
      const end = await withConnection(async (env) => {
        await env.vmm.handshake();
        env.vmm.send(request, request === Req.GET_VRING_BASE ? u32(1, 0) : Buffer.alloc(0));
        env.vmm.hangUp();
        await within(env.conn.done, 2000);
        expect(env.cap.lines.filter((l) => (l.level as number) >= 50)).toEqual([]);
      });
      expect(end).toEqual({ reason: 'closed' });
    }
  });

  it('a message that ends the connection and asked for an ack gets nothing written after the end', async () => {
    const end = await withConnection(async (env) => {
      await env.vmm.handshake();
      env.vmm.send(Req.GET_INFLIGHT_FD, Buffer.alloc(24), { flags: FLAG_NEED_REPLY });
      expect(await env.vmm.reply()).toBe('closed');
      expect(env.cap.lines.filter((l) => (l.level as number) >= 50)).toEqual([]);
    }, { endsItself: true });
    expect(end).toEqual({ reason: 'error', message: 'request 31 is not supported' });
  });
});

// ------------------------------------------------------------------ 5. a predecessor's queue

describe('vhost-user connection: the queues a crashed predecessor ran', () => {
  it('resume where it took its last chain (not at the stale base the VMM replays): its unanswered chain gets EIO, the next request is served', async () => {
    await withConnection(async (env) => {
      const { vmm } = env;
      // the in-flight table the predecessor left: it took chains A and B off the request queue and
      // answered A; the VMM (a supervisor replaying the device) sets the queue's base to 0 again
      const memfd = sys.memfdCreate('inflight', INFLIGHT_BYTES);
      const mapped = sys.mapShared(memfd, INFLIGHT_BYTES, 0);
      const table = new InflightTable(new Uint8Array(mapped));
      vmm.send(Private.INFLIGHT, u64(1n), { fds: [memfd] });
      sys.close(memfd);
      const frames = vmm.qemuFrames();
      const firstEnable = frames.findIndex((f) => f.request === Req.SET_VRING_ENABLE);
      for (const fr of frames.slice(0, firstEnable)) {
        vmm.sendFrame(fr);
        if (fr.reply !== null) expect(await vmm.reply()).not.toBeNull();
      }
      // the guest posted A and B before the crash; A's answer reached the used ring
      const d = vmm.driver!;
      const chain = (r: Buffer): { head: number; out: number } => {
        const at = d.alloc(r.length);
        vmm.guest.write(at, r);
        const out = d.alloc(256);
        return { head: d.chain([{ gpa: at, len: r.length }, { gpa: out, len: 256, write: true }]), out };
      };
      const a = chain(getattr());
      const bReq = getattr();
      const b = chain(bReq);
      d.post(a.head, b.head);
      vmm.guest.w32(d.used + 4, a.head);
      vmm.guest.w32(d.used + 8, 16);
      vmm.guest.w16(d.used + 2, 1);
      d.usedSeen = 1;
      table.reset(1, 0);
      table.taken(1, a.head, 1);
      table.taken(1, b.head, 2);
      table.answering(1, a.head, 0);
      table.answered(1, a.head);
      sys.unmapShared(mapped);
      for (const fr of frames.slice(firstEnable)) vmm.sendFrame(fr);
      await vmm.barrier();
      // B, taken and never answered: EIO
      const { used } = await vmm.used(1);
      expect(used.map(([id]) => id)).toEqual([b.head]);
      const reply = vmm.guest.read(b.out, used[0]![1]);
      expect(outErr(reply)).toBe(-E.EIO);
      expect(reply.readBigUInt64LE(OutHeader.unique)).toBe(bReq.readBigUInt64LE(InHeader.unique));
      expect(env.conn.counters.recoveredRequests).toBe(1);
      // and the queue serves on, from where the predecessor stopped
      await ok(vmm, initReq());
      await ok(vmm, getattr());
      expect(env.conn.counters).toMatchObject({ brokenQueues: 0, badMessages: 0 });
    }, { supervised: true });
  });
});
