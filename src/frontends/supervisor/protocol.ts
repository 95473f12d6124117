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
  /** the Config, as plain data */
  cfg: Record<string, unknown>;
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
}

export interface ReqMsg {
  t: 'req';
  id: number;
  buf: Uint8Array;
}

export interface StateReqMsg {
  t: 'state';
}

export interface StopMsg {
  t: 'stop';
}

export type ToWorker = StartMsg | ReqMsg | StateReqMsg | StopMsg;

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

export type FromWorker = ReadyMsg | RepMsg | RecsMsg | StateMsg | FailMsg;

/** Offsets in fuse_in_header (fuse_kernel.h). */
export const IN_LEN = 0;
export const IN_OPCODE = 4;
export const IN_UNIQUE = 8;
export const FUSE_INIT = 26;
export const FUSE_FORGET = 2;
export const FUSE_INTERRUPT = 36;
export const FUSE_BATCH_FORGET = 42;

/** fuse_out_header with an error and no payload. */
export function errorReply(unique: bigint, errno: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(16, 0);
  b.writeInt32LE(-errno, 4);
  b.writeBigUInt64LE(unique, 8);
  return b;
}

/** Requests the kernel expects no reply to. */
export function noReply(opcode: number): boolean {
  return opcode === FUSE_FORGET || opcode === FUSE_BATCH_FORGET || opcode === FUSE_INTERRUPT;
}
