import { pino, type Logger, type LevelWithSilent } from 'pino';

const noop = (): void => {};

/**
 * A server logger: JSON lines on stderr, written synchronously (a crash loses no line), and a
 * closed stderr (EPIPE) ignored rather than fatal. `base` adds fields to every line.
 */
export function makeLogger(level: LevelWithSilent, base: Record<string, unknown> = {}): Logger {
  const dest = pino.destination({ fd: 2, sync: true });
  dest.on('error', noop);
  return pino({ level, base: { pid: process.pid, ...base } }, dest);
}

/** The parent of loggers made without one (a ProtocolServer built without a logger, in tests). */
const root: Logger = makeLogger('warn');

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
