/**
 * The vhost-user message codec (QEMU docs/interop/vhost-user.rst): a 12-byte little-endian header
 * (u32 request, u32 flags, u32 size) and `size` payload bytes; file descriptors ride along as
 * SCM_RIGHTS. Pure bytes in, typed values out: no syscalls, and nothing here throws for bad input.
 *
 * The front-end (the VMM) is untrusted. MessageReader frames the stream and treats a header it
 * cannot trust to frame the next message (an unknown version, a size over the limit) as fatal: the
 * caller drops the connection. decodeMessage() checks each request's exact payload size and the
 * exact number of fds it carries; a rejected message comes back as `{ error, fds }` and the caller
 * closes every fd in that list (it owns them all either way).
 */

export const HEADER_SIZE = 12;
export const VHOST_USER_VERSION = 0x1;
export const FLAG_VERSION_MASK = 0x3;
export const FLAG_REPLY = 0x4;
export const FLAG_NEED_REPLY = 0x8;
/** Largest payload accepted; a full memory table is 8 + 8 * 32 bytes, a config message 12 + 256. */
export const MAX_PAYLOAD_SIZE = 4096;
/** Fds one message may carry (VHOST_MEMORY_BASELINE_NREGIONS, what QEMU's recvmsg side allows). */
export const MAX_MESSAGE_FDS = 8;
export const MAX_MEM_TABLE_REGIONS = 8;
export const MAX_CONFIG_SIZE = 256;
export const VRING_INDEX_MASK = 0xff;
export const VRING_NOFD_MASK = 0x100;
export const VHOST_VRING_F_LOG = 1;

export const Req = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SET_BACKEND_REQ_FD: 21,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  GET_INFLIGHT_FD: 31,
  SET_INFLIGHT_FD: 32,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
  SET_STATUS: 39,
  GET_STATUS: 40,
} as const;
export type ReqName = keyof typeof Req;
export const REQ_NAMES: ReadonlyMap<number, ReqName> = new Map(Object.entries(Req).map(([k, v]) => [v, k as ReqName]));

/** Virtio device feature bits (GET_FEATURES / SET_FEATURES). */
export const Feature = {
  VIRTIO_F_NOTIFY_ON_EMPTY: 24,
  VHOST_F_LOG_ALL: 26,
  VIRTIO_RING_F_INDIRECT_DESC: 28,
  VIRTIO_RING_F_EVENT_IDX: 29,
  VHOST_USER_F_PROTOCOL_FEATURES: 30,
  VIRTIO_F_VERSION_1: 32,
  VIRTIO_F_ACCESS_PLATFORM: 33,
  VIRTIO_F_RING_PACKED: 34,
} as const;

/** vhost-user protocol feature bits (GET_PROTOCOL_FEATURES / SET_PROTOCOL_FEATURES). */
export const ProtocolFeature = {
  MQ: 0,
  LOG_SHMFD: 1,
  RARP: 2,
  REPLY_ACK: 3,
  NET_MTU: 4,
  BACKEND_REQ: 5,
  CROSS_ENDIAN: 6,
  CRYPTO_SESSION: 7,
  PAGEFAULT: 8,
  CONFIG: 9,
  BACKEND_SEND_FD: 10,
  HOST_NOTIFIER: 11,
  INFLIGHT_SHMFD: 12,
  RESET_DEVICE: 13,
  INBAND_NOTIFICATIONS: 14,
  CONFIGURE_MEM_SLOTS: 15,
  STATUS: 16,
} as const;

/** The bit mask of feature bit numbers. */
export const featureMask = (...bits: number[]): bigint => bits.reduce((m, b) => m | (1n << BigInt(b)), 0n);

/** One framed message: header fields, a copy of the payload, and the fds that came with it. */
export interface RawMessage {
  readonly request: number;
  readonly flags: number;
  readonly payload: Buffer;
  readonly fds: number[];
}

export interface ReaderFatal {
  readonly fatal: string;
  /** Every fd the reader held or was just given (including those of messages framed in this feed): close them. */
  readonly fds: number[];
}

