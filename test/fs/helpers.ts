import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { PassthroughFs } from '../../src/fs/passthrough.js';
import type { PassthroughOptions } from '../../src/fs/options.js';
import type { Context, Entry } from '../../src/fs/types.js';
import { ephemeralKey } from '../../src/handle/key.js';

export const ctx: Context = { uid: 0, gid: 0, pid: process.pid, unique: 1n };
export const B = (s: string): Buffer => Buffer.from(s);

export interface Captured {
  lines: Array<Record<string, unknown>>;
}

/** A pino logger that keeps every line (to assert on operator-visible events). */
export function captureLogger(level = 'info') {
  const cap: Captured = { lines: [] };
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) cap.lines.push(JSON.parse(l));
      cb();
    },
  });
  return { log: pino({ level }, stream), cap };
}

export function tmpdir(prefix = 'hfs-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function makeFs(root: string, over: Partial<PassthroughOptions> = {}) {
  const { log, cap } = captureLogger();
  const pfs = new PassthroughFs({
    root, fdBudget: 64, reopen: 'auto', key: ephemeralKey(), cache: 'auto', xattr: true, creds: true, log, ...over,
  });
  return { pfs, cap };
}

/** Resolve a slash-separated relative path to an Entry by successive lookups. */
export async function walk(pfs: PassthroughFs, rel: string): Promise<Entry> {
  let e: Entry | null = null;
  let parent = 1n;
  for (const part of rel.split('/').filter(Boolean)) {
    e = await pfs.lookup(ctx, parent, B(part));
    parent = e.nodeid;
  }
  if (!e) throw new Error('empty path');
  return e;
}

export function countFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

export async function errnoOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}
