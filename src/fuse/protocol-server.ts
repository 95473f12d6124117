/**
 * The transport-agnostic FUSE protocol server (go-fuse ProtocolServer, virtiofsd Server): one
 * request in (bytes starting with fuse_in_header), one reply out (fuse_out_header + payload) or
 * null when the kernel expects none. No fds, no I/O: the /dev/fuse session reads and writes, a
 * virtio-fs transport can do the same with descriptor chains.
 *
 * Every request takes the same steps:
 *   1. header: len >= 40 and len === buffer length (codec.parseHeader);
 *   2. the opcode's row; unknown -> ENOSYS; anything but INIT before INIT -> EIO;
 *   3. argument struct and NUL-terminated names fit (codec.parseArgs);
 *   4. the handler calls the filesystem and encodes the reply.
 * Malformed requests are a ProtocolError: logged once at warn, answered EINVAL/EIO when the unique
 * is readable (dropped otherwise, or when the opcode expects no reply). Nothing throws out of
 * handle(): a bug becomes EIO and one error log line.
 *
 * Buffer ownership: names and write data are views into the request buffer, so the transport must
 * not reuse a request buffer until the promise returned by handle() has settled.
 */
import { SlabPool } from './slab-pool.js';
import type { Logger } from 'pino';
import { Declined, E, FsError, ProtocolError, toErrno } from '../errors.js';
import type { FileSystem } from '../fs/filesystem.js';
import type { InitOptions } from '../fs/types.js';
import { childLogger, LogOnce } from '../log.js';
import { PAGE_SIZE, XATTR_SIZE_MAX } from '../sys/constants.js';
import {
  FUSE_KERNEL_MINOR_VERSION, FUSE_KERNEL_VERSION, FUSE_MIN_MINOR_VERSION, requestBufferSize, InitIn, InitOut,
  InterruptIn, OutHeader, writeStruct,
} from './abi.js';
import {
  allocReply, encodeError, IN, initOutSize, inSize, parseArgs, parseHeader, truncateReply,
  type Request, type TransportIo,
} from './codec.js';
import {
  FUSE_ASYNC_DIO, FUSE_ASYNC_READ, FUSE_ATOMIC_O_TRUNC, FUSE_AUTO_INVAL_DATA, FUSE_BIG_WRITES, FUSE_CACHE_SYMLINKS, FUSE_CREATE_SUPP_GROUP,
  FUSE_DO_READDIRPLUS, FUSE_DONT_MASK, FUSE_EXPORT_SUPPORT, FUSE_FLOCK_LOCKS, FUSE_HANDLE_KILLPRIV_V2, FUSE_INIT_EXT,
  FUSE_MAX_PAGES, FUSE_NO_EXPORT_SUPPORT, FUSE_OVER_IO_URING, FUSE_PARALLEL_DIROPS, FUSE_PASSTHROUGH, FUSE_POSIX_ACL, FUSE_POSIX_LOCKS,
  FUSE_READDIRPLUS_AUTO, FUSE_SECURITY_CTX, FUSE_SETXATTR_EXT, FUSE_SUBMOUNTS, FUSE_WRITEBACK_CACHE, initFlagNames,
} from './flags.js';
import { Op, opcodeName, opcodeRow, type Conn, type OpcodeRow, type Session } from './opcodes.js';
import { rxLine, txLine } from './trace.js';

