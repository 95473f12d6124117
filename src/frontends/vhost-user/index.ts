/**
 * The vhost-user (virtio-fs) frontend: what `handlefs virtiofsd` asks of it, and the listener
 * that serves guests (listener.ts -> connection.ts -> the protocol server).
 */

/** Where the VMM connects: a socket we create and listen on, or one that already listens (libvirt). */
export type VhostListen = { path: string } | { fd: number };

/** The vhost-user side of `handlefs virtiofsd`; the filesystem side is the Config beside it. */
export interface VhostPlan {
  listen: VhostListen;
  /** chgrp the socket (path) to this group, and make it group-accessible; null: leave it */
  socketGroup: string | null;
  /** virtiofsd --thread-pool-size: the libuv pool's threads (blocking I/O); 0 = libuv's default */
  threadPoolSize: number;
  /** set RLIMIT_NOFILE to this before the filesystem is built; null: leave it as it is */
  rlimitNofile: number | null;
  /** end when the VMM disconnects (virtiofsd does); false with --keep-listening: accept the next one */
  exitOnDisconnect: boolean;
  /** virtiofsd --tag: the tag to advertise in the device config space, when the VMM asks for it */
  tag?: string;
}

export { VhostUserListener, inProcessSession, type ListenerOptions, type Session } from './listener.js';
export type { ConnectionEnd, ConnectionOptions, FuseRequestHandler } from './connection.js';
