/**
 * What serving threads buy a virtio-fs guest that spreads its requests over request queues: the
 * fake VMM of test/helpers/fake-vmm.ts (the guest's driver, event-driven: it re-posts a chain when
 * its reply comes and kicks once per batch) keeps the same number of requests in flight against
 * `handlefs virtiofsd --threads 1` (all on one request queue) and `--threads 2` (half on each of
 * two), side by side, rounds alternated. Wall time and the server's CPU per request, per workload.
 * Not a test (no timing is asserted): run by `scripts/bench-vqueues`, which writes
 * bench/virtio-queues.json. The client runs on the same machine and takes CPU the server's threads
 * would have: read the ratios as what they are on this machine.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { expect, it } from 'vitest';
import { GetattrIn, OutHeader, encodeStruct } from '../../src/fuse/abi.js';
import { E } from '../../src/errors.js';
import { cstr } from '../../src/fuse/codec.js';
import { Op } from '../../src/fuse/opcodes.js';
import { sys } from '../../src/sys/syscalls.js';
import { CLI, REPO } from '../helpers/mount.js';
import { connectWhenListening, type FakeVmm, sleep } from '../helpers/fake-vmm.js';
import { GUARD } from '../helpers/vhost-fake-driver.js';
import { initReq, ok, outErr, req } from '../helpers/vhost-requests.js';

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 100_000);
/**
 * requests per workload before the measured ones: each serving thread is an isolate of its own
 * whose code V8 compiles apart, so a short warm-up measures the threads' JIT (with 2,000, two
 * threads looked 1.25x slower on GETATTR where, warm, they take 0.80x the time)
 */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 20_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/** requests in flight in all */
const DEPTH = Number(process.env.BENCH_DEPTH ?? 16);
const TICK_US = 1e6 / 100;

/** Each workload's request and the error its reply must carry. */
const WORKLOADS: Record<string, { make: () => Buffer; errno: number }> = {
  // answered on the queue's own thread (a published inode)
  getattr: { make: () => req(Op.GETATTR, 1n, encodeStruct(GetattrIn, { getattr_flags: 0, dummy: 0, fh: 0n })), errno: 0 },
  // answered there too, with the proof of place behind a negative answer
  'lookup-absent': { make: () => req(Op.LOOKUP, 1n, cstr('absent')), errno: -E.ENOENT },
  // handed to the owner by every other thread
  statfs: { make: () => req(Op.STATFS, 1n), errno: 0 },
};

const cpuTicks = (pid: number): number => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);
};

async function server(threads: number, share: string, dir: string): Promise<{ child: ChildProcess; vmm: FakeVmm }> {
  const sock = join(dir, `s${threads}.sock`);
  fs.rmSync(sock, { force: true });
  const child = spawn(process.execPath, [CLI, 'virtiofsd', `--socket-path=${sock}`, `--shared-dir=${share}`, `--threads=${threads}`], { stdio: 'ignore' });
  const vmm = await connectWhenListening(sock, undefined, { requestQueues: threads });
  await vmm.handshake({ num: 64 });
  await ok(vmm, initReq(), 4096, { queue: 1 });
  await sleep(300);
  return { child, vmm };
}

