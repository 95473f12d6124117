import { E, FsError } from '../errors.js';
import { NAME_MAX } from '../sys/constants.js';

const DOT = 0x2e;
const SLASH = 0x2f;

/** '.' or '..' */
export function isDotName(name: Buffer): boolean {
  return (name.length === 1 && name[0] === DOT) || (name.length === 2 && name[0] === DOT && name[1] === DOT);
}

/**
 * The one place that checks a client-supplied name: a single path component, non-empty, no '/',
 * no NUL, at most NAME_MAX bytes. '.' and '..' are refused unless `allowDots` (lookup handles them
 * explicitly). Every *at() syscall of the server takes a name that passed here.
 */
export function checkName(name: Buffer, allowDots = false): void {
  if (!Buffer.isBuffer(name) || name.length === 0) throw new FsError(E.EINVAL, 'empty name');
  if (name.length > NAME_MAX) throw new FsError(E.ENAMETOOLONG, 'name longer than 255 bytes');
  if (name.indexOf(SLASH) >= 0) throw new FsError(E.EINVAL, "name contains '/'");
  if (name.indexOf(0) >= 0) throw new FsError(E.EINVAL, 'name contains NUL');
  if (!allowDots && isDotName(name)) throw new FsError(E.EINVAL, "'.' or '..' not allowed here");
}
