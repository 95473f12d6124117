// A clone of a /dev/fuse connection (FUSE_DEV_IOC_CLONE, the addon's fuseDevClone) is a channel of
// the same connection: with INIT answered on the first fd and nothing more read there, a client's
// requests are read and answered on the clone, on this process's event loop and on worker threads
// each bound to a CPU. The server is this process, answering from constants (the floor server of
// scripts/bench-floor); the client is another process.
import { describe, it, expect, afterEach } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { runClient } from '../helpers/child.js';
import { forceUnmount, mountDirs } from '../helpers/mounts.js';
import { openDevFuse, mountData } from '../../src/frontends/devfuse/mount.js';
import { sys, F_GETFL, F_SETFL, MS_NODEV, MS_NOSUID, O_NONBLOCK } from '../../src/sys/syscalls.js';
import { FloorServer, bareLoop } from '../../tools/lib/floor.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** The floor server, counting what it answered. */
class Counted extends FloorServer {
  answered = 0;
  override answer(req: Buffer): Buffer | null {
    this.answered++;
    return super.answer(req);
  }
}

/** Mount a FUSE connection served by this process; INIT answered on the first fd, which is then left alone. */
async function mountFloor(): Promise<{ fd: number; mnt: string; first: Counted }> {
  const { dir, mnt } = mountDirs('handlefs-clone-');
  const fd = openDevFuse();
  cleanups.push(() => {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const data = mountData(fd, { source: 'clone-test', mountpoint: mnt, allowOther: false, defaultPermissions: false, readonly: false }, 0, 0);
  sys.mount(Buffer.from('clone-test'), Buffer.from(mnt), Buffer.from('fuse'), MS_NOSUID | MS_NODEV, Buffer.from(data));
  // unmounting ends every channel's reads (ENODEV); aborts the connection if it does not finish
  cleanups.push(async () => {
    expect(await forceUnmount(mnt)).toBe(true);
  });
  const first = new Counted();
  const loop = bareLoop(fd, first);
  cleanups.push(() => loop.stop());
  for (let i = 0; i < 500 && !first.negotiated; i++) await new Promise((r) => setTimeout(r, 10));
  expect(first.negotiated).toBe(true);
  loop.stop();
  return { fd, mnt, first };
}

const root = process.getuid?.() === 0;

describe('FUSE_DEV_IOC_CLONE channels', () => {
  it.skipIf(!root)('a stat is answered on the clone when the first fd is not read', async () => {
    const { fd, mnt, first } = await mountFloor();
    const clone = sys.fuseDevClone(fd);
    expect(clone).not.toBe(fd);
    const second = new Counted();
    second.negotiated = true;
    const loop = bareLoop(clone, second);
    cleanups.push(() => {
      loop.stop();
      fs.closeSync(clone);
    });
    const r = await runClient('stat -c %s "$1" && stat -c %s "$1"', [join(mnt, 'f')], 20_000);
    expect(r.status).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['3', '3']); // the floor's file is 3 bytes
    expect(first.answered).toBe(1); // INIT only
    expect(second.answered).toBeGreaterThanOrEqual(2); // LOOKUP, GETATTR ...
  });

  it.skipIf(!root)('a reply goes back on the channel its request was read from: written on the first fd, it is refused', async () => {
    const { fd, mnt } = await mountFloor();
    const clone = sys.fuseDevClone(fd);
    cleanups.push(() => fs.closeSync(clone));
    const server = new FloorServer();
    server.negotiated = true;
    const buf = Buffer.alloc(server.bufferSize());
    const elsewhere: string[] = [];
    sys.fcntlInt(clone, F_SETFL, sys.fcntlInt(clone, F_GETFL, 0) | O_NONBLOCK);
    const poll = sys.pollStart(clone, () => {
      const n = sys.readNonblock(clone, buf, 0, buf.length, -1);
      if (n <= 0) return;
      const out = server.answer(buf);
      if (!out) return;
      try {
        sys.pwrite(fd, out, 0, out.length, -1);
        elsewhere.push('accepted');
      } catch (e) {
        elsewhere.push((e as { code?: string }).code ?? '?');
      }
      sys.pwrite(clone, out, 0, out.length, -1);
    });
    cleanups.push(() => sys.pollStop(poll));
    const r = await runClient('stat -c %s "$1"', [join(mnt, 'f')], 20_000);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('3');
    expect(elsewhere.length).toBeGreaterThanOrEqual(2);
    // the first fd's channel never read these requests: the kernel does not know them there
    expect(new Set(elsewhere)).toEqual(new Set(['ENOENT']));
  });

  it.skipIf(!root)('worker threads, one per CPU and bound to it, each serve their own clone', async () => {
    const { fd, mnt } = await mountFloor();
    const cpus = Math.min(os.cpus().length, 4);
    const exits: Promise<number>[] = [];
    for (let cpu = 0; cpu < cpus; cpu++) {
      const clone = sys.fuseDevClone(fd);
      cleanups.push(() => fs.closeSync(clone));
      // the worker runs the built tool (scripts/setup compiles tools/ into dist-tools/)
      const w = new Worker(new URL('../../dist-tools/lib/floor-worker.js', import.meta.url), { workerData: { fd: clone, cpu } });
      exits.push(new Promise((r) => w.once('exit', r)));
      cleanups.push(async () => {
        await w.terminate();
      });
    }
    const r = await runClient('i=0; while [ $i -lt 200 ]; do stat -c %s "$1" >/dev/null || exit 1; i=$((i+1)); done; stat -c %s "$1"', [join(mnt, 'f')], 60_000);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('3');
    // unmounting ends each worker's channel and with it the worker
    expect(await forceUnmount(mnt)).toBe(true);
    const codes = await Promise.race([Promise.all(exits), new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
    expect(codes).toEqual(new Array(cpus).fill(0));
  });

  it('a clone of an fd that is not a FUSE connection is refused', () => {
    const f = fs.openSync('/proc/self/status', 'r');
    try {
      expect(() => sys.fuseDevClone(f)).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'ioctl' }));
    } finally {
      fs.closeSync(f);
    }
    // a /dev/fuse fd that was never mounted has no connection to join (6.18 says EPERM)
    const lone = openDevFuse();
    try {
      let code: string | undefined;
      try {
        sys.fuseDevClone(lone);
      } catch (e) {
        code = (e as { code?: string }).code;
      }
      expect(['EINVAL', 'EPERM']).toContain(code);
    } finally {
      fs.closeSync(lone);
    }
  });
});