/** `total` requests made by `make`, DEPTH in flight spread over the queues; resolves with ms. */
function drive(vmm: FakeVmm, queues: number[], w: { make: () => Buffer; errno: number }, total: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let posted = 0;
    let done = 0;
    const polls: unknown[] = [];
    const t0 = performance.now();
    const perQueue = DEPTH / queues.length;
    // bounded: a server that stops answering ends the round with what was seen
    const late = setTimeout(() => {
      for (const p of polls) sys.pollStop(p);
      reject(new Error(`${done} of ${total} replies after 60 s (${posted} posted)`));
    }, 60_000);
    for (const q of queues) {
      const d = vmm.driverOf(q);
      // the slots: each a chain (request, reply space) written once and posted again when answered
      const slots = Array.from({ length: perQueue }, () => {
        const r = w.make();
        const at = d.alloc(r.length);
        vmm.guest.write(at, r);
        const out = d.alloc(256 + 2 * GUARD) + GUARD;
        return { head: d.chain([{ gpa: at, len: r.length }, { gpa: out, len: 256, write: true }]), out };
      });
      const byHead = new Map(slots.map((s) => [s.head, s]));
      for (const s of slots) {
        d.post(s.head);
        posted++;
      }
      d.setUsedEvent(d.usedSeen);
      sys.eventfdWrite(vmm.kick[q]!, 1);
      polls.push(sys.pollStart(vmm.call[q]!, () => {
        sys.eventfdRead(vmm.call[q]!);
        let again = 0;
        // as a guest's driver does: after publishing how far it read (used_event), it looks once
        // more, since the server may have added entries in between and will not signal for them
        for (let used = d.takeUsed(); used.length > 0; used = d.takeUsed()) {
          for (const [head, len] of used) {
            done++;
            const s = byHead.get(head);
            if (s === undefined || len < OutHeader.SIZE || outErr(vmm.guest.read(s.out, OutHeader.SIZE)) !== w.errno) {
              clearTimeout(late);
              for (const p of polls) sys.pollStop(p);
              reject(new Error(`a bad reply: head ${head}, ${len} bytes`));
              return;
            }
            if (posted < total) {
              d.post(head);
              posted++;
              again++;
            }
          }
          d.setUsedEvent(d.usedSeen);
        }
        if (again > 0) sys.eventfdWrite(vmm.kick[q]!, 1);
        if (done >= total) {
          clearTimeout(late);
          for (const p of polls) sys.pollStop(p);
          resolve(performance.now() - t0);
        }
      }));
    }
  });
}

it('virtio-fs request queues on serving threads, side by side', async () => {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'hfs-vq-bench-'));
  const share = join(dir, 'share');
  fs.mkdirSync(share);
  const results: Record<string, Record<string, { ms: number[]; cpuUsPerRequest: number[] }>> = {};
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // alternate which configuration goes first
      for (const threads of round % 2 === 0 ? [1, 2] : [2, 1]) {
        const { child, vmm } = await server(threads, share, dir);
        try {
          for (const [name, w] of Object.entries(WORKLOADS)) {
            const queues = threads === 1 ? [1] : [1, 2];
            await drive(vmm, queues, w, WARMUP);
            const before = cpuTicks(child.pid!);
            const ms = await drive(vmm, queues, w, REQUESTS);
            const cpu = (cpuTicks(child.pid!) - before) * TICK_US / REQUESTS;
            const r = ((results[name] ??= {})[`threads ${threads}`] ??= { ms: [], cpuUsPerRequest: [] });
            r.ms.push(Math.round(ms));
            r.cpuUsPerRequest.push(Math.round(cpu * 10) / 10);
          }
        } finally {
          vmm.release();
          child.kill('SIGKILL');
          await new Promise((r) => child.once('exit', r));
        }
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
  const lines = [`${REQUESTS} requests per round after ${WARMUP} to warm up, ${DEPTH} in flight, ${ROUNDS} rounds (medians); ${os.cpus().length} CPUs, ${os.cpus()[0]?.model}`];
  for (const [name, r] of Object.entries(results)) {
    const one = r['threads 1']!;
    const two = r['threads 2']!;
    lines.push(`${name}: one queue ${median(one.ms)} ms (${median(one.cpuUsPerRequest)} us CPU/request), two queues on two threads ${median(two.ms)} ms (${median(two.cpuUsPerRequest)} us), time ratio ${(median(two.ms) / median(one.ms)).toFixed(2)}`);
  }
  console.log(lines.join('\n'));
  fs.mkdirSync(join(REPO, 'bench'), { recursive: true });
  fs.writeFileSync(join(REPO, 'bench', 'virtio-queues.json'), JSON.stringify({ time: new Date().toISOString(), requests: REQUESTS, warmup: WARMUP, depth: DEPTH, rounds: ROUNDS, cpus: os.cpus().length, model: os.cpus()[0]?.model, results, summary: lines }, null, 2) + '\n');
  expect(Object.keys(results)).toHaveLength(Object.keys(WORKLOADS).length);
}, 600_000);
