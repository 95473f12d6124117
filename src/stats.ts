import * as fs from 'node:fs';
import type { Logger } from 'pino';

const noop = (): void => {};

/** --stats-file: the counters as one JSON object, replaced atomically every second and at stop. */
export function startStats(file: string | null, counters: () => object, log: Logger): { stop(): void } {
  if (!file) return { stop: noop };
  const write = (): void => {
    try {
      fs.writeFileSync(`${file}.tmp`, JSON.stringify({ time: Date.now(), pid: process.pid, ...counters() }) + '\n');
      fs.renameSync(`${file}.tmp`, file);
    } catch (e) {
      log.warn({ err: e }, `cannot write the stats file ${file}`);
    }
  };
  write();
  const t = setInterval(write, 1000);
  t.unref();
  return {
    stop(): void {
      clearInterval(t);
      write();
    },
  };
}
