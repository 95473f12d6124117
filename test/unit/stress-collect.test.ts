/**
 * The stress tool's collector of client output (tools/lib/collect.ts). A CI run lost a
 * hold-phase client's result: the tool took the result at the child's 'exit', which Node may
 * report before the child's last output has been read, and the result line is the last and
 * longest. The collector settles at 'close' instead.
 */
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { collect } from '../../tools/lib/collect.js';

/** the result line of these tests */
interface Result {
  n: number;
  pad?: string;
}

function fakeChild() {
  const c = new EventEmitter() as EventEmitter & { stdout: PassThrough; stderr: PassThrough };
  c.stdout = new PassThrough();
  c.stderr = new PassThrough();
  return c;
}

describe('stress client collector', () => {
  it("keeps output that arrives after the child's exit event, up to close", async () => {
    const c = fakeChild();
    const progress: number[] = [];
    let opened = 0;
    const p = collect<Result>(c, { onProgress: (n) => progress.push(n), onOpened: () => opened++ });
    c.stdout.write('P 5\nOPE');
    c.emit('exit', 0, null); // the order a loaded parent can see
    await new Promise((r) => setImmediate(r));
    const line = `R ${JSON.stringify({ n: 7, pad: 'x'.repeat(300_000) })}\n`;
    c.stdout.write('NED\n' + line.slice(0, 1000));
    c.stdout.write(line.slice(1000));
    c.stderr.write('a warning\n');
    await new Promise((r) => setImmediate(r));
    c.emit('close', 0, null);
    const got = await p;
    expect(got.result?.n).toBe(7);
    expect(got.result?.pad?.length).toBe(300_000);
    expect(progress).toEqual([5]);
    expect(opened).toBe(1);
    expect(got.stderr).toBe('a warning\n');
    expect(got.code).toBe(0);
  });

  it('a child that prints no result, or a cut one, yields null', async () => {
    const c = fakeChild();
    const p = collect<Result>(c);
    c.stdout.write('P 1\nR {"n": 3');
    c.emit('close', null, 'SIGKILL');
    const got = await p;
    expect(got.result).toBeNull();
    expect(got.signal).toBe('SIGKILL');
  });

  it('real children that write a large result and exit at once: every result arrives', async () => {
    const runs = Array.from({ length: 8 }, (_, k) => {
      const size = 200_000 + k * 100_000;
      const c = spawn(process.execPath, ['-e', `require('fs').writeSync(1, 'P 1\\nR ' + JSON.stringify({ n: ${k}, pad: 'y'.repeat(${size}) }) + '\\n')`], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      return collect<Result>(c).then((r) => ({ k, size, r }));
    });
    for (const { k, size, r } of await Promise.all(runs)) {
      expect(r.code).toBe(0);
      expect(r.result?.n).toBe(k);
      expect(r.result?.pad?.length).toBe(size);
    }
  });
});
