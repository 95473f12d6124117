/**
 * The vhost-user message codec: every request decoded from the bytes QEMU sends, exact payload
 * size and fd count checks (rejections hand back every fd), stream framing across and within
 * chunks with fd attribution, fatal framing errors, and the reply encoders.
 */
import { describe, expect, it } from 'vitest';
import {
  decodeMessage, encodeAck, encodeReply, encodeStateReply, encodeU64Reply, Feature, featureMask, FLAG_NEED_REPLY,
  HEADER_SIZE, MAX_PAYLOAD_SIZE, MessageReader, messageFds, ProtocolFeature, Req, VRING_NOFD_MASK,
  type RawMessage, type VhostMessage,
} from '../../src/frontends/vhost-user/messages.js';

const u32 = (...v: number[]) => Buffer.concat(v.map((x) => { const b = Buffer.alloc(4); b.writeUInt32LE(x >>> 0); return b; }));
const u64 = (...v: bigint[]) => Buffer.concat(v.map((x) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(x); return b; }));
const u16 = (...v: number[]) => Buffer.concat(v.map((x) => { const b = Buffer.alloc(2); b.writeUInt16LE(x); return b; }));
/** A message as QEMU writes it: header (version 1, plus `flags`) and payload. */
const wire = (request: number, payload: Buffer = Buffer.alloc(0), flags = 0) =>
  Buffer.concat([u32(request, 0x1 | flags, payload.length), payload]);
const raw = (request: number, payload: Buffer = Buffer.alloc(0), fds: number[] = [], flags = 0): RawMessage =>
  ({ request, flags: 1 | flags, payload, fds });

function decoded(m: RawMessage): VhostMessage {
  const d = decodeMessage(m);
  if ('error' in d) throw new Error(d.error);
  return d;
}
const regionBytes = (gpa: bigint, size: bigint, uva: bigint, off: bigint) => u64(gpa, size, uva, off);

