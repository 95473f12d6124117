/**
 * growFdTable: the fd table grows to the size asked for in one step (FDSize in /proc/self/status
 * is the table's size), leaves no fd behind, and a size beyond RLIMIT_NOFILE is refused without
 * an error or a change.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { growFdTable, nofileLimit, openFdCount } from '../../src/sys/caps.js';
import { useTmpDir } from './util.js';

function fdSize(): number {
  return Number(/^FDSize:\s*(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
}

describe('growFdTable', () => {
  const t = useTmpDir();

  it('grows the table to hold n fds at once and leaves no fd open', () => {
    const soft = nofileLimit().soft;
    const before = fdSize();
    const n = Math.min(before * 4, soft);
    if (n <= before) throw new Error(`RLIMIT_NOFILE ${soft} leaves no room above the table's ${before} fds`);
    const open = openFdCount();
    expect(growFdTable(t.fd, n)).toBe(true);
    expect(fdSize()).toBeGreaterThanOrEqual(n);
    expect(openFdCount()).toBe(open);
  });

  it('refuses a size beyond RLIMIT_NOFILE without throwing, and changes nothing', () => {
    const soft = nofileLimit().soft;
    // Linux has no unlimited RLIMIT_NOFILE (fs.nr_open bounds it)
    expect(soft).toBeGreaterThan(0);
    const before = fdSize();
    const open = openFdCount();
    expect(growFdTable(t.fd, soft + 2)).toBe(false);
    expect(fdSize()).toBe(before);
    expect(openFdCount()).toBe(open);
  });
});