export interface ProtocolOptions {
  /** Largest WRITE payload in bytes (init_out.max_write); >= 4096, default 1 MiB. max_pages is derived. */
  maxWrite: number;
  /** Request FUSE_WRITEBACK_CACHE when the kernel offers it. */
  writeback: boolean;
  /** Request FUSE_PASSTHROUGH (max_stack_depth 1) when offered; the kernel refuses it with writeback. */
  passthrough: boolean;
  /** FUSE_EXPORT_SUPPORT: the client may export the mount / use name_to_handle_at on it (default true). */
  exportSupport: boolean;
  /**
   * The supplementary groups of the requesting process, for ACCESS (the kernel sends them only with
   * creates): a transport whose requesters are local processes can tell (/proc/PID/status).
   */
  requesterGroups?: (pid: number) => readonly number[] | null;
  /** Request FUSE_POSIX_ACL: the kernel checks POSIX ACLs (it turns default_permissions on) and leaves the umask to us. */
  posixAcl?: boolean;
  /** init_out.max_background / congestion_threshold; 0 or absent keeps the kernel's default. */
  maxBackground?: number;
  congestionThreshold?: number;
  /** Timestamp granularity in ns (default 1). */
  timeGran?: number;
  /** FUSE_SECURITY_CTX (--security-label): required; a kernel that does not offer it fails INIT (EPROTO). */
  securityLabel?: boolean;
  /** FUSE_SUBMOUNTS (--announce-submounts): taken when offered; without it a warning and no submounts. */
  announceSubmounts?: boolean;
  /**
   * FUSE_OVER_IO_URING (--io-uring): 'want' takes it when offered, 'need' refuses INIT (EPROTO)
   * when it is not; the transport then registers its rings once INIT is answered.
   */
  ioUring?: 'want' | 'need';
  /** The transport's hook, called (from a setImmediate) after the DESTROY reply has been returned. */
  onDestroy?: () => void;
  /**
   * A serving thread that does not run the filesystem: the opcodes it answers itself. Any other
   * request, and one its filesystem declines, resolves to DECLINED without being parsed further:
   * the transport hands it to the thread that runs the filesystem.
   */
  localOps?: ReadonlySet<number>;
}

/** handle()'s answer to a request this server does not serve (ProtocolOptions.localOps): compared by identity. */
export const DECLINED: Buffer = Buffer.alloc(0);

/** What INIT settled, as a serving thread takes it over from the thread that answered INIT (adopt). */
export interface NegotiatedState {
  minor: number;
  flags: bigint;
  maxReadahead: number;
}

const DEFAULT_PROTOCOL_OPTIONS: Readonly<ProtocolOptions> = Object.freeze({
  maxWrite: 1 << 20,
  writeback: false,
  passthrough: false,
  exportSupport: true,
  timeGran: 1,
});

/** What INIT settled on. */
interface Negotiated {
  major: number;
  minor: number;
  /** capability bits both sides agreed on (flags | flags2 << 32) */
  flags: bigint;
  maxWrite: number;
  maxReadahead: number;
}

/** Kernel default pages per request without FUSE_MAX_PAGES (FUSE_DEFAULT_MAX_PAGES_PER_REQ). */
const DEFAULT_MAX_PAGES = 32;
const MAX_PAGES_LIMIT = 0xffff;
/** Interrupts for requests that already completed would otherwise accumulate. */
const MAX_INTERRUPTS = 4096;

/** Capabilities always requested when the kernel offers them. */
const BASE_FLAGS =
  FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES | FUSE_DONT_MASK | FUSE_FLOCK_LOCKS |
  FUSE_AUTO_INVAL_DATA | FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO | FUSE_ASYNC_DIO | FUSE_PARALLEL_DIROPS |
  FUSE_HANDLE_KILLPRIV_V2 | FUSE_MAX_PAGES | FUSE_CACHE_SYMLINKS | FUSE_SETXATTR_EXT | FUSE_INIT_EXT | FUSE_CREATE_SUPP_GROUP;

function validate(o: ProtocolOptions): ProtocolOptions {
  if (!Number.isInteger(o.maxWrite) || o.maxWrite < PAGE_SIZE || o.maxWrite > MAX_PAGES_LIMIT * PAGE_SIZE) {
    throw new RangeError(`maxWrite must be an integer between ${PAGE_SIZE} and ${MAX_PAGES_LIMIT * PAGE_SIZE}, got ${o.maxWrite}`);
  }
  for (const k of ['maxBackground', 'congestionThreshold'] as const) {
    const v = o[k];
    if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0xffff)) throw new RangeError(`${k} must be 0..65535`);
  }
  if (o.timeGran !== undefined && (!Number.isInteger(o.timeGran) || o.timeGran < 1 || o.timeGran > 1e9)) {
    throw new RangeError('timeGran must be 1..1000000000 ns');
  }
  return o;
}