describe('decodeMessage: what QEMU sends', () => {
  it('decodes the payload-less requests', () => {
    for (const r of [Req.GET_FEATURES, Req.SET_OWNER, Req.RESET_OWNER, Req.GET_PROTOCOL_FEATURES, Req.GET_QUEUE_NUM, Req.GET_MAX_MEM_SLOTS, Req.GET_STATUS]) {
      expect(decoded(raw(r))).toEqual({ request: r, needReply: false });
    }
    expect(decoded(raw(Req.SET_OWNER, undefined, [], FLAG_NEED_REPLY))).toEqual({ request: Req.SET_OWNER, needReply: true });
  });
  it('decodes u64 requests', () => {
    const feats = featureMask(Feature.VIRTIO_F_VERSION_1, Feature.VHOST_USER_F_PROTOCOL_FEATURES, Feature.VIRTIO_RING_F_EVENT_IDX, Feature.VIRTIO_RING_F_INDIRECT_DESC);
    expect(feats).toBe(0x1_7000_0000n);
    expect(decoded(raw(Req.SET_FEATURES, u64(feats)))).toEqual({ request: Req.SET_FEATURES, needReply: false, value: feats });
    expect(decoded(raw(Req.SET_PROTOCOL_FEATURES, u64(featureMask(ProtocolFeature.REPLY_ACK, ProtocolFeature.CONFIGURE_MEM_SLOTS)))))
      .toMatchObject({ value: 0x8008n });
    expect(decoded(raw(Req.SET_STATUS, u64(0xfn), [], FLAG_NEED_REPLY))).toEqual({ request: Req.SET_STATUS, needReply: true, value: 15n });
  });
  it('decodes vring state requests', () => {
    expect(decoded(raw(Req.SET_VRING_NUM, u32(1, 128)))).toEqual({ request: Req.SET_VRING_NUM, needReply: false, index: 1, num: 128 });
    expect(decoded(raw(Req.SET_VRING_BASE, u32(0, 0)))).toMatchObject({ index: 0, num: 0 });
    expect(decoded(raw(Req.GET_VRING_BASE, u32(1, 0)))).toMatchObject({ request: Req.GET_VRING_BASE, index: 1 });
    expect(decoded(raw(Req.SET_VRING_ENABLE, u32(1, 1)))).toMatchObject({ request: Req.SET_VRING_ENABLE, index: 1, num: 1 });
  });
  it('decodes SET_VRING_ADDR (desc, used, avail, log order)', () => {
    const p = Buffer.concat([u32(1, 0), u64(0x7f00_0000_1000n, 0x7f00_0000_3000n, 0x7f00_0000_2000n, 0n)]);
    expect(decoded(raw(Req.SET_VRING_ADDR, p))).toEqual({
      request: Req.SET_VRING_ADDR, needReply: false, index: 1, flags: 0,
      desc: 0x7f00_0000_1000n, used: 0x7f00_0000_3000n, avail: 0x7f00_0000_2000n, log: 0n,
    });
  });
  it('decodes SET_VRING_KICK / CALL / ERR with and without an fd', () => {
    expect(decoded(raw(Req.SET_VRING_KICK, u64(1n), [7]))).toEqual({ request: Req.SET_VRING_KICK, needReply: false, index: 1, fd: 7 });
    expect(decoded(raw(Req.SET_VRING_CALL, u64(0n), [8]))).toMatchObject({ index: 0, fd: 8 });
    expect(decoded(raw(Req.SET_VRING_ERR, u64(BigInt(VRING_NOFD_MASK | 0xff))))).toMatchObject({ request: Req.SET_VRING_ERR, index: 0xff, fd: null });
  });
  it('decodes SET_MEM_TABLE with one fd per region', () => {
    const p = Buffer.concat([u32(2, 0), regionBytes(0n, 0xa0000n, 0x7f00_0000_0000n, 0n), regionBytes(0xc0000n, 0x3ff40000n, 0x7f00_000c_0000n, 0xc0000n)]);
    const m = decoded(raw(Req.SET_MEM_TABLE, p, [10, 11]));
    expect(m).toEqual({
      request: Req.SET_MEM_TABLE, needReply: false, fds: [10, 11], regions: [
        { gpa: 0n, size: 0xa0000n, uva: 0x7f00_0000_0000n, mmapOffset: 0n },
        { gpa: 0xc0000n, size: 0x3ff40000n, uva: 0x7f00_000c_0000n, mmapOffset: 0xc0000n },
      ],
    });
    expect(messageFds(m)).toEqual([10, 11]);
    expect(decoded(raw(Req.SET_MEM_TABLE, u32(0, 0)))).toMatchObject({ regions: [], fds: [] });
  });
  it('decodes ADD_MEM_REG and REM_MEM_REG (padding, then one region)', () => {
    const p = Buffer.concat([u64(0n), regionBytes(0xc0000n, 0x3ff40000n, 0x7f00_000c_0000n, 0xc0000n)]);
    const add = decoded(raw(Req.ADD_MEM_REG, p, [12], FLAG_NEED_REPLY));
    expect(add).toEqual({ request: Req.ADD_MEM_REG, needReply: true, fd: 12, region: { gpa: 0xc0000n, size: 0x3ff40000n, uva: 0x7f00_000c_0000n, mmapOffset: 0xc0000n } });
    expect(messageFds(add)).toEqual([12]);
    expect(decoded(raw(Req.REM_MEM_REG, p))).toMatchObject({ request: Req.REM_MEM_REG, fds: [] });
    expect(messageFds(decoded(raw(Req.REM_MEM_REG, p, [13])))).toEqual([13]);
  });
  it('decodes the fd-only and log requests', () => {
    expect(decoded(raw(Req.SET_BACKEND_REQ_FD, undefined, [5]))).toEqual({ request: Req.SET_BACKEND_REQ_FD, needReply: false, fd: 5 });
    expect(decoded(raw(Req.SET_LOG_FD, undefined, [6]))).toMatchObject({ fd: 6 });
    expect(decoded(raw(Req.SET_LOG_BASE, u64(4096n, 0n), [9]))).toMatchObject({ mmapSize: 4096n, mmapOffset: 0n, fd: 9 });
  });
  it('decodes config and inflight requests', () => {
    expect(decoded(raw(Req.GET_CONFIG, Buffer.concat([u32(0, 4, 0), Buffer.alloc(4)])))).toEqual({
      request: Req.GET_CONFIG, needReply: false, offset: 0, size: 4, flags: 0, data: Buffer.alloc(4),
    });
    expect(decoded(raw(Req.SET_CONFIG, Buffer.concat([u32(8, 2, 1), Buffer.from('hi')])))).toMatchObject({ offset: 8, size: 2, flags: 1, data: Buffer.from('hi') });
    const inflight = Buffer.concat([u64(0n, 0n), u16(2, 128), Buffer.alloc(4)]);
    expect(decoded(raw(Req.GET_INFLIGHT_FD, inflight))).toMatchObject({ numQueues: 2, queueSize: 128, fd: null });
    expect(decoded(raw(Req.SET_INFLIGHT_FD, inflight, [3]))).toMatchObject({ fd: 3 });
  });
});

