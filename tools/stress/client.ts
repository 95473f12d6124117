/**
 * A client process of the stress tool (tools/stress-fds.ts): plain synchronous syscalls on the
 * mount, bounded work, a deadline. Usage: node dist-tools/stress/client.js JOB.json; the job
 * (./job.ts) names the phase and its share of the work. Output on stdout, one line each:
 * "P <ops done>" (progress, about every 250 ms), "OPENED" (hold phase: every file is open), and
 * last "R <json result>". Errors never throw out: each is recorded as { i, op, code, msg } and the
 * work goes on.
 */
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { constants } from 'node:os';
import { content } from './content.js';
import type { ClientError, ClientResult, Corrupt, Job, PhaseWork } from './job.js';

if (process.argv.length !== 3) {
  process.stderr.write('usage: node client.js JOB.json (started by the stress tool)\n');
  process.exit(2);
}
const job = JSON.parse(fs.readFileSync(process.argv[2]!, 'utf8')) as Job;
const deadline = Date.now() + job.timeoutMs;
let ops = 0;
let lastProgress = 0;
const errors: ClientError[] = [];
const corrupt: Corrupt[] = [];
let corruptCount = 0;
const MAX_REPORT = 200;

function progress(force = false): void {
  const now = Date.now();
  if (force || now - lastProgress > 250) {
    lastProgress = now;
    fs.writeSync(1, `P ${ops}\n`);
  }
}
/** errno name: node has no name for some (ESTALE is "Unknown system error -116") */
const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([k, v]) => [v, k]));
function errName(e: unknown): string {
  const err = e as NodeJS.ErrnoException | undefined;
  // libuv reports an errno it has no name for as code 'UNKNOWN' (writeSync) or
  // 'Unknown system error -116' (readSync); the errno itself is right
  if (typeof err?.errno === 'number' && err.errno < 0 && ERRNO_NAMES.has(-err.errno)) return ERRNO_NAMES.get(-err.errno)!;
  return typeof err?.code === 'string' ? err.code : 'EUNKNOWN';
}
function fail(i: number, op: string, e: unknown): void {
  // every error is returned (the caller classifies expected ESTALE by file); messages only for some
  const code = errName(e);
  errors.push(errors.length < MAX_REPORT ? { i, op, code, msg: String((e as Error)?.message ?? e).slice(0, 160) } : { i, op, code });
}
function badData(i: number, op: string, why: string): void {
  corruptCount++;
  if (corrupt.length < MAX_REPORT) corrupt.push({ i, op, why });
}
const timedOut = (): boolean => Date.now() > deadline;

/** pseudo-random, seeded per worker so a run can be replayed */
let seed = (job.seed ?? 1) >>> 0 || 1;
function rnd(): number {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 4294967296;
}

function readAll(fd: number, size: number): Buffer {
  // one byte more than expected, to see a file that grew
  const buf = Buffer.alloc(size + 1);
  let n = 0;
  for (;;) {
    const r = fs.readSync(fd, buf, n, buf.length - n, n);
    if (r === 0) break;
    n += r;
    if (n === buf.length) break;
  }
  return buf.subarray(0, n);
}

function closeQuietly(i: number, fd: number): void {
  if (fd < 0) return;
  try {
    fs.closeSync(fd);
  } catch (e) {
    fail(i, 'close', e);
  }
}

function statPhase(w: PhaseWork['stat']): void {
  for (const [rel, count] of w.dirs) {
    if (timedOut()) break;
    try {
      const names = fs.readdirSync(`${job.mnt}/${rel}`);
      ops++;
      if (names.length !== count) badData(-1, 'readdir', `${rel}: ${names.length} entries, expected ${count}`);
    } catch (e) {
      fail(-1, `readdir ${rel}`, e);
    }
    progress();
  }
  for (const [i, rel, size] of w.files) {
    if (timedOut()) break;
    try {
      const st = fs.lstatSync(`${job.mnt}/${rel}`);
      ops++;
      if (!st.isFile() || st.size !== size) badData(i, 'stat', `${rel}: type/size ${st.mode.toString(8)}/${st.size}, expected file/${size}`);
    } catch (e) {
      fail(i, 'stat', e);
    }
    progress();
  }
}

