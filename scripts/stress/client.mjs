/**
 * A client process of scripts/stress-fds: plain synchronous syscalls on the mount, bounded work,
 * a deadline. Usage: node client.mjs JOB.json. The job names the phase and its share of the work.
 * Output on stdout, one line each: "P <ops done>" (progress, about every 250 ms), "OPENED" (hold
 * phase: every file is open), and last "R <json result>".
 * Errors never throw out: each is recorded as { i, op, code, msg } and the work goes on.
 */
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { constants } from 'node:os';
import { content } from './content.mjs';

const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const deadline = Date.now() + job.timeoutMs;
let ops = 0;
let lastProgress = 0;
const errors = [];
const corrupt = [];
let corruptCount = 0;
const MAX_REPORT = 200;

function progress(force = false) {
  const now = Date.now();
  if (force || now - lastProgress > 250) {
    lastProgress = now;
    fs.writeSync(1, `P ${ops}\n`);
  }
}
/** errno name: node has no name for some (ESTALE is "Unknown system error -116") */
const ERRNO_NAMES = new Map(Object.entries(constants.errno).map(([k, v]) => [v, k]));
function errName(e) {
  // libuv reports an errno it has no name for as code 'UNKNOWN' (writeSync) or
  // 'Unknown system error -116' (readSync); the errno itself is right
  if (typeof e?.errno === 'number' && e.errno < 0 && ERRNO_NAMES.has(-e.errno)) return ERRNO_NAMES.get(-e.errno);
  return typeof e?.code === 'string' ? e.code : 'EUNKNOWN';
}
function fail(i, op, e) {
  // every error is returned (the caller classifies expected ESTALE by file); messages only for some
  const code = errName(e);
  errors.push(errors.length < MAX_REPORT ? { i, op, code, msg: String(e?.message ?? e).slice(0, 160) } : { i, op, code });
}
function badData(i, op, why) {
  corruptCount++;
  if (corrupt.length < MAX_REPORT) corrupt.push({ i, op, why });
}
const timedOut = () => Date.now() > deadline;

/** pseudo-random, seeded per worker so a run can be replayed */
let seed = (job.seed ?? 1) >>> 0 || 1;
function rnd() {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 4294967296;
}

function readAll(fd, size) {
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

function statPhase() {
  // job.files: [[i, relpath, size]], job.dirs: [[relpath, count]]
  for (const [rel, count] of job.dirs) {
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
  for (const [i, rel, size] of job.files) {
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

function readPhase() {
  // job.files: [[i, relpath, version]] compared with content(i, version)
  for (const [i, rel, v] of job.files) {
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
      if (fd >= 0) try { fs.closeSync(fd); } catch (e) { fail(i, 'close', e); }
    }
    progress();
  }
}

function verifyPhase() {
  // job.files: [[i, relpath, sha256hex, size]]: bytes read through the mount must hash the same
  for (const [i, rel, sha, size] of job.files) {
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
      if (fd >= 0) try { fs.closeSync(fd); } catch (e) { fail(i, 'close', e); }
    }
    progress();
  }
}

/**
 * Hold every file of job.files open at once ([i, relpath, 'rw'|'ro']) and, until job.holdMs has
 * passed, read (and compare with the model) or patch (rw files only) a random one. A file whose
 * operation fails is dropped from the rotation (its model stays what the host should hold).
 * Returns the patches, in order, so that the caller can compute each file's final bytes.
 */
function holdPhase() {
  const held = [];
  for (const [i, rel, mode] of job.files) {
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
  const patches = [];
  const holdEnd = Math.min(deadline, Date.now() + job.holdMs);
  let reads = 0;
  let writes = 0;
  let live = held.length;
  while (Date.now() < holdEnd && live > 0) {
    const h = held[Math.floor(rnd() * held.length)];
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
  for (const h of held) {
    try {
      fs.closeSync(h.fd);
    } catch (e) {
      fail(h.i, 'close', e);
    }
  }
  return { patches, held: held.length, reads, writes };
}

const t0 = Date.now();
let extra = {};
switch (job.phase) {
  case 'stat': statPhase(); break;
  case 'read': readPhase(); break;
  case 'verify': verifyPhase(); break;
  case 'hold': extra = holdPhase(); break;
  default: throw new Error(`unknown phase ${job.phase}`);
}
progress(true);
const result = { phase: job.phase, ops, ms: Date.now() - t0, timedOut: timedOut(), errors, corrupt, corruptCount, ...extra };
fs.writeSync(1, `R ${JSON.stringify(result)}\n`);