describe('decodeMessage: rejections hand back every fd', () => {
  const rejects = (m: RawMessage, error: string) => expect(decodeMessage(m)).toEqual({ error, request: m.request, fds: m.fds });
  it('unknown requests', () => {
    rejects(raw(0), 'request 0: unknown request');
    rejects(raw(19, Buffer.alloc(8), [4]), 'request 19: unknown request');
    rejects(raw(0xffffffff), 'request 4294967295: unknown request');
  });
  const fixed: [string, number, number][] = [
    ['GET_FEATURES', Req.GET_FEATURES, 0], ['SET_OWNER', Req.SET_OWNER, 0], ['GET_QUEUE_NUM', Req.GET_QUEUE_NUM, 0],
    ['SET_FEATURES', Req.SET_FEATURES, 8], ['SET_PROTOCOL_FEATURES', Req.SET_PROTOCOL_FEATURES, 8], ['SET_STATUS', Req.SET_STATUS, 8],
    ['SET_VRING_NUM', Req.SET_VRING_NUM, 8], ['GET_VRING_BASE', Req.GET_VRING_BASE, 8], ['SET_VRING_ENABLE', Req.SET_VRING_ENABLE, 8],
    ['SET_VRING_ADDR', Req.SET_VRING_ADDR, 40], ['ADD_MEM_REG', Req.ADD_MEM_REG, 40], ['REM_MEM_REG', Req.REM_MEM_REG, 40],
    ['SET_VRING_KICK', Req.SET_VRING_KICK, 8], ['GET_INFLIGHT_FD', Req.GET_INFLIGHT_FD, 24],
  ];
  for (const [name, r, size] of fixed) {
    it(`${name} with a payload of ${size - 1} or ${size + 1} bytes instead of ${size}`, () => {
      if (size > 0) rejects(raw(r, Buffer.alloc(size - 1)), `${name}: payload of ${size - 1} bytes, expected ${size}`);
      rejects(raw(r, Buffer.alloc(size + 1)), `${name}: payload of ${size + 1} bytes, expected ${size}`);
    });
  }
  it('a memory table shorter than its header, with too many regions, or a size not matching nregions', () => {
    rejects(raw(Req.SET_MEM_TABLE, Buffer.alloc(4)), 'SET_MEM_TABLE: payload of 4 bytes, expected 8');
    rejects(raw(Req.SET_MEM_TABLE, Buffer.concat([u32(9, 0), Buffer.alloc(9 * 32)]), [1, 2, 3, 4, 5, 6, 7, 8, 9]),
      'SET_MEM_TABLE: memory table with 9 regions (at most 8)');
    rejects(raw(Req.SET_MEM_TABLE, Buffer.concat([u32(0xffffffff, 0)])), 'SET_MEM_TABLE: memory table with 4294967295 regions (at most 8)');
    rejects(raw(Req.SET_MEM_TABLE, Buffer.concat([u32(2, 0), Buffer.alloc(32)]), [1, 2]), 'SET_MEM_TABLE: payload of 40 bytes, expected 72');
  });
  it('a memory table whose fd count differs from nregions', () => {
    const p = Buffer.concat([u32(2, 0), Buffer.alloc(64)]);
    rejects(raw(Req.SET_MEM_TABLE, p, [1]), 'SET_MEM_TABLE: 1 file descriptors, expected 2');
    rejects(raw(Req.SET_MEM_TABLE, p, [1, 2, 3]), 'SET_MEM_TABLE: 3 file descriptors, expected 2');
  });
  it('missing fds', () => {
    rejects(raw(Req.ADD_MEM_REG, Buffer.alloc(40)), 'ADD_MEM_REG: 0 file descriptors, expected 1');
    rejects(raw(Req.SET_VRING_KICK, u64(0n)), 'SET_VRING_KICK: 0 file descriptors, expected 1');
    rejects(raw(Req.SET_BACKEND_REQ_FD), 'SET_BACKEND_REQ_FD: 0 file descriptors, expected 1');
    rejects(raw(Req.SET_LOG_BASE, Buffer.alloc(16)), 'SET_LOG_BASE: 0 file descriptors, expected 1');
    rejects(raw(Req.SET_INFLIGHT_FD, Buffer.alloc(24)), 'SET_INFLIGHT_FD: 0 file descriptors, expected 1');
  });
  it('extra fds', () => {
    rejects(raw(Req.GET_FEATURES, undefined, [3]), 'GET_FEATURES: 1 file descriptors, expected 0');
    rejects(raw(Req.SET_VRING_ADDR, Buffer.alloc(40), [3, 4]), 'SET_VRING_ADDR: 2 file descriptors, expected 0');
    rejects(raw(Req.ADD_MEM_REG, Buffer.alloc(40), [3, 4]), 'ADD_MEM_REG: 2 file descriptors, expected 1');
    rejects(raw(Req.REM_MEM_REG, Buffer.alloc(40), [3, 4]), 'REM_MEM_REG: 2 file descriptors, expected 0 to 1');
    rejects(raw(Req.SET_VRING_CALL, u64(BigInt(VRING_NOFD_MASK)), [3]), 'SET_VRING_CALL: 1 file descriptors, expected 0');
  });
  it('reserved bits in a vring fd index, bad fd numbers, oversized config', () => {
    rejects(raw(Req.SET_VRING_KICK, u64(0x200n), [3]), 'SET_VRING_KICK: reserved bits set in the vring index');
    rejects(raw(Req.SET_VRING_KICK, u64(1n << 63n), [3]), 'SET_VRING_KICK: reserved bits set in the vring index');
    rejects(raw(Req.SET_BACKEND_REQ_FD, undefined, [-1]), 'SET_BACKEND_REQ_FD: invalid file descriptor number');
    rejects(raw(Req.SET_CONFIG, Buffer.concat([u32(0, 257, 0), Buffer.alloc(257)])), 'SET_CONFIG: config size 257 exceeds 256');
    rejects(raw(Req.SET_CONFIG, Buffer.concat([u32(0, 4, 0), Buffer.alloc(3)])), 'SET_CONFIG: payload of 15 bytes, expected 16');
    rejects(raw(Req.GET_CONFIG, Buffer.alloc(8)), 'GET_CONFIG: payload of 8 bytes, expected 12');
  });
});

