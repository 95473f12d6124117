/**
 * Helpers of the POSIX case table (test/posix/cases.ts): what Node's fs lacks is done by a short
 * python3 script in a child process, so every case uses only ordinary syscalls on a directory and
 * can run unchanged against a plain directory or a FUSE mount of it.
 */
import { output, runSync } from '../helpers/child.js';

/** The real interpreter (a pyenv shim costs ~100 ms per call). */
export const PYTHON: string = runSync('python3', ['-c', 'import sys; print(sys.executable)']).stdout.trim() || 'python3';

/**
 * Prelude of every script: `out(x)` prints the JSON answer, `err(fn)` runs fn and returns the errno
 * name it failed with ('OK' when it did not), `libc` is ctypes' libc with errno kept, `args` are
 * the arguments (paths), `bpath(s)` turns a hex argument into a bytes path.
 */
const PRELUDE = `
import os, sys, json, errno, ctypes, ctypes.util, stat
libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
args = sys.argv[1:]
def out(x): print(json.dumps(x))
def err(fn):
    try:
        fn()
        return 'OK'
    except OSError as e:
        # one name per number (ENOTSUP is EOPNOTSUPP, EWOULDBLOCK is EAGAIN on Linux)
        if e.errno == errno.EOPNOTSUPP: return 'EOPNOTSUPP'
        return errno.errorcode.get(e.errno, str(e.errno))
def bpath(h): return bytes.fromhex(h)
AT_FDCWD = -100
def renameat2(a, b, flags):
    check(libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), ctypes.c_uint(flags)))
def child(fn):
    # run fn() in a forked process (another pid, another lock owner); returns what it returned (a str)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            res = str(fn())
        except BaseException as e:
            res = 'EXC ' + repr(e)
        os.write(w, res.encode())
        os._exit(0)
    os.close(w)
    data = b''
    while True:
        b = os.read(r, 4096)
        if not b: break
        data += b
    os.close(r)
    os.waitpid(pid, 0)
    return data.decode()
def check(rc):
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return rc
`;

/** Run a python3 script (with PRELUDE) and return the JSON it printed last with out(), or null. */
export async function py<T = unknown>(script: string, ...args: string[]): Promise<T> {
  const stdout = await output(PYTHON, ['-c', PRELUDE + dedent(script), ...args], { timeoutMs: 30_000 });
  const lines = stdout.trim().split('\n').filter(Boolean);
  return (lines.length ? JSON.parse(lines[lines.length - 1]!) : null) as T;
}

function dedent(s: string): string {
  const lines = s.replace(/^\n/, '').split('\n');
  const ind = Math.min(...lines.filter((l) => l.trim()).map((l) => l.match(/^ */)![0].length));
  return lines.map((l) => l.slice(ind)).join('\n');
}

export const hex = (b: Buffer | string): string => Buffer.from(b).toString('hex');
