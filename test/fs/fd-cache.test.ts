import { describe, it, expect } from 'vitest';
import { pino } from 'pino';
import { FdCache } from '../../src/fs/fd-cache.js';

const silent = pino({ level: 'silent' });

function cache(budget: number) {
  const closed: number[] = [];
  const c = new FdCache(budget, (fd) => closed.push(fd), silent);
  return { c, closed };
}

/** An fd put in the cache and given back at once: idle, evictable unless permanent. */
function idle(c: FdCache, key: string, fd: number, kind: 'file' | 'path', permanent = false): void {
  c.insertPinned(key, fd, kind, permanent);
  c.unpin(key, fd);
}

describe('FdCache', () => {
  it('evicts idle O_PATH fds before open files, least recently used first', () => {
    const { c, closed } = cache(3);
    idle(c, 'f1', 10, 'file');
    idle(c, 'i1', 11, 'path');
    idle(c, 'i2', 12, 'path');
    expect(c.pin('i1')).toBe(11); // i1 is now the most recent path fd
    c.unpin('i1', 11);
    c.reserve();
    expect(closed).toEqual([12]); // the idle path fd used least recently, not the open file
    c.reserve(); // size 2 < 3: nothing to do
    expect(closed).toEqual([12]);
    idle(c, 'i3', 13, 'path');
    c.reserve();
    expect(closed).toEqual([12, 11]);
    expect(c.counters.evictions).toBe(2);
  });

  it('never closes a borrowed fd; remove() while borrowed defers the close to the last unpin', () => {
    const { c, closed } = cache(2);
    c.insertPinned('f1', 20, 'file'); // borrowed once
    expect(c.pin('f1')).toBe(20); // twice
    c.remove('f1');
    expect(closed).toEqual([]);
    expect(c.size).toBe(1); // still open, waiting for its borrowers
    c.insertPinned('f1', 21, 'file'); // the key may be reused at once by a new fd
    c.unpin('f1', 20);
    expect(closed).toEqual([]);
    c.unpin('f1', 20);
    expect(closed).toEqual([20]);
    c.unpin('f1', 21);
    expect(c.size).toBe(1);
  });

  it('EMFILE when every entry is borrowed or permanent, then serves again', () => {
    const { c } = cache(2);
    idle(c, 'a', 1, 'path', true);
    c.insertPinned('b', 2, 'file'); // borrowed
    expect(() => c.reserve()).toThrow(/fd budget exhausted/);
    expect(c.counters.emfile).toBe(1);
    c.unpin('b', 2);
    expect(() => c.reserve()).not.toThrow();
    expect(c.has('a')).toBe(true); // the permanent entry survived
    c.setPermanent('a', false);
    c.reserve();
    expect(c.size).toBe(1);
  });

  it('refuses a budget below 2', () => {
    expect(() => new FdCache(1, () => {}, silent)).toThrow(RangeError);
  });

  it('opened(): a kernel EMFILE/ENFILE below the budget (returned or thrown) evicts one idle fd and tries once more', () => {
    const { c, closed } = cache(8);
    idle(c, 'i1', 31, 'path');
    idle(c, 'i2', 32, 'path');
    c.insertPinned('busy', 33, 'path'); // borrowed: never evicted
    let calls = 0;
    expect(c.opened(() => (++calls === 1 ? -24 /* EMFILE */ : 40))).toBe(40);
    expect(calls).toBe(2);
    expect(closed).toEqual([31]);
    calls = 0;
    const thrown = () => {
      if (++calls === 1) throw Object.assign(new Error('open_by_handle_at'), { code: 'ENFILE' });
      return 41;
    };
    expect(c.opened(thrown)).toBe(41);
    expect(closed).toEqual([31, 32]);
    // nothing idle left: the error stands, once tried
    calls = 0;
    expect(c.opened(() => (++calls, -24))).toBe(-24);
    expect(calls).toBe(1);
    expect(() => c.opened(() => { throw Object.assign(new Error('x'), { code: 'EMFILE' }); })).toThrow('x');
    // other errors are not retried
    calls = 0;
    expect(c.opened(() => (++calls, -2))).toBe(-2);
    expect(calls).toBe(1);
    expect(closed).toEqual([31, 32]);
  });
});