export class ProtocolServer implements Session {
  readonly fs: FileSystem;

  private readonly opts: ProtocolOptions;
  private readonly log: Logger;
  private readonly once: LogOnce;
  private neg: Negotiated | null = null;
  /** Set at INIT; the placeholder values only matter for parsing the INIT request itself. */
  private wire: Conn;
  private readonly interrupted = new Set<bigint>();

  constructor(fs: FileSystem, opts: Partial<ProtocolOptions> = {}, log: Logger = childLogger('fuse')) {
    this.fs = fs;
    this.opts = validate({ ...DEFAULT_PROTOCOL_OPTIONS, ...opts });
    this.log = log;
    this.once = new LogOnce(log);
    this.wire = this.makeConn(FUSE_KERNEL_MINOR_VERSION, 0n);
  }

  /** READ reply slabs, once the transport promised to give every reply back after writing it */
  private replies: SlabPool | null = null;
  private pooling = false;

  /**
   * The transport writes each reply before it needs the buffer again and then calls recycle():
   * large replies (READ) may come from a pool of slabs instead of a fresh allocation each.
   */
  reuseReplies(): void {
    this.pooling = true;
  }

  /** Session: a buffer for a large reply. */
  replyBuffer(size: number): Buffer {
    if (!this.pooling) return Buffer.allocUnsafe(size);
    const slab = OutHeader.SIZE + this.wire.maxRead;
    if (size > slab) return Buffer.allocUnsafe(size);
    if (this.replies === null || this.replies.size !== slab) this.replies = new SlabPool(slab);
    return this.replies.take().subarray(0, size);
  }

  /** A reply is written (or will not be): its buffer may be reused. Buffers not from the pool are ignored. */
  recycle(reply: Buffer): void {
    this.replies?.give(reply);
  }

  /** Session: the requester's supplementary groups when the transport can tell, else null. */
  requesterGroups(pid: number): readonly number[] | null {
    return this.opts.requesterGroups?.(pid) ?? null;
  }

  /** Connection facts for the handlers (Session). */
  get conn(): Conn {
    return this.wire;
  }

  /** What INIT negotiated, or null before INIT (and after DESTROY). */
  get negotiated(): Negotiated | null {
    return this.neg;
  }

  /** Recommended read buffer for the transport: max_write + a page for headers, at least 8 KiB. */
  bufferSize(): number {
    return requestBufferSize(this.opts.maxWrite);
  }

  /** Handle one request; resolves to the reply or null (no reply). Never rejects. */
  async handle(buf: Buffer, io?: TransportIo): Promise<Buffer | null> {
    // One async frame per request (plus the handler's): the steps are inline rather than in a helper.
    try {
      let r: Request;
      try {
        r = parseHeader(buf, io?.payloadBytes ?? 0);
      } catch (e) {
        return this.malformed(buf, e);
      }
      if (io) r.io = io;
      if (this.opts.localOps && !this.opts.localOps.has(r.opcode)) return DECLINED;
      const row = opcodeRow(r.opcode);
      const debug = this.log.isLevelEnabled('debug');
      if (row === undefined) {
        if (debug) this.log.debug(rxLine(r, undefined, opcodeName(r.opcode)));
        return this.done(r, encodeError(r.unique, E.ENOSYS), debug);
      }
      if (this.neg === null && r.opcode !== Op.INIT) {
        this.once.warn('before-init', { opcode: row.name }, 'request before INIT answered EIO');
        return row.noReply ? null : this.done(r, encodeError(r.unique, E.EIO), debug);
      }
      try {
        parseArgs(r, inSize(row.in, this.neg === null ? null : this.conn), row.names);
      } catch (e) {
        return this.malformed(buf, e, row);
      }
      if (debug) this.log.debug(rxLine(r, row, row.name));
      if (row.handler === null) return row.noReply ? null : this.done(r, encodeError(r.unique, E.ENOSYS), debug);
      let out: Buffer | null;
      try {
        out = await row.handler(this, r);
      } catch (e) {
        if (e instanceof ProtocolError) return this.malformed(buf, e, row);
        if (e instanceof Declined) return DECLINED;
        out = row.noReply ? null : encodeError(r.unique, this.errnoOf(e, row));
      }
      // An interrupted request that failed anyway reports EINTR; a success is still reported as
      // such, because its effects (a created entry, a counted lookup) happened.
      if (this.interrupted.size !== 0 && this.interrupted.delete(r.unique) && out !== null && out.readInt32LE(OutHeader.error) !== 0) {
        out = encodeError(r.unique, E.EINTR);
      }
      return this.done(r, out, debug);
    } catch (e) {
      this.once.error('handle-bug', { err: e }, 'bug: request handling threw; answered EIO');
      return this.errorFor(buf, E.EIO);
    }
  }