/**
 * Frames the byte stream of the vhost-user socket. feed() takes each recvmsg result (bytes and the
 * SCM_RIGHTS fds that came with them) and returns the messages it completed.
 *
 * Fds belong to the message holding the last byte of the chunk they arrived with: Linux ends a
 * stream recvmsg at the first segment carrying fds (a read never goes past it), and QEMU sends each
 * message, header and payload, in one sendmsg with its fds, so that is the message they were sent with.
 */
export class MessageReader {
  private buf: Buffer = Buffer.alloc(0);
  private partialFds: number[] = [];
  private fatalReason: string | null = null;

  constructor(private readonly maxPayload = MAX_PAYLOAD_SIZE) {}

  /** Bytes of an incomplete message held. */
  get pending(): number { return this.buf.length; }

  feed(bytes: Uint8Array, fds: readonly number[] = []): RawMessage[] | ReaderFatal {
    if (this.fatalReason !== null) return { fatal: this.fatalReason, fds: [...fds] };
    if (bytes.length === 0 && fds.length > 0) return this.die('file descriptors arrived without data', [...fds]);
    this.buf = this.buf.length === 0 ? Buffer.from(bytes) : Buffer.concat([this.buf, bytes]);
    const out: RawMessage[] = [];
    let off = 0;
    for (;;) {
      if (this.buf.length - off < HEADER_SIZE) break;
      const request = this.buf.readUInt32LE(off);
      const flags = this.buf.readUInt32LE(off + 4);
      const size = this.buf.readUInt32LE(off + 8);
      if ((flags & FLAG_VERSION_MASK) !== VHOST_USER_VERSION) {
        return this.die(`unsupported vhost-user version ${flags & FLAG_VERSION_MASK}`, this.heldFds(out, fds));
      }
      if (size > this.maxPayload) return this.die(`message size ${size} exceeds ${this.maxPayload}`, this.heldFds(out, fds));
      const end = off + HEADER_SIZE + size;
      if (this.buf.length < end) break;
      // This message holds the chunk's last byte when it ends exactly at the end of the buffer.
      const mine = end === this.buf.length ? [...this.partialFds, ...fds] : this.partialFds;
      this.partialFds = [];
      out.push({ request, flags, payload: Buffer.from(this.buf.subarray(off + HEADER_SIZE, end)), fds: mine });
      off = end;
    }
    this.buf = this.buf.subarray(off);
    if (this.buf.length > 0) this.partialFds.push(...fds);
    const over = out.find((m) => m.fds.length > MAX_MESSAGE_FDS);
    if (over !== undefined || this.partialFds.length > MAX_MESSAGE_FDS) {
      return this.die(`more than ${MAX_MESSAGE_FDS} file descriptors on one message`, this.heldFds(out, []));
    }
    return out;
  }

  /** Forgets the stream (the connection closed); returns the fds of an incomplete message, for closing. */
  close(): number[] {
    const fds = this.partialFds;
    this.partialFds = [];
    this.buf = Buffer.alloc(0);
    return fds;
  }

  private heldFds(out: readonly RawMessage[], fresh: readonly number[]): number[] {
    return [...out.flatMap((m) => m.fds), ...this.partialFds, ...fresh];
  }

  private die(reason: string, fds: number[]): ReaderFatal {
    this.fatalReason = reason;
    this.partialFds = [];
    this.buf = Buffer.alloc(0);
    return { fatal: reason, fds };
  }
}

/** A memory region as the front-end describes it (VhostUserMemoryRegion). */
export interface RegionDesc {
  readonly gpa: bigint;
  readonly size: bigint;
  readonly uva: bigint;
  readonly mmapOffset: bigint;
}

type R = typeof Req;
interface Base<K extends keyof R> { readonly request: R[K]; readonly needReply: boolean }

