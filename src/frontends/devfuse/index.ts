export { DevFuseSession, poolSize, POOL_HEADROOM, type ReaderKind, type RequestHandler, type SessionEnd, type SessionOptions } from './session.js';
export { backingRegistry, findMount, FuseMount, mountData, mountFuse, MountError, openDevFuse, DEV_FUSE, type MountInfoEntry, type MountRequest } from './mount.js';