  private done(r: Request, out: Buffer | null, debug: boolean): Buffer | null {
    if (debug) this.log.debug(txLine(r.unique, out));
    return out;
  }

  /** FsError and errno-carrying errors keep their errno; anything else is a bug: EIO, logged once per opcode. */
  private errnoOf(e: unknown, row: OpcodeRow): number {
    if (e instanceof FsError) return e.errno;
    const x = e as { errno?: unknown; code?: unknown } | null;
    if (x !== null && typeof x === 'object' && (typeof x.errno === 'number' || typeof x.code === 'string')) return toErrno(e);
    this.once.error(`bug:${row.name}`, { err: e, opcode: row.name }, `unexpected error in ${row.name} answered EIO`);
    return E.EIO;
  }

  /** A malformed request: warn once per kind, answer when the unique is readable and a reply is expected. */
  private malformed(buf: Buffer, e: unknown, row?: OpcodeRow): Buffer | null {
    const msg = e instanceof Error ? e.message : String(e);
    const errno = e instanceof ProtocolError ? e.errno : E.EIO;
    const opcode = buf.length >= 8 ? buf.readUInt32LE(4) : -1;
    this.once.warn(`malformed:${msg}`, { opcode: opcodeName(opcode), len: buf.length },
      `malformed request from the client (${msg}); answered ${errno === E.EIO ? 'EIO' : 'EINVAL'} or dropped, further ones are not logged`);
    if (row?.noReply) return null;
    return this.errorFor(buf, errno);
  }

  /** An error reply when the unique can be read and the opcode expects a reply, else null. */
  private errorFor(buf: Buffer, errno: number): Buffer | null {
    if (buf.length < 16) return null;
    if (opcodeRow(buf.readUInt32LE(4))?.noReply) return null;
    return encodeError(buf.readBigUInt64LE(8), errno);
  }

  private makeConn(minor: number, flags: bigint): Conn {
    const maxPages = flags & FUSE_MAX_PAGES ? Math.min(MAX_PAGES_LIMIT, Math.ceil(this.opts.maxWrite / PAGE_SIZE)) : DEFAULT_MAX_PAGES;
    const maxRead = Math.max(this.opts.maxWrite, maxPages * PAGE_SIZE, DEFAULT_MAX_PAGES * PAGE_SIZE);
    return {
      minor,
      setxattrExt: (flags & FUSE_SETXATTR_EXT) !== 0n,
      passthrough: (flags & FUSE_PASSTHROUGH) !== 0n,
      securityCtx: (flags & FUSE_SECURITY_CTX) !== 0n,
      maxRead,
      maxReply: Math.max(maxRead, XATTR_SIZE_MAX),
    };
  }

  /** The capabilities we ask for, given the options. */
  private wantedFlags(): bigint {
    let want = BASE_FLAGS;
    want |= this.opts.exportSupport ? FUSE_EXPORT_SUPPORT : FUSE_NO_EXPORT_SUPPORT;
    if (this.opts.writeback) want |= FUSE_WRITEBACK_CACHE;
    if (this.opts.passthrough) want |= FUSE_PASSTHROUGH;
    if (this.opts.posixAcl) want |= FUSE_POSIX_ACL;
    if (this.opts.securityLabel) want |= FUSE_SECURITY_CTX;
    if (this.opts.announceSubmounts) want |= FUSE_SUBMOUNTS;
    if (this.opts.ioUring) want |= FUSE_OVER_IO_URING;
    return want;
  }