/** A decoded front-end message; `request` discriminates. Fds listed here now belong to the caller. */
export type VhostMessage =
  | Base<'GET_FEATURES' | 'SET_OWNER' | 'RESET_OWNER' | 'GET_PROTOCOL_FEATURES' | 'GET_QUEUE_NUM' | 'GET_MAX_MEM_SLOTS' | 'GET_STATUS'>
  | (Base<'SET_FEATURES' | 'SET_PROTOCOL_FEATURES' | 'SET_STATUS'> & { readonly value: bigint })
  | (Base<'SET_VRING_NUM' | 'SET_VRING_BASE' | 'GET_VRING_BASE' | 'SET_VRING_ENABLE'> & { readonly index: number; readonly num: number })
  | (Base<'SET_VRING_ADDR'> & {
    readonly index: number; readonly flags: number;
    readonly desc: bigint; readonly used: bigint; readonly avail: bigint; readonly log: bigint;
  })
  | (Base<'SET_VRING_KICK' | 'SET_VRING_CALL' | 'SET_VRING_ERR'> & { readonly index: number; readonly fd: number | null })
  | (Base<'SET_MEM_TABLE'> & { readonly regions: readonly RegionDesc[]; readonly fds: readonly number[] })
  | (Base<'ADD_MEM_REG'> & { readonly region: RegionDesc; readonly fd: number })
  /** `fds`: 0 or 1 fd some front-ends send along; unused, the caller closes it. */
  | (Base<'REM_MEM_REG'> & { readonly region: RegionDesc; readonly fds: readonly number[] })
  | (Base<'SET_LOG_BASE'> & { readonly mmapSize: bigint; readonly mmapOffset: bigint; readonly fd: number })
  | (Base<'SET_LOG_FD' | 'SET_BACKEND_REQ_FD'> & { readonly fd: number })
  | (Base<'GET_CONFIG' | 'SET_CONFIG'> & { readonly offset: number; readonly size: number; readonly flags: number; readonly data: Buffer })
  | (Base<'GET_INFLIGHT_FD' | 'SET_INFLIGHT_FD'> & {
    readonly mmapSize: bigint; readonly mmapOffset: bigint; readonly numQueues: number; readonly queueSize: number;
    readonly fd: number | null;
  });

export interface DecodeError {
  readonly error: string;
  readonly request: number;
  /** Every fd the message carried: the caller closes them. */
  readonly fds: number[];
}

const STATE_SIZE = 8;
const ADDR_SIZE = 40;
const REGION_SIZE = 32;
const MEM_REG_SIZE = 8 + REGION_SIZE;
const LOG_SIZE = 16;
const CONFIG_HEADER_SIZE = 12;
const INFLIGHT_SIZE = 24;

const readRegion = (p: Buffer, at: number): RegionDesc => ({
  gpa: p.readBigUInt64LE(at),
  size: p.readBigUInt64LE(at + 8),
  uva: p.readBigUInt64LE(at + 16),
  mmapOffset: p.readBigUInt64LE(at + 24),
});

/** Payload size rules: an exact size, or a function of the payload giving the expected size (or an error). */
type SizeRule = number | ((p: Buffer) => number | string);
/** Fd count rules: an exact count, a [min, max] range, or a function of the payload. */
type FdRule = number | readonly [number, number] | ((p: Buffer) => number | readonly [number, number]);

const memTableSize = (p: Buffer): number | string => {
  if (p.length < 8) return 8;
  const n = p.readUInt32LE(0);
  if (n > MAX_MEM_TABLE_REGIONS) return `memory table with ${n} regions (at most ${MAX_MEM_TABLE_REGIONS})`;
  return 8 + REGION_SIZE * n;
};
const configSize = (p: Buffer): number | string => {
  if (p.length < CONFIG_HEADER_SIZE) return CONFIG_HEADER_SIZE;
  const n = p.readUInt32LE(4);
  if (n > MAX_CONFIG_SIZE) return `config size ${n} exceeds ${MAX_CONFIG_SIZE}`;
  return CONFIG_HEADER_SIZE + n;
};
/** KICK/CALL/ERR: one fd unless the payload's NOFD bit is set. */
const vringFdCount = (p: Buffer): number => (p.length === 8 && (p.readUInt32LE(0) & VRING_NOFD_MASK) !== 0 ? 0 : 1);