describe('MessageReader: framing', () => {
  const stream = Buffer.concat([
    wire(Req.GET_FEATURES),
    wire(Req.SET_VRING_NUM, u32(1, 128)),
    wire(Req.SET_VRING_KICK, u64(1n)),
  ]);
  const expectMessages = (got: ReturnType<MessageReader['feed']>) => {
    if (!Array.isArray(got)) throw new Error(got.fatal);
    return got;
  };
  it('yields several messages from one chunk', () => {
    const r = new MessageReader();
    const ms = expectMessages(r.feed(stream, [7]));
    expect(ms.map((m) => [m.request, m.payload.length, m.fds])).toEqual([[1, 0, []], [8, 8, []], [12, 8, [7]]]);
    expect(r.pending).toBe(0);
  });
  it('reassembles messages fed one byte at a time; the fds go to the message holding the chunk\'s last byte', () => {
    const r = new MessageReader();
    const out: RawMessage[] = [];
    const kickStart = stream.length - (HEADER_SIZE + 8);
    for (let i = 0; i < stream.length; i++) out.push(...expectMessages(r.feed(stream.subarray(i, i + 1), i === kickStart ? [7] : [])));
    expect(out.map((m) => [m.request, m.fds])).toEqual([[1, []], [8, []], [12, [7]]]);
    expect(out[1]!.payload).toEqual(u32(1, 128));
  });
  it('gives the fds of a chunk ending mid-message to that message, not to the complete one before it', () => {
    const r = new MessageReader();
    const cut = HEADER_SIZE + 5;
    expect(expectMessages(r.feed(stream.subarray(0, cut), [4])).map((m) => [m.request, m.fds])).toEqual([[1, []]]);
    expect(r.pending).toBe(5);
    expect(expectMessages(r.feed(stream.subarray(cut))).map((m) => [m.request, m.fds])).toEqual([[8, [4]], [12, []]]);
  });
  it('keeps the payload a copy (the chunk buffer may be reused)', () => {
    const r = new MessageReader();
    const chunk = Buffer.from(wire(Req.SET_FEATURES, u64(5n)));
    const [m] = expectMessages(r.feed(chunk));
    chunk.fill(0);
    expect(m!.payload).toEqual(u64(5n));
  });
  it('accepts a payload of exactly the maximum size', () => {
    const r = new MessageReader();
    const big = wire(Req.SET_CONFIG, Buffer.alloc(MAX_PAYLOAD_SIZE));
    expect(expectMessages(r.feed(big))).toHaveLength(1);
  });
  it('is fatal on an oversized header, returning every fd it holds', () => {
    const r = new MessageReader();
    const head = wire(Req.SET_VRING_NUM, u32(0, 8));
    expect(expectMessages(r.feed(head.subarray(0, 14), [1]))).toEqual([]);
    const bad = u32(Req.SET_MEM_TABLE, 1, MAX_PAYLOAD_SIZE + 1);
    expect(r.feed(Buffer.concat([head.subarray(14), wire(Req.GET_FEATURES), bad]), [2, 3])).toEqual({
      fatal: `message size ${MAX_PAYLOAD_SIZE + 1} exceeds ${MAX_PAYLOAD_SIZE}`, fds: [1, 2, 3],
    });
    expect(r.feed(wire(Req.GET_FEATURES), [9])).toEqual({ fatal: `message size ${MAX_PAYLOAD_SIZE + 1} exceeds ${MAX_PAYLOAD_SIZE}`, fds: [9] });
    expect(r.pending).toBe(0);
  });
  for (const flags of [0, 2, 3, 0x8]) {
    it(`is fatal on version ${flags & 3} (flags ${flags})`, () => {
      const r = new MessageReader();
      expect(r.feed(Buffer.concat([u32(Req.GET_FEATURES, flags, 0)]), [5])).toEqual({ fatal: `unsupported vhost-user version ${flags & 3}`, fds: [5] });
    });
  }
  it('is fatal on fds without data and on more than 8 fds for one message', () => {
    expect(new MessageReader().feed(Buffer.alloc(0), [3])).toEqual({ fatal: 'file descriptors arrived without data', fds: [3] });
    const r = new MessageReader();
    const fds = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    expect(r.feed(wire(Req.GET_FEATURES).subarray(0, 4), fds)).toEqual({ fatal: 'more than 8 file descriptors on one message', fds });
    const r2 = new MessageReader();
    expect(r2.feed(wire(Req.GET_FEATURES), fds)).toEqual({ fatal: 'more than 8 file descriptors on one message', fds });
  });
  it('close() hands back the fds of an incomplete message', () => {
    const r = new MessageReader();
    expect(r.feed(wire(Req.ADD_MEM_REG, Buffer.alloc(40)).subarray(0, 20), [6])).toEqual([]);
    expect(r.close()).toEqual([6]);
    expect(r.pending).toBe(0);
  });
  it('an empty chunk without fds is harmless', () => {
    const r = new MessageReader();
    expect(r.feed(Buffer.alloc(0))).toEqual([]);
  });
});

