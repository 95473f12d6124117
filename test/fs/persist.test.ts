/**
 * Persistent handles that persist (issue 17), in the core: node ids resolve in a new server on the
 * same shared directory and key (through the state file), and a record survives the loss of its
 * name while the file has another (hard links).
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pino } from 'pino';
import { errnoOf, found } from '../helpers/errno.js';
import { makeFs, ctx, B, walk, readAll, useCleanup } from '../helpers/fs-fixture.js';
import type { PassthroughFs } from '../../src/fs/passthrough.js';
import { StateFile, StateFileError } from '../../src/fs/state-file.js';
import { ephemeralKey } from '../../src/handle/key.js';

const silent = pino({ level: 'silent' });
const { cores: open, dir } = useCleanup();

function tree(): { top: string; root: string; outside: string } {
  const top = dir('hfs-persist-');
  const root = path.join(top, 'shared');
  const outside = path.join(top, 'outside');
  fs.mkdirSync(path.join(root, 'a'), { recursive: true });
  fs.mkdirSync(path.join(root, 'b'));
  fs.mkdirSync(outside);
  for (let i = 0; i < 10; i++) fs.writeFileSync(path.join(root, 'a', `f${i}`), `file-${i}`);
  return { top, root, outside };
}

/** A server with --state-file `file` (it loads the file first, then appends to it). */
function serverWithStateFile(root: string, key: Buffer, file: string): { pfs: PassthroughFs; sf: StateFile } {
  const { pfs } = makeFs(root, { key, stateFile: file });
  open.push(pfs);
  return { pfs, sf: (pfs as unknown as { s: { stateFile: StateFile } }).s.stateFile };
}

/** The server dies without a clean stop: nothing reaches the file but what was appended (no compaction). */
function crash(a: { sf: StateFile }): void {
  a.sf.close(false);
}

/** The client's handle resolved by a server: LOOKUP "." of the node id, as the kernel's export code does. */
async function resolve(pfs: PassthroughFs, nodeid: bigint, generation: bigint): Promise<string> {
  const e = found(await pfs.lookup(ctx, nodeid, B('.')));
  expect(e.nodeid).toBe(nodeid);
  expect(e.generation).toBe(generation);
  return readAll(pfs, nodeid);
}

describe('state file: node ids that a new server resolves', () => {
  it('a new server with the same key resolves every node id; a deleted file gives ESTALE; another key is refused', async () => {
    const { top, root } = tree();
    const key = ephemeralKey();
    const file = path.join(top, 'state');
    const a = serverWithStateFile(root, key, file);
    const ents = [];
    for (let i = 0; i < 10; i++) ents.push(await walk(a.pfs, `a/f${i}`));
    // renamed across directories through the server
    const adir = await walk(a.pfs, 'a');
    const bdir = await walk(a.pfs, 'b');
    await a.pfs.rename(ctx, adir.nodeid, B('f3'), bdir.nodeid, B('moved3'), 0);
    // created through the server
    const c = await a.pfs.create(ctx, bdir.nodeid, B('new'), 0o644, 1 /* O_WRONLY */, 0);
    await a.pfs.write(ctx, c.entry.nodeid, c.open.fh, 0, B('created'), 0);
    await a.pfs.release(ctx, c.entry.nodeid, c.open.fh, 0, 0n, false);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    // the first server dies without a clean stop: no compaction, nothing but what was appended
    crash(a);
    fs.rmSync(path.join(root, 'a', 'f7'));

    const b = serverWithStateFile(root, key, file);
    for (let i = 0; i < 10; i++) {
      if (i === 7) {
        expect(await errnoOf(b.pfs.lookup(ctx, ents[i]!.nodeid, B('.')))).toBe('ESTALE');
        continue;
      }
      expect(await resolve(b.pfs, ents[i]!.nodeid, ents[i]!.generation)).toBe(`file-${i}`);
    }
    expect(await resolve(b.pfs, c.entry.nodeid, c.entry.generation)).toBe('created');
    // new node ids never collide with the old ones
    const fresh = await walk(b.pfs, 'a/f0');
    expect(fresh.nodeid).toBe(ents[0]!.nodeid);
    const other = await b.pfs.mkdir(ctx, 1n, B('later'), 0o755, 0);
    for (const e of ents) expect(other.nodeid).not.toBe(e.nodeid);

    // a server with another key refuses the file (and does not overwrite it)
    const before = fs.readFileSync(file);
    const { pfs: wrong } = makeFs(root, { key: ephemeralKey() });
    open.push(wrong);
    expect(() => StateFile.open(file, silent, (blob) => wrong.importState(blob, true), () => wrong.exportState())).toThrow(StateFileError);
    expect(() => makeFs(root, { key: ephemeralKey(), stateFile: file })).toThrow(/does not verify under this key/);
    expect(fs.readFileSync(file).equals(before)).toBe(true);
  });

  it('a torn last frame is cut off; a file others can read, or that is not ours, is refused', async () => {
    const { top, root } = tree();
    const key = ephemeralKey();
    const file = path.join(top, 'state');
    const a = serverWithStateFile(root, key, file);
    const e = await walk(a.pfs, 'a/f1');
    crash(a);
    const good = fs.statSync(file).size;
    fs.appendFileSync(file, Buffer.from([200, 0, 0, 0, 1, 2, 3])); // a frame of 200 bytes, cut after 3
    const b = serverWithStateFile(root, key, file);
    expect(fs.statSync(file).size).toBe(good);
    expect(await resolve(b.pfs, e.nodeid, e.generation)).toBe('file-1');

    fs.chmodSync(file, 0o644);
    expect(() => serverWithStateFile(root, key, file)).toThrow(/readable or writable by others/);
    const notOurs = path.join(top, 'not-ours');
    fs.writeFileSync(notOurs, 'hello world, not a state file', { mode: 0o600 });
    expect(() => serverWithStateFile(root, key, notOurs)).toThrow(/not a handlefs state file/);
  });

  it('stays bounded: compaction rewrites it as the live state once it doubled', async () => {
    const { top, root } = tree();
    const key = ephemeralKey();
    const file = path.join(top, 'state');
    const a = serverWithStateFile(root, key, file);
    const e = await walk(a.pfs, 'a/f2');
    const adir = await walk(a.pfs, 'a');
    // renames append a record each: 20,000 of them would be MiBs
    for (let i = 0; i < 20_000; i++) await a.pfs.rename(ctx, adir.nodeid, B(i % 2 ? 'g2' : 'f2'), adir.nodeid, B(i % 2 ? 'f2' : 'g2'), 0);
    await new Promise((r) => setImmediate(r));
    expect(a.sf.counters.compactions).toBeGreaterThan(0);
    expect(fs.statSync(file).size).toBeLessThan(3 << 20);
    await a.pfs.destroy(); // a clean stop compacts
    expect(fs.existsSync(`${file}.tmp`)).toBe(false);
    const b = serverWithStateFile(root, key, file);
    expect(await resolve(b.pfs, e.nodeid, e.generation)).toBe('file-2');
  });
});