const RULES: ReadonlyMap<number, readonly [SizeRule, FdRule]> = new Map<number, readonly [SizeRule, FdRule]>([
  [Req.GET_FEATURES, [0, 0]],
  [Req.SET_OWNER, [0, 0]],
  [Req.RESET_OWNER, [0, 0]],
  [Req.GET_PROTOCOL_FEATURES, [0, 0]],
  [Req.GET_QUEUE_NUM, [0, 0]],
  [Req.GET_MAX_MEM_SLOTS, [0, 0]],
  [Req.GET_STATUS, [0, 0]],
  [Req.SET_FEATURES, [8, 0]],
  [Req.SET_PROTOCOL_FEATURES, [8, 0]],
  [Req.SET_STATUS, [8, 0]],
  [Req.SET_VRING_NUM, [STATE_SIZE, 0]],
  [Req.SET_VRING_BASE, [STATE_SIZE, 0]],
  [Req.GET_VRING_BASE, [STATE_SIZE, 0]],
  [Req.SET_VRING_ENABLE, [STATE_SIZE, 0]],
  [Req.SET_VRING_ADDR, [ADDR_SIZE, 0]],
  [Req.SET_VRING_KICK, [8, vringFdCount]],
  [Req.SET_VRING_CALL, [8, vringFdCount]],
  [Req.SET_VRING_ERR, [8, vringFdCount]],
  [Req.SET_MEM_TABLE, [memTableSize, (p) => p.readUInt32LE(0)]],
  [Req.ADD_MEM_REG, [MEM_REG_SIZE, 1]],
  [Req.REM_MEM_REG, [MEM_REG_SIZE, [0, 1]]],
  [Req.SET_LOG_BASE, [LOG_SIZE, 1]],
  [Req.SET_LOG_FD, [0, 1]],
  [Req.SET_BACKEND_REQ_FD, [0, 1]],
  [Req.GET_CONFIG, [configSize, 0]],
  [Req.SET_CONFIG, [configSize, 0]],
  [Req.GET_INFLIGHT_FD, [INFLIGHT_SIZE, 0]],
  [Req.SET_INFLIGHT_FD, [INFLIGHT_SIZE, 1]],
]);

