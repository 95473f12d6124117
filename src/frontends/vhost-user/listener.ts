/**
 * The listening side of the vhost-user back-end: a socket at a path (virtiofsd's --socket-path) or
 * one already listening that the caller passes (--fd, as libvirt does). One VMM is served at a
 * time, as virtiofsd does: a second connection waits in the backlog until the first ends. Each
 * connection gets a protocol server of its own (a new guest driver starts with INIT and knows no
 * node id of a predecessor's).
 */
import * as fs from 'node:fs';
import type { Logger } from 'pino';
import { sys } from '../../sys/syscalls.js';
import type { VhostListen } from './index.js';
import { VhostUserConnection, type ConnectionEnd, type ConnectionOptions, type FuseRequestHandler } from './connection.js';


/**
 * What serves one VMM connection: a VhostUserConnection in this process, or a supervisor whose
 * workers serve it (src/frontends/supervisor/vhost-supervisor.ts).
 */
export interface Session {
  readonly done: Promise<ConnectionEnd>;
  close(): void;
  counters(): Record<string, unknown>;
  /** once done: release what serving held (the filesystem core) */
  release(): Promise<void>;
  /** SIGHUP: hand the connection to a worker on the code on disk */
  upgrade?(): Promise<void>;
}

/** A session of a VhostUserConnection over `handler`, in this process. */
export function inProcessSession(fd: number, handler: FuseRequestHandler, opts: ConnectionOptions, log: Logger,
  extra: { counters(): Record<string, unknown>; release(): Promise<void> }): Session {
  const conn = new VhostUserConnection(fd, handler, opts, log);
  conn.start();
  return { done: conn.done, close: () => conn.close(), counters: () => ({ ...conn.counters, ...extra.counters() }), release: extra.release };
}

export interface ListenerOptions {
  listen: VhostListen;
  /** stop after the first connection ends (virtiofsd's behaviour); otherwise wait for the next */
  exitOnDisconnect: boolean;
  /** the socket file's group (virtiofsd --socket-group), by gid */
  socketGid: number | null;
}

export class VhostUserListener {
  private readonly fd: number;
  private readonly ownPath: string | null;
  private poll: unknown = null;
  private current: Session | null = null;
  private stopped = false;
  private resolveDone: (end: ConnectionEnd) => void = () => {};
  /** resolves when serving is over: the one connection ended (exitOnDisconnect) or stop() */
  readonly done: Promise<ConnectionEnd>;
  private connectedOnce: () => void = () => {};
  /** resolves when the first VMM has connected */
  readonly connected = new Promise<void>((r) => (this.connectedOnce = r));
  connections = 0;

  constructor(
    private readonly opts: ListenerOptions,
    private readonly newSession: (fd: number) => Promise<Session>,
    private readonly log: Logger,
  ) {
    this.done = new Promise((r) => (this.resolveDone = r));
    if ('fd' in opts.listen) {
      this.fd = opts.listen.fd;
      this.ownPath = null;
      sys.fcntlInt(this.fd, 4 /* F_SETFL */, sys.fcntlInt(this.fd, 3 /* F_GETFL */, 0) | 0o4000 /* O_NONBLOCK */);
    } else {
      const p = opts.listen.path;
      // a socket file left by a server that died is replaced; anything else at the path is an error
      let st: fs.Stats | null = null;
      try {
        st = fs.lstatSync(p);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot use the socket path ${p} (${(e as NodeJS.ErrnoException).code})`);
      }
      if (st && !st.isSocket()) throw new Error(`${p} exists and is not a socket; remove it or choose another --socket-path`);
      if (st) fs.unlinkSync(p);
      try {
        this.fd = sys.unixListen(p, 1);
      } catch (e) {
        throw new Error(`cannot listen on ${p} (${(e as { code?: string }).code ?? 'error'})`);
      }
      this.ownPath = p;
      // only the owner (and the --socket-group) may connect: a connection controls the share
      fs.chmodSync(p, opts.socketGid === null ? 0o600 : 0o660);
      if (opts.socketGid !== null) fs.chownSync(p, process.getuid?.() ?? 0, opts.socketGid);
    }
  }

  get socketPath(): string | null {
    return this.ownPath;
  }

  start(): void {
    this.poll = sys.pollStart(this.fd, () => this.accept());
  }

  /** The connection's counters; between connections (and at exit), the last one's as it ended. */
  counters(): Record<string, unknown> {
    return { connections: this.connections, ...(this.current?.counters() ?? this.last) };
  }

  private last: Record<string, unknown> = {};

  private accept(): void {
    if (this.current || this.stopped) return;
    let c: number;
    try {
      c = sys.acceptNonblock(this.fd);
    } catch (e) {
      this.log.warn({ err: e }, 'vhost-user: accept failed');
      return;
    }
    if (c < 0) return;
    // one VMM at a time: the next one waits in the backlog
    if (this.poll) sys.pollStop(this.poll);
    this.poll = null;
    this.connections++;
    void this.serve(c);
  }

  private async serve(fd: number): Promise<void> {
    let session: Session;
    try {
      session = await this.newSession(fd);
    } catch (e) {
      try {
        sys.close(fd);
      } catch {
        /* closed by the failed session */
      }
      this.log.error({ err: e }, 'vhost-user: cannot serve a connection');
      this.finish({ reason: 'error', message: (e as Error).message });
      return;
    }
    this.current = session;
    this.log.info('vhost-user: the VMM connected');
    this.connectedOnce();
    const end = await session.done;
    this.last = session.counters();
    this.log.info({ end: end.reason, ...(end.reason === 'error' ? { why: end.message } : {}) }, 'vhost-user: the VMM disconnected');
    this.current = null;
    await session.release().catch((e: unknown) => this.log.warn({ err: e }, 'vhost-user: releasing the filesystem failed'));
    if (this.opts.exitOnDisconnect || this.stopped) this.finish(end);
    else if (!this.poll) this.start();
  }

  /** SIGHUP: the connection being served moves to a fresh worker (supervised sessions only). */
  async upgrade(): Promise<boolean> {
    if (!this.current?.upgrade) return false;
    await this.current.upgrade();
    return true;
  }

  /** Stop serving: the connection (if any) is closed, the listening socket too. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.current) this.current.close();
    else this.finish({ reason: 'closed' });
  }

  private finish(end: ConnectionEnd): void {
    this.stopped = true;
    if (this.poll) sys.pollStop(this.poll);
    this.poll = null;
    try {
      sys.close(this.fd);
    } catch {
      /* closed */
    }
    if (this.ownPath) fs.rmSync(this.ownPath, { force: true });
    this.resolveDone(end);
  }
}
