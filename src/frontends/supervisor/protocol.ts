import type { CoreConfig } from '../../config.js';
import { opcodeRow } from '../../fuse/opcodes.js';

/**
 * Messages between the supervisor (holds /dev/fuse and the mount) and its worker (runs the
 * filesystem and the protocol server). The channel is Node's IPC channel over a socketpair the
 * supervisor creates when it spawns the worker: no socket is listening anywhere, so no other
 * process can connect to it and take over; the worker proves it is the one the supervisor started
 * by holding that inherited end. Buffers travel with the 'advanced' (structured clone) serializer.
 */

/** Supervisor -> worker: everything the worker needs; `key` is the sealing key (never logged). */
export interface StartMsg {
  t: 'start';
  /** what the core and the protocol server are built from (plain data: it crosses the channel as it is) */
  cfg: CoreConfig;
  root: string;
  key: Uint8Array;
  /** keys rotated out but still accepted (grace period) */
  previousKeys: Uint8Array[];
  /** full sealed state from a predecessor that stopped cleanly (upgrade) */
  state: Uint8Array | null;
  /** sealed one-record states streamed by the predecessors (crash recovery) */
  records: Uint8Array[];
  /** the kernel's INIT request, replayed so that the worker's protocol server is initialized */
  init: Uint8Array | null;
  /** a vhost-user worker: how it serves the relayed connection (vhost-worker.ts) */
  vhost?: { requestQueues: number; maxRequestBytes: number; tag?: string };
  /** a worker that reads /dev/fuse itself (devfuse-worker.ts); `successor`: ask the kernel to resend what a predecessor left */
  devfuse?: { successor: boolean };
}

export interface ReqMsg {
  t: 'req';
  id: number;
  buf: Uint8Array;
  /**
   * The requester's supplementary groups, read by the supervisor for an ACCESS request when the
   * worker is sandboxed: the requester's pid is one of the host's, and the worker's /proc shows
   * only its own pid namespace (or, chrooted, there is none). Absent: the worker reads them itself.
   */
  groups?: number[] | null;
}

export interface StateReqMsg {
  t: 'state';
}

export interface StopMsg {
  t: 'stop';
}

/** Stop reading /dev/fuse and answer what was read (devfuse-worker.ts); answered 'drained'. */
export interface DrainMsg {
  t: 'drain';
}

/** A requester's supplementary groups, asked for by a sandboxed worker (GroupsReqMsg). */
export interface GroupsMsg {
  t: 'groups';
  id: number;
  groups: number[] | null;
}

export type ToWorker = StartMsg | ReqMsg | StateReqMsg | StopMsg | DrainMsg | GroupsMsg;

export interface ReadyMsg {
  t: 'ready';
  restored: number;
}

export interface RepMsg {
  t: 'rep';
  id: number;
  buf: Uint8Array | null;
}

export interface RecsMsg {
  t: 'recs';
  recs: Uint8Array[];
}

export interface StateMsg {
  t: 'state';
  blob: Uint8Array;
}

export interface FailMsg {
  t: 'fail';
  message: string;
}

/** The kernel's INIT request, as a worker reading /dev/fuse got it (sent before the reply). */
export interface InitMsg {
  t: 'init';
  buf: Uint8Array;
}

export interface DrainedMsg {
  t: 'drained';
}

/** The worker's /dev/fuse session ended (unmounted, or a read failed). */
export interface EndedMsg {
  t: 'ended';
  reason: 'unmounted' | 'error';
  code?: string;
}

/** A sandboxed worker asks for a requester's groups: its /proc cannot show a host pid. */
export interface GroupsReqMsg {
  t: 'groups?';
  id: number;
  pid: number;
}

export type FromWorker = ReadyMsg | RepMsg | RecsMsg | StateMsg | FailMsg | InitMsg | DrainedMsg | EndedMsg | GroupsReqMsg;

/**
 * A message as it arrives on the channel (Node types it `any`), accepted when its tag is one the
 * direction carries; null otherwise. Only the supervisor and its worker hold the channel, so the
 * fields are the sender's types and are not re-validated one by one.
 */
function accept<M extends { t: string }>(tags: ReadonlyArray<M['t']>): (raw: unknown) => M | null {
  const known: ReadonlySet<string> = new Set(tags);
  return (raw) => {
    const t: unknown = typeof raw === 'object' && raw !== null ? (raw as { t?: unknown }).t : undefined;
    return typeof t === 'string' && known.has(t) ? (raw as M) : null;
  };
}

export const asToWorker = accept<ToWorker>(['start', 'req', 'state', 'stop', 'drain', 'groups']);
export const asFromWorker = accept<FromWorker>(['ready', 'rep', 'recs', 'state', 'fail', 'init', 'drained', 'ended', 'groups?']);

/** A Buffer over the bytes of a message field (no copy). */
export const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

/** Requests the kernel expects no reply to (FORGET, BATCH_FORGET, INTERRUPT): the opcode table says. */
export function noReply(opcode: number): boolean {
  return opcodeRow(opcode)?.noReply ?? false;
}
