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

/** Most keys a key file holds: the current one and up to 7 previous ones still accepted. */
const MAX_KEYS = 8;

/**
 * The keys of a key file, created (one key, mode 0600, O_EXCL) when absent: the first seals, every
 * one verifies. A key file is 32-byte keys one after another, newest first. `rotateKeyFile` puts a
 * new key in front and keeps `keep` previous ones: handles sealed under a previous key stay valid
 * until that key is rotated out (the grace period, counted in rotations). Refused: a symlink, a
 * non-regular file, a file that group or others can read or write, a file owned by another user,
 * a file of the wrong size. The keys are never logged.
 */
export function loadOrCreateKeys(path: string): Buffer[] {
  const all = readKeyFile(path, true);
  const keys: Buffer[] = [];
  for (let o = 0; o < all.length; o += KEY_LEN) keys.push(all.subarray(o, o + KEY_LEN));
  return keys;
}

/** Prepend a fresh key, keep `keep` previous ones, replace the file atomically (0600). Returns the count. */
export function rotateKeyFile(path: string, keep = 1): number {
  if (!Number.isInteger(keep) || keep < 0 || keep > MAX_KEYS - 1) throw new KeyFileError(`--keep must be between 0 and ${MAX_KEYS - 1}`);
  const old = loadOrCreateKeys(path);
  const keys = [randomBytes(KEY_LEN), ...old.slice(0, keep)];
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
  try {
    fs.fchmodSync(fd, 0o600);
    fs.writeSync(fd, Buffer.concat(keys));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, path);
  return keys.length;
}

function readKeyFile(path: string, create: boolean): Buffer {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || !create) throw new KeyFileError(`cannot stat key file ${path}: ${(e as Error).message}`);
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
    const buf = Buffer.alloc(KEY_LEN * MAX_KEYS + 1);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    if (n === 0 || n % KEY_LEN !== 0 || n > KEY_LEN * MAX_KEYS) {
      throw new KeyFileError(`key file ${path} must hold 1 to ${MAX_KEYS} keys of exactly ${KEY_LEN} bytes, it holds ${n > KEY_LEN * MAX_KEYS ? 'more' : n} bytes`);
    }
    return buf.subarray(0, n);
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
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return readKeyFile(path, false); // lost a race: use the winner's key
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