  /**
   * INIT: agree on min(7.45, kernel minor) and on the offered capabilities we want, tell the
   * filesystem what changed its behaviour, and reply. A kernel with a newer major gets only our
   * version and will send INIT again; one older than 7.12 gets EPROTO.
   */
  async doInit(r: Request): Promise<Buffer> {
    if (this.neg !== null) {
      this.once.warn('init-twice', {}, 'second INIT on an initialised session answered EIO');
      return encodeError(r.unique, E.EIO);
    }
    const avail = r.end - IN;
    const major = r.buf.readUInt32LE(IN + InitIn.major);
    const kminor = r.buf.readUInt32LE(IN + InitIn.minor);
    if (major > FUSE_KERNEL_VERSION) {
      const b = allocReply(r.unique, 8);
      b.writeUInt32LE(FUSE_KERNEL_VERSION, OutHeader.SIZE + InitOut.major);
      b.writeUInt32LE(FUSE_KERNEL_MINOR_VERSION, OutHeader.SIZE + InitOut.minor);
      return b;
    }
    if (major < FUSE_KERNEL_VERSION || kminor < FUSE_MIN_MINOR_VERSION) {
      this.log.error({ kernel: `${major}.${kminor}` }, `kernel fuse protocol ${major}.${kminor} is too old; 7.${FUSE_MIN_MINOR_VERSION} or later is needed`);
      return encodeError(r.unique, E.EPROTO);
    }
    const minor = Math.min(kminor, FUSE_KERNEL_MINOR_VERSION);
    // Fields after minor exist since 7.6 (max_readahead, flags) and 7.36 (flags2): read when present.
    const maxReadahead = avail >= InitIn.flags ? r.buf.readUInt32LE(IN + InitIn.max_readahead) : 0;
    let offered = avail >= InitIn.flags2 ? BigInt(r.buf.readUInt32LE(IN + InitIn.flags)) : 0n;
    // INIT_EXT means "flags2 is valid": without the 7.36 flags2 field there is nothing to extend.
    if (avail < InitIn.unused) offered &= ~FUSE_INIT_EXT;
    if (offered & FUSE_INIT_EXT) offered |= BigInt(r.buf.readUInt32LE(IN + InitIn.flags2)) << 32n;
    let flags = offered & this.wantedFlags();
    if (flags & FUSE_PASSTHROUGH && flags & FUSE_WRITEBACK_CACHE) {
      this.log.warn('passthrough cannot be combined with the writeback cache; passthrough is disabled');
      flags &= ~FUSE_PASSTHROUGH;
    }
    if (this.opts.passthrough && !(flags & FUSE_PASSTHROUGH) && !(flags & FUSE_WRITEBACK_CACHE)) {
      this.log.warn('the kernel did not offer FUSE_PASSTHROUGH; serving reads and writes without it');
    }
    // as virtiofsd: labels that would silently not be set fail the mount; submounts only warn
    if (this.opts.securityLabel && !(flags & FUSE_SECURITY_CTX)) {
      this.log.error('--security-label: the kernel does not offer FUSE_SECURITY_CTX; refusing INIT');
      return encodeError(r.unique, E.EPROTO);
    }
    if (this.opts.ioUring === 'need' && !(flags & FUSE_OVER_IO_URING)) {
      this.log.error('--io-uring on: the kernel does not offer FUSE_OVER_IO_URING (as root: echo Y > /sys/module/fuse/parameters/enable_uring before mounting); refusing INIT');
      return encodeError(r.unique, E.EPROTO);
    }
    if (this.opts.announceSubmounts && !(flags & FUSE_SUBMOUNTS)) {
      this.log.warn('--announce-submounts: the client does not support submounts (only virtio-fs does); they are not announced');
    }
    const conn = this.makeConn(minor, flags);
    try {
      await this.fs.init(initOptions(flags, conn));
    } catch (e) {
      this.log.error({ err: e }, 'filesystem init failed; the mount will not be usable');
      return encodeError(r.unique, this.errnoOf(e, opcodeRow(Op.INIT)!));
    }
    this.wire = conn;
    this.neg = { major: FUSE_KERNEL_VERSION, minor, flags, maxWrite: this.opts.maxWrite, maxReadahead };
    this.log.info({ minor, flags: initFlagNames(flags), maxWrite: this.opts.maxWrite }, `fuse protocol 7.${minor} negotiated`);
    return this.encodeInitOut(r, minor, flags, maxReadahead);
  }

