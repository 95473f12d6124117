import { sys, withProcFdPath } from '../sys/syscalls.js';
import type { Services } from './services.js';

const POSIX_ACL_DEFAULT = Buffer.from('system.posix_acl_default');

/**
 * The mode a create asks the host for. With FUSE_POSIX_ACL the client leaves the umask to us, and
 * a directory's default ACL overrides it (posix_acl_create): where the directory (O_PATH fd
 * `dirFd`) has one, the mode goes unmasked and the host applies the ACL, as it would for a local
 * create; elsewhere the umask applies. Without FUSE_POSIX_ACL the umask always applies.
 */
export function createMode(s: Services, dirFd: number, mode: number, umask: number): number {
  if (!s.opts.posixAcl || (mode & umask) === 0) return mode & ~umask;
  return withProcFdPath(dirFd, (p) => sys.getxattrTry(p, POSIX_ACL_DEFAULT, null)) > 0 ? mode : mode & ~umask;
}