describe('reply encoders', () => {
  it('u64, vring state and REPLY_ACK replies carry version 1 | REPLY and the exact size', () => {
    expect(encodeU64Reply(Req.GET_QUEUE_NUM, 2)).toEqual(Buffer.concat([u32(17, 5, 8), u64(2n)]));
    expect(encodeU64Reply(Req.GET_FEATURES, 0x1_7000_0000n)).toEqual(Buffer.concat([u32(1, 5, 8), u64(0x1_7000_0000n)]));
    expect(encodeStateReply(Req.GET_VRING_BASE, 1, 0xffff)).toEqual(Buffer.concat([u32(11, 5, 8), u32(1, 0xffff)]));
    expect(encodeAck(Req.ADD_MEM_REG, true)).toEqual(Buffer.concat([u32(37, 5, 8), u64(0n)]));
    expect(encodeAck(Req.ADD_MEM_REG, false)).toEqual(Buffer.concat([u32(37, 5, 8), u64(1n)]));
    expect(encodeReply(Req.GET_CONFIG, Buffer.from('abc'))).toEqual(Buffer.concat([u32(24, 5, 3), Buffer.from('abc')]));
  });
  it('a reply decodes back through the reader (the framing is symmetric)', () => {
    const got = new MessageReader().feed(encodeU64Reply(Req.GET_MAX_MEM_SLOTS, 32));
    expect(got).toEqual([{ request: 36, flags: 5, payload: u64(32n), fds: [] }]);
  });
});