  /**
   * After INIT: whether the kernel serves this connection over io_uring, and the payload buffer
   * each ring entry needs (the kernel's own rule: max(8 KiB, max_write, max_pages pages)).
   */
  ringSettings(): { ioUring: boolean; payloadSize: number } | null {
    if (this.neg === null) return null;
    return { ioUring: (this.neg.flags & FUSE_OVER_IO_URING) !== 0n, payloadSize: Math.max(8192, this.wire.maxRead) };
  }

  /** What INIT settled, for another serving thread's adopt(); null before INIT. */
  negotiatedState(): NegotiatedState | null {
    return this.neg && { minor: this.neg.minor, flags: this.neg.flags, maxReadahead: this.neg.maxReadahead };
  }

  /**
   * Serve a connection whose INIT another thread answered: take over what it settled and tell
   * this server's filesystem, as INIT would have.
   */
  async adopt(n: NegotiatedState): Promise<void> {
    const conn = this.makeConn(n.minor, n.flags);
    await this.fs.init(initOptions(n.flags, conn));
    this.wire = conn;
    this.neg = { major: FUSE_KERNEL_VERSION, minor: n.minor, flags: n.flags, maxWrite: this.opts.maxWrite, maxReadahead: n.maxReadahead };
  }

  private encodeInitOut(r: Request, minor: number, flags: bigint, maxReadahead: number): Buffer {
    const b = allocReply(r.unique, InitOut.SIZE);
    writeStruct(InitOut, b, OutHeader.SIZE, {
      major: FUSE_KERNEL_VERSION,
      minor,
      max_readahead: maxReadahead,
      flags: Number(flags & 0xffff_ffffn),
      max_background: this.opts.maxBackground ?? 0,
      congestion_threshold: this.opts.congestionThreshold ?? 0,
      max_write: this.opts.maxWrite,
      time_gran: this.opts.timeGran ?? 1,
      max_pages: Math.min(MAX_PAGES_LIMIT, Math.ceil(this.opts.maxWrite / PAGE_SIZE)),
      map_alignment: 0,
      flags2: flags & FUSE_INIT_EXT ? Number(flags >> 32n) : 0,
      max_stack_depth: flags & FUSE_PASSTHROUGH ? 1 : 0,
      request_timeout: 0,
    });
    return truncateReply(b, OutHeader.SIZE + initOutSize(minor));
  }

  /** DESTROY: release everything, reply, then let the transport know. A new INIT may follow (virtio-fs). */
  async doDestroy(r: Request): Promise<Buffer> {
    try {
      await this.fs.destroy();
    } catch (e) {
      this.log.error({ err: e }, 'filesystem destroy failed');
    }
    this.neg = null;
    this.interrupted.clear();
    const cb = this.opts.onDestroy;
    if (cb) setImmediate(cb);
    return allocReply(r.unique, 0);
  }

  /**
   * INTERRUPT: remember the unique; if that request later fails it is answered EINTR. Operations
   * are not cancelled (the FileSystem contract has no cancellation), so a blocked SETLKW keeps waiting.
   */
  doInterrupt(r: Request): null {
    if (this.interrupted.size >= MAX_INTERRUPTS) this.interrupted.clear();
    this.interrupted.add(r.buf.readBigUInt64LE(IN + InterruptIn.unique));
    return null;
  }
}

/** What the filesystem is told of the capabilities INIT settled. */
function initOptions(flags: bigint, conn: Conn): InitOptions {
  return {
    writeback: (flags & FUSE_WRITEBACK_CACHE) !== 0n,
    killPrivV2: (flags & FUSE_HANDLE_KILLPRIV_V2) !== 0n,
    passthrough: conn.passthrough,
    submounts: (flags & FUSE_SUBMOUNTS) !== 0n,
  };
}