describe('one node id per file', () => {
  it('a file that left memory, reached again by name, takes its old node id back (no alias a rename would miss)', async () => {
    const { top, root } = tree();
    const key = ephemeralKey();
    const file = path.join(top, 'state');
    const a = serverWithStateFile(root, key, file);
    const e = await walk(a.pfs, 'a/f6');
    crash(a);
    const b = serverWithStateFile(root, key, file);
    // the new server knows f6 only as a record; the client reaches it by name first
    const again = await walk(b.pfs, 'a/f6');
    expect(again.nodeid).toBe(e.nodeid);
    expect(again.generation).toBe(e.generation);
    // a rename through this server moves the one record the client's handle names
    const adir = await walk(b.pfs, 'a');
    const bdir = await walk(b.pfs, 'b');
    await b.pfs.rename(ctx, adir.nodeid, B('f6'), bdir.nodeid, B('g6'), 0);
    crash(b);
    const c = serverWithStateFile(root, key, file);
    expect(await resolve(c.pfs, e.nodeid, e.generation)).toBe('file-6');
  });
});

describe('a record survives the loss of its name (hard links)', () => {
  it('a link made through the server takes over when the name the record had is unlinked', async () => {
    const { top, root } = tree();
    const key = ephemeralKey();
    const file = path.join(top, 'state');
    const a = serverWithStateFile(root, key, file);
    const adir = await walk(a.pfs, 'a');
    const bdir = await walk(a.pfs, 'b');
    const e = await walk(a.pfs, 'a/f4');
    await a.pfs.link(ctx, e.nodeid, bdir.nodeid, B('link4'));
    // the client looks the first name up again (its record now names a/f4), then unlinks it
    found(await a.pfs.lookup(ctx, adir.nodeid, B('f4')));
    await a.pfs.unlink(ctx, adir.nodeid, B('f4'));
    crash(a);
    const b = serverWithStateFile(root, key, file);
    expect(await resolve(b.pfs, e.nodeid, e.generation)).toBe('file-4');
  });

  it('a link the host made in the same directory is found when the known name is unlinked', async () => {
    const { top, root } = tree();
    const key = ephemeralKey();
    const file = path.join(top, 'state');
    // the server sees the file with two links (the client looks it up after the host linked it)
    fs.linkSync(path.join(root, 'a/f5'), path.join(root, 'a/hostlink5'));
    const a = serverWithStateFile(root, key, file);
    const adir = await walk(a.pfs, 'a');
    const e = await walk(a.pfs, 'a/f5');
    await a.pfs.unlink(ctx, adir.nodeid, B('f5'));
    crash(a);
    const b = serverWithStateFile(root, key, file);
    expect(await resolve(b.pfs, e.nodeid, e.generation)).toBe('file-5');
  });

  it('the last name unlinked, or the file moved outside the share: ESTALE, nothing outside opens', async () => {
    const { top, root, outside } = tree();
    const key = ephemeralKey();
    const file = path.join(top, 'state');
    const a = serverWithStateFile(root, key, file);
    const adir = await walk(a.pfs, 'a');
    const gone = await walk(a.pfs, 'a/f6');
    const out = await walk(a.pfs, 'a/f8');
    await a.pfs.unlink(ctx, adir.nodeid, B('f6'));
    crash(a);
    // the host moves a file outside (keeping it on the same filesystem)
    fs.renameSync(path.join(root, 'a/f8'), path.join(outside, 'f8'));
    const b = serverWithStateFile(root, key, file);
    expect(await errnoOf(b.pfs.lookup(ctx, gone.nodeid, B('.')))).toBe('ESTALE');
    expect(await errnoOf(b.pfs.lookup(ctx, out.nodeid, B('.')))).toBe('ESTALE');
    expect(fs.readFileSync(path.join(outside, 'f8'), 'utf8')).toBe('file-8');
  });
});
