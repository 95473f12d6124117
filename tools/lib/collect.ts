/**
 * Reads a stress client's stdout protocol (tools/stress/client.ts): "P <ops>" progress lines,
 * "OPENED", and last "R <json result>". Settles once the child's stdio is closed ('close'), not
 * at 'exit': Node may report a child's exit before the last of its output has been read, and the
 * result line is the last and often the longest (hundreds of KiB in the hold phase).
 */
import type { Readable } from 'node:stream';

export interface CollectHooks {
  onProgress?: (ops: number) => void;
  onOpened?: () => void;
}

export interface Collected<R> {
  /** null when the child printed no result line, or one that does not parse */
  result: R | null;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** the first 4 KiB or so of its stderr */
  stderr: string;
}

/** What collect() needs of a child: a ChildProcess spawned with stdout and stderr piped. */
export interface PipedChild {
  stdout: Readable;
  stderr: Readable;
  on(event: 'close', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown;
}

export function collect<R = unknown>(child: PipedChild, hooks: CollectHooks = {}): Promise<Collected<R>> {
  return new Promise((resolve) => {
    let buf = '';
    let err = '';
    let result: R | null = null;
    const line = (l: string): void => {
      if (l.startsWith('P ')) hooks.onProgress?.(Number(l.slice(2)));
      else if (l === 'OPENED') hooks.onOpened?.();
      else if (l.startsWith('R ')) {
        try {
          result = JSON.parse(l.slice(2)) as R;
        } catch {
          result = null;
        }
      }
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        line(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (err.length < 4096) err += d;
    });
    child.on('close', (code, signal) => resolve({ result, code, signal, stderr: err }));
  });
}
