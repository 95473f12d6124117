import { pino, type Logger, type LevelWithSilent } from 'pino';

let root: Logger = pino({ level: process.env.HANDLEFS_LOG_LEVEL ?? 'warn', base: { pid: process.pid } }, pino.destination(2));

/** Replace the root logger (cli sets the level; tests may pass a capturing logger). */
export function setRootLogger(l: Logger): void {
  root = l;
}

export function makeLogger(level: LevelWithSilent, dest?: NodeJS.WritableStream): Logger {
  return pino({ level, base: { pid: process.pid } }, (dest as never) ?? pino.destination(2));
}

export function rootLogger(): Logger {
  return root;
}

export function childLogger(component: string, parent: Logger = root): Logger {
  return parent.child({ component });
}

/** Log a repeating condition once per key (virtiofsd error_logged). */
export class LogOnce {
  private readonly seen = new Set<string>();
  constructor(private readonly log: Logger) {}
  warn(key: string, obj: object, msg: string): void {
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.log.warn(obj, msg);
  }
  error(key: string, obj: object, msg: string): void {
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.log.error(obj, msg);
  }
  reset(key: string): void {
    this.seen.delete(key);
  }
}
