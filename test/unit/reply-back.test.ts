/**
 * ReplyBack (src/frontends/devfuse/threads.ts): the owner gives the reply to a request a thread
 * handed over back to that thread, which waits for it a short while and then gives up (the owner
 * then commits it itself). Both moves are a compare-and-exchange on a word tagged with the entry:
 * for every request exactly one side answers, and a late reply never passes for another entry's.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { awaitBack, giveBack, BACK_WAITING } from '../../src/frontends/devfuse/threads.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const distThreads = path.resolve(here, '../../dist/frontends/devfuse/threads.js');

/** The 8-byte reply made for entry e (what the thread checks it took). */
function replyFor(e: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(e, 0);
  b.writeUInt32LE(e ^ 0x5a5a, 4);
  return b;
}

describe('ReplyBack', () => {
  it('a reply given while the thread waits is taken; after it gave up, or for another entry, it is not', () => {
    const back = new Int32Array(new SharedArrayBuffer(12));
    const space = Buffer.alloc(64);
    Atomics.store(back, 0, 5 * 4 + BACK_WAITING);
    expect(giveBack(back, 5, replyFor(5), () => space)).toBe(true);
    expect(awaitBack(back, 5, 0)).toBe(8);
    expect(space.subarray(0, 8)).toEqual(replyFor(5));
    // the thread gave up on entry 6 (no reply in its wait): the owner's later reply is refused
    Atomics.store(back, 0, 6 * 4 + BACK_WAITING);
    expect(awaitBack(back, 6, 0.01)).toBe(-1);
    expect(giveBack(back, 6, replyFor(6), () => space)).toBe(false);
    // waiting for entry 8: a reply to entry 7 is not taken for it, and 8's still is
    Atomics.store(back, 0, 8 * 4 + BACK_WAITING);
    expect(giveBack(back, 7, replyFor(7), () => space)).toBe(false);
    expect(giveBack(back, 8, replyFor(8), () => space)).toBe(true);
    expect(awaitBack(back, 8, 0)).toBe(8);
    expect(space.readUInt32LE(0)).toBe(8);
  });

  it('a reply that does not fit the entry: the owner keeps it and the thread stops waiting at once', () => {
    const back = new Int32Array(new SharedArrayBuffer(12));
    const space = Buffer.alloc(4);
    Atomics.store(back, 0, 3 * 4 + BACK_WAITING);
    expect(giveBack(back, 3, replyFor(3), () => space)).toBe(false);
    const t0 = performance.now();
    expect(awaitBack(back, 3, 1000)).toBe(-1);
    expect(performance.now() - t0).toBeLessThan(500);
    expect(space.readUInt32LE(0)).toBe(0);
  });

  it('raced by a real thread with short waits: for every entry exactly one side answers, and every reply taken is that entry\'s', { timeout: 60_000 }, async () => {
    expect(fs.existsSync(distThreads), `${distThreads} (npm run build)`).toBe(true);
    const rounds = 3000;
    const back = new Int32Array(new SharedArrayBuffer(12));
    const ctl = new Int32Array(new SharedArrayBuffer(12));
    const took = new Int8Array(new SharedArrayBuffer(rounds + 1));
    const spaceBuf = new SharedArrayBuffer(64);
    const space = Buffer.from(spaceBuf);
    const gave = new Int8Array(rounds + 1);
    const w = new Worker(new URL('./fixtures/reply-back-thread.mjs', import.meta.url), {
      workerData: { module: pathToFileURL(distThreads).href, back: back.buffer, ctl: ctl.buffer, took: took.buffer, space: spaceBuf, rounds },
    });
    const exited = new Promise<number>((resolve) => w.on('exit', resolve));
    let error: unknown = null;
    w.on('error', (e) => (error = e));
    try {
      const deadline = Date.now() + 40_000;
      for (let e = 1; e <= rounds && Date.now() < deadline && error === null; e++) {
        // spin, as the owner's loop turns in its hot window (a sleep would outlast every wait)
        for (let i = 0; Atomics.load(ctl, 0) < e; i++) if ((i & 0xffff) === 0 && (Date.now() > deadline || error !== null)) break;
        // the owner's work takes 0 to ~80 us: sometimes within the thread's wait, sometimes after it
        const until = performance.now() + (e % 5) * 0.02;
        while (performance.now() < until);
        gave[e] = giveBack(back, e, replyFor(e), () => space) ? 1 : 0;
        Atomics.store(ctl, 1, e);
        Atomics.notify(ctl, 1);
      }
      expect(await exited).toBe(0);
    } finally {
      await w.terminate();
    }
    expect(error).toBeNull();
    let taken = 0, givenUp = 0;
    for (let e = 1; e <= rounds; e++) {
      expect([e, took[e]]).toEqual([e, gave[e] ? 1 : 2]);
      if (gave[e]) taken++;
      else givenUp++;
    }
    // the thread found no reply that was not its entry's
    expect(Atomics.load(ctl, 2)).toBe(0);
    console.log(`ReplyBack race: ${taken} replies taken by the thread, ${givenUp} left to the owner`);
    // both outcomes happened: the race was run, not one side always first
    expect(taken).toBeGreaterThan(rounds / 50);
    expect(givenUp).toBeGreaterThan(rounds / 50);
  });
});
