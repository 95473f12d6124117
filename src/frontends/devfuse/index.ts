export { DevFuseSession, keepPolling, type RequestHandler, type SessionEnd } from './session.js';
export { backingRegistry, findMount, FuseMount, mountData, mountFuse, MountError, openDevFuse, DEV_FUSE, type MountInfoEntry, type MountRequest } from './mount.js';
export { NotifyWriter, notifyResend, type NotifyCounters } from './notify-writer.js';
export { ServingThreads, type ThreadData } from './threads.js';
export { possibleCpus, ringAnswers, ringUnavailable, RingSession, RING_DEPTH, type RingRequests } from './ring.js';
