/** Shared fixtures for the sys tests: a temp dir per test with an O_PATH dirfd, and errno assertions. */
import { mkdtempSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect } from 'vitest';

import { AT_FDCWD, O_CLOEXEC, O_DIRECTORY, O_PATH, sys } from '../../src/sys/syscalls.js';

export const b = (s: string): Buffer => Buffer.from(s);
export const EMPTY = Buffer.alloc(0);

export interface TmpCtx {
  /** absolute path of the per-test directory */
  dir: string;
  /** O_PATH|O_DIRECTORY fd of dir */
  fd: number;
  /** register an fd to be closed after the test; returns it */
  track(fd: number): number;
  path(name: string): string;
}

/** Registers beforeEach/afterEach hooks that create and remove a temp dir under os.tmpdir(). */
export function useTmpDir(): TmpCtx {
  let fds: number[] = [];
  const ctx: TmpCtx = {
    dir: '',
    fd: -1,
    track(fd: number) {
      fds.push(fd);
      return fd;
    },
    path(name: string) {
      return join(ctx.dir, name);
    },
  };
  beforeEach(() => {
    ctx.dir = mkdtempSync(join(tmpdir(), 'handlefs-sys-'));
    ctx.fd = ctx.track(sys.openat(AT_FDCWD, b(ctx.dir), O_PATH | O_DIRECTORY | O_CLOEXEC, 0));
  });
  afterEach(() => {
    for (const fd of fds.reverse()) {
      try {
        sys.close(fd);
      } catch {
        // already closed by the test
      }
    }
    fds = [];
    rmSync(ctx.dir, { recursive: true, force: true });
  });
  return ctx;
}

interface ErrnoShape {
  code: string;
  errno: number;
  syscall: string;
}

function checkShape(e: unknown, code: string, syscall?: string): void {
  expect(e).toBeInstanceOf(Error);
  const err = e as Error & ErrnoShape;
  expect(err.code).toBe(code);
  expect(err.errno).toBeGreaterThan(0);
  expect(err.errno).toBe(errnoOf(code));
  if (syscall !== undefined) expect(err.syscall).toBe(syscall);
  expect(err.message).toBe(`${err.code}: ${err.syscall}`);
}

export function errnoOf(code: string): number {
  const n = (constants.errno as Record<string, number>)[code];
  if (n === undefined) throw new Error(`unknown errno code ${code}`);
  return n;
}

/** fn() must throw an errno error with this code (and syscall, if given). */
export function expectErrno(fn: () => unknown, code: string, syscall?: string): void {
  let thrown: unknown = null;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  if (thrown === null) throw new Error(`expected ${code}, but nothing was thrown`);
  checkShape(thrown, code, syscall);
}

/** p must reject with an errno error with this code (and syscall, if given). */
export async function expectRejectErrno(p: Promise<unknown>, code: string, syscall?: string): Promise<void> {
  let thrown: unknown = null;
  try {
    await p;
  } catch (e) {
    thrown = e;
  }
  if (thrown === null) throw new Error(`expected rejection with ${code}, but it resolved`);
  checkShape(thrown, code, syscall);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
