/**
 * The server's ready signal: started with HANDLEFS_READY_FD=3 and a pipe as its fd 3, the CLI
 * writes "ready\n" there once the mount is live.
 */
import type { ChildProcess } from 'node:child_process';
import type { Readable } from 'node:stream';

/** The environment that asks for the signal; spawn with stdio [..., ..., ..., 'pipe'] beside it. */
export const READY_ENV = { HANDLEFS_READY_FD: '3' } as const;

/**
 * Resolves once `child` says ready; rejects when it exits or fails to start first, or after
 * `timeoutMs`. `log` gives the server's output so far, for the error message.
 */
export function waitReady(child: ChildProcess, timeoutMs: number, log: () => string = () => ''): Promise<void> {
  return new Promise<void>((ok, fail) => {
    const ready = child.stdio[3] as Readable;
    let got = '';
    const t = setTimeout(() => fail(new Error(`server not ready within ${timeoutMs} ms; log:\n${log()}`)), timeoutMs);
    ready.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.includes('ready\n')) {
        clearTimeout(t);
        ok();
      }
    });
    ready.on('error', () => {});
    child.once('exit', (code, signal) => {
      clearTimeout(t);
      fail(new Error(`server exited before ready (code ${code}, signal ${signal}); log:\n${log()}`));
    });
    child.once('error', (e) => {
      clearTimeout(t);
      fail(e);
    });
  });
}
