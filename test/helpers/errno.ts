/**
 * Errno helpers. Three questions, three names:
 * - errnoOf(call): which errno name does this call fail with ('OK' when it succeeds)? A call that
 *   resolves to an FsError (a FileSystem answer given as a value: lookup, getxattr) fails with it. For a promise
 *   or a function (sync or async); errnoOfSync(fn) for a synchronous host call, e.g.
 *   `expect(await errnoOf(pfs.unlink(...))).toBe(errnoOfSync(() => fs.unlinkSync(p)))`.
 * - codeOf(err): the errno name of an error already caught.
 * - errnoNumber(name): the number of an errno name ('ENOENT' -> 2).
 */
import { constants } from 'node:os';
import { expect } from 'vitest';
import { FsError } from '../../src/errors.js';

/** The errno name (err.code) of a caught error; its text when it has none. */
export function codeOf(err: unknown): string {
  return (err as { code?: string } | null)?.code ?? String(err);
}

/** The errno name the call fails with (by rejecting or by resolving to an FsError), 'OK' when it succeeds. */
export async function errnoOf(call: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    const v = await (typeof call === 'function' ? call() : call);
    return v instanceof FsError ? v.code : 'OK';
  } catch (e) {
    return codeOf(e);
  }
}

/** errnoOf for a synchronous call. */
export function errnoOfSync(fn: () => unknown): string {
  try {
    fn();
    return 'OK';
  } catch (e) {
    return codeOf(e);
  }
}

/** The call fails with one of these errno names (or succeeds, if 'OK' is among them). */
export async function expectErrnoIn(call: Promise<unknown> | (() => unknown), ...names: string[]): Promise<void> {
  expect(names).toContain(await errnoOf(call));
}

/** The number of an errno name; throws on an unknown name. */
export function errnoNumber(name: string): number {
  const n = (constants.errno as Record<string, number>)[name];
  if (n === undefined) throw new Error(`unknown errno name ${name}`);
  return n;
}

/** The answer of a FileSystem call that must succeed: an FsError given as a value (lookup, getxattr) is thrown. */
export function found<T>(v: T | FsError): T {
  if (v instanceof FsError) throw v;
  return v;
}
