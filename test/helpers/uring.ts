/** FUSE over io_uring's kernel switch for the tests (tools/lib/uring.ts). */
import { uringUnavailable } from '../../tools/lib/uring.js';

export { ENABLE_URING, uringParam, withUringParam } from '../../tools/lib/uring.js';

/** Why FUSE over io_uring cannot be tested here, or null. */
export const uringSkipReason = uringUnavailable;
