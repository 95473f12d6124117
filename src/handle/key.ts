import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { KEY_LEN } from './seal.js';

/** A fresh random key for this process only (handles die with the process). */
export function ephemeralKey(): Buffer {
  return randomBytes(KEY_LEN);
}

/** A key problem the operator must fix: one line, no key material in it. */
export class KeyFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyFileError';
  }
}

/**
 * Load the persistent key from `path`, or create it (mode 0600, O_EXCL) when absent.
 * Refused: a symlink, a non-regular file, a file that group or others can read or write, a file
 * owned by another user, a file of the wrong size. The key is never logged.
 */
export function loadOrCreateKey(path: string): Buffer {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new KeyFileError(`cannot stat key file ${path}: ${(e as Error).message}`);
    return createKey(path);
  }
  if (st.isSymbolicLink()) throw new KeyFileError(`key file ${path} is a symlink; give the real path`);
  if (!st.isFile()) throw new KeyFileError(`key file ${path} is not a regular file`);
  if (st.mode & 0o077) throw new KeyFileError(`key file ${path} is accessible by group or others (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 ${path}`);
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
    throw new KeyFileError(`key file ${path} belongs to uid ${st.uid}, not to this process`);
  }
  const fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  try {
    const buf = Buffer.alloc(KEY_LEN + 1);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    if (n !== KEY_LEN) throw new KeyFileError(`key file ${path} must hold exactly ${KEY_LEN} bytes, it holds ${n === KEY_LEN + 1 ? 'more' : n}`);
    return buf.subarray(0, KEY_LEN);
  } finally {
    fs.closeSync(fd);
  }
}

function createKey(path: string): Buffer {
  const key = randomBytes(KEY_LEN);
  let fd: number;
  try {
    fd = fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateKey(path); // lost a race: use the winner's key
    throw new KeyFileError(`cannot create key file ${path}: ${(e as Error).message}`);
  }
  try {
    fs.fchmodSync(fd, 0o600); // umask could not widen it, but be explicit
    fs.writeSync(fd, key);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return key;
}