function readPhase(w: PhaseWork['read']): void {
  for (const [i, rel, v] of w.files) {
    if (timedOut()) break;
    let fd = -1;
    try {
      fd = fs.openSync(`${job.mnt}/${rel}`, 'r');
      const want = content(i, v);
      const got = readAll(fd, want.length);
      ops++;
      if (!got.equals(want)) badData(i, 'read', `${rel}: content differs (${got.length} bytes, expected ${want.length})`);
    } catch (e) {
      fail(i, 'read', e);
    } finally {
      closeQuietly(i, fd);
    }
    progress();
  }
}

function verifyPhase(w: PhaseWork['verify']): void {
  // bytes read through the mount must hash the same as the host's
  for (const [i, rel, sha, size] of w.files) {
    if (timedOut()) break;
    let fd = -1;
    try {
      fd = fs.openSync(`${job.mnt}/${rel}`, 'r');
      const got = readAll(fd, size);
      ops++;
      const h = createHash('sha256').update(got).digest('hex');
      if (h !== sha) badData(i, 'verify', `${rel}: mount bytes (${got.length}) differ from the host's (${size})`);
    } catch (e) {
      fail(i, 'verify', e);
    } finally {
      closeQuietly(i, fd);
    }
    progress();
  }
}

interface Held {
  i: number;
  fd: number;
  mode: 'rw' | 'ro';
  model: Buffer;
  dead: boolean;
}

/**
 * Hold every file open at once and, until holdMs has passed, read (and compare with the model) or
 * patch (rw files only) a random one. A file whose operation fails is dropped from the rotation
 * (its model stays what the host should hold). Returns the patches, in order, so that the caller
 * can compute each file's final bytes.
 */
function holdPhase(w: PhaseWork['hold']): Pick<ClientResult, 'patches' | 'held' | 'reads' | 'writes'> {
  const held: Held[] = [];
  for (const [i, rel, mode] of w.files) {
    if (timedOut()) break;
    try {
      const fd = fs.openSync(`${job.mnt}/${rel}`, mode === 'rw' ? 'r+' : 'r');
      held.push({ i, fd, mode, model: content(i, 0), dead: false });
      ops++;
    } catch (e) {
      fail(i, 'open', e);
    }
    progress();
  }
  fs.writeSync(1, 'OPENED\n');
  const patches: [number, number, string][] = [];
  const holdEnd = Math.min(deadline, Date.now() + w.holdMs);
  let reads = 0;
  let writes = 0;
  let live = held.length;
  while (Date.now() < holdEnd && live > 0) {
    const h = held[Math.floor(rnd() * held.length)]!;
    if (h.dead) continue;
    if (h.mode === 'rw' && rnd() < 0.5) {
      const len = 1 + Math.floor(rnd() * 64);
      const off = Math.floor(rnd() * (h.model.length - len));
      const data = Buffer.alloc(len);
      for (let k = 0; k < len; k++) data[k] = Math.floor(rnd() * 256);
      try {
        const n = fs.writeSync(h.fd, data, 0, len, off);
        ops++;
        writes++;
        if (n !== len) badData(h.i, 'write', `short write ${n}/${len}`);
        else {
          data.copy(h.model, off);
          patches.push([h.i, off, data.toString('base64')]);
        }
      } catch (e) {
        fail(h.i, 'write', e);
        h.dead = true;
        live--;
      }
    } else {
      try {
        const got = readAll(h.fd, h.model.length);
        ops++;
        reads++;
        if (!got.equals(h.model)) {
          let why = `content differs (${got.length} bytes, expected ${h.model.length})`;
          for (let v = 1; v <= 3; v++) if (got.equals(content(h.i, v))) why = `read the host's replacement (v${v}) through an fd opened on the original: wrong file`;
          badData(h.i, 'read', why);
          h.dead = true;
          live--;
        }
      } catch (e) {
        fail(h.i, 'read', e);
        h.dead = true;
        live--;
      }
    }
    progress();
  }
  for (const h of held) closeQuietly(h.i, h.fd);
  return { patches, held: held.length, reads, writes };
}

const t0 = Date.now();
let extra: Partial<ClientResult> = {};
switch (job.phase) {
  case 'stat': statPhase(job); break;
  case 'read': readPhase(job); break;
  case 'verify': verifyPhase(job); break;
  case 'hold': extra = holdPhase(job); break;
  default: throw new Error(`unknown phase ${(job as { phase: unknown }).phase}`);
}
progress(true);
const result: ClientResult = { phase: job.phase, ops, ms: Date.now() - t0, timedOut: timedOut(), errors, corrupt, corruptCount, ...extra };
fs.writeSync(1, `R ${JSON.stringify(result)}\n`);