/** Checks `m`'s payload size and fd count for its request and decodes it. */
export function decodeMessage(m: RawMessage): VhostMessage | DecodeError {
  const { request, payload: p, fds } = m;
  const name = REQ_NAMES.get(request);
  const fail = (why: string): DecodeError => ({ error: `${name ?? `request ${request}`}: ${why}`, request, fds: [...fds] });
  const rule = RULES.get(request);
  if (name === undefined || rule === undefined) return fail('unknown request');
  const [sizeRule, fdRule] = rule;
  const size = typeof sizeRule === 'number' ? sizeRule : sizeRule(p);
  if (typeof size === 'string') return fail(size);
  if (p.length !== size) return fail(`payload of ${p.length} bytes, expected ${size}`);
  const want = typeof fdRule === 'function' ? fdRule(p) : fdRule;
  const [min, max] = typeof want === 'number' ? [want, want] : want;
  if (fds.length < min || fds.length > max) {
    return fail(`${fds.length} file descriptors, expected ${min === max ? min : `${min} to ${max}`}`);
  }
  if (fds.some((fd) => !Number.isInteger(fd) || fd < 0)) return fail('invalid file descriptor number');
  const needReply = (m.flags & FLAG_NEED_REPLY) !== 0;
  const fd0 = fds[0] ?? null;
  switch (request) {
    case Req.SET_FEATURES: case Req.SET_PROTOCOL_FEATURES: case Req.SET_STATUS:
      return { request, needReply, value: p.readBigUInt64LE(0) };
    case Req.SET_VRING_NUM: case Req.SET_VRING_BASE: case Req.GET_VRING_BASE: case Req.SET_VRING_ENABLE:
      return { request, needReply, index: p.readUInt32LE(0), num: p.readUInt32LE(4) };
    case Req.SET_VRING_ADDR:
      return {
        request, needReply, index: p.readUInt32LE(0), flags: p.readUInt32LE(4),
        desc: p.readBigUInt64LE(8), used: p.readBigUInt64LE(16), avail: p.readBigUInt64LE(24), log: p.readBigUInt64LE(32),
      };
    case Req.SET_VRING_KICK: case Req.SET_VRING_CALL: case Req.SET_VRING_ERR: {
      const v = p.readBigUInt64LE(0);
      if ((v & ~BigInt(VRING_INDEX_MASK | VRING_NOFD_MASK)) !== 0n) return fail('reserved bits set in the vring index');
      return { request, needReply, index: Number(v) & VRING_INDEX_MASK, fd: fd0 };
    }
    case Req.SET_MEM_TABLE:
      return { request, needReply, regions: Array.from({ length: fds.length }, (_, i) => readRegion(p, 8 + REGION_SIZE * i)), fds: [...fds] };
    case Req.ADD_MEM_REG:
      return { request, needReply, region: readRegion(p, 8), fd: fd0! };
    case Req.REM_MEM_REG:
      return { request, needReply, region: readRegion(p, 8), fds: [...fds] };
    case Req.SET_LOG_BASE:
      return { request, needReply, mmapSize: p.readBigUInt64LE(0), mmapOffset: p.readBigUInt64LE(8), fd: fd0! };
    case Req.SET_LOG_FD: case Req.SET_BACKEND_REQ_FD:
      return { request, needReply, fd: fd0! };
    case Req.GET_CONFIG: case Req.SET_CONFIG:
      return {
        request, needReply, offset: p.readUInt32LE(0), size: p.readUInt32LE(4), flags: p.readUInt32LE(8),
        data: Buffer.from(p.subarray(CONFIG_HEADER_SIZE)),
      };
    case Req.GET_INFLIGHT_FD: case Req.SET_INFLIGHT_FD:
      return {
        request, needReply, mmapSize: p.readBigUInt64LE(0), mmapOffset: p.readBigUInt64LE(8),
        numQueues: p.readUInt16LE(16), queueSize: p.readUInt16LE(18), fd: fd0,
      };
    default:
      return { request: request as Base<'GET_FEATURES'>['request'], needReply };
  }
}

/** A reply message: header (version | REPLY) and `payload`. */
export function encodeReply(request: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const out = Buffer.alloc(HEADER_SIZE + payload.length);
  out.writeUInt32LE(request >>> 0, 0);
  out.writeUInt32LE(VHOST_USER_VERSION | FLAG_REPLY, 4);
  out.writeUInt32LE(payload.length, 8);
  out.set(payload, HEADER_SIZE);
  return out;
}

/** A u64 reply (GET_FEATURES, GET_PROTOCOL_FEATURES, GET_QUEUE_NUM, GET_MAX_MEM_SLOTS, GET_STATUS). */
export function encodeU64Reply(request: number, value: bigint | number): Buffer {
  const p = Buffer.alloc(8);
  p.writeBigUInt64LE(BigInt.asUintN(64, BigInt(value)));
  return encodeReply(request, p);
}

/** A vring state reply (GET_VRING_BASE: {index, next avail idx}). */
export function encodeStateReply(request: number, index: number, num: number): Buffer {
  const p = Buffer.alloc(STATE_SIZE);
  p.writeUInt32LE(index >>> 0, 0);
  p.writeUInt32LE(num >>> 0, 4);
  return encodeReply(request, p);
}

/** The REPLY_ACK answer to a NEED_REPLY message: u64 0 on success, non-zero on failure. */
export const encodeAck = (request: number, ok: boolean): Buffer => encodeU64Reply(request, ok ? 0 : 1);

/** The fds a decoded message hands to the caller (to keep or close). */
export function messageFds(m: VhostMessage): number[] {
  const out: number[] = [];
  if ('fds' in m) out.push(...m.fds);
  if ('fd' in m && m.fd !== null) out.push(m.fd);
  return out;
}
