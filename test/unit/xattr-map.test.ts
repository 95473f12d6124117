/**
 * --xattrmap parsing and mapping (src/fs/xattr-map.ts) against virtiofsd's documented syntax and
 * examples (doc/xattr-mapping.md): rule lists, custom separators, the map shorthand, first match
 * wins, client -> host and host -> client, list filtering; malformed input is an XattrMapError
 * with a one-line message, never anything else.
 */
import { constants } from 'node:os';
import { describe, expect, it } from 'vitest';
import { parseXattrMap, XattrMapError, type XattrMap, type XattrRule } from '../../src/fs/xattr-map.js';
import { mulberry32 } from '../helpers/prng.js';

const { EPERM, ENOTSUP, ENODATA } = constants.errno;
const B = (s: string): Buffer => Buffer.from(s);

/** rules as plain strings, for readable expectations */
const show = (m: XattrMap): string[] =>
  m.rules.map((r: XattrRule) => `${r.type}/${r.client && r.server ? 'all' : r.client ? 'client' : 'server'}/${r.key}/${r.prepend}`);

/** the host name for a client name, or the errno */
const host = (m: XattrMap, name: string, op: 'get' | 'set' | 'remove' = 'set'): string | number => {
  const r = m.toHost(B(name), op);
  return typeof r === 'number' ? r : r.toString();
};
const client = (m: XattrMap, name: string): string | null => m.toClient(B(name))?.toString() ?? null;
const list = (m: XattrMap, names: string[]): string[] =>
  m.filterList(B(names.map((n) => `${n}\0`).join(''))).toString().split('\0').slice(0, -1);

const parseError = (spec: string): string => {
  try {
    parseXattrMap(spec);
  } catch (e) {
    expect(e).toBeInstanceOf(XattrMapError);
    return (e as Error).message;
  }
  throw new Error(`'${spec}' was accepted`);
};

describe('--xattrmap parser', () => {
  it('parses one rule per type and scope, in order', () => {
    expect(show(parseXattrMap(':prefix:client:trusted.:user.virtiofs.:'))).toEqual(['prefix/client/trusted./user.virtiofs.']);
    expect(show(parseXattrMap(':prefix:server::user.virtiofs.:'))).toEqual(['prefix/server//user.virtiofs.']);
    expect(show(parseXattrMap(':ok:client:user.::'))).toEqual(['ok/client/user./']);
    expect(show(parseXattrMap(':ok:server::security.:'))).toEqual(['ok/server//security.']);
    expect(show(parseXattrMap(':bad:server::security.:'))).toEqual(['bad/server//security.']);
    expect(show(parseXattrMap(':unsupported:all:security.selinux:security.selinux:'))).toEqual(['unsupported/all/security.selinux/security.selinux']);
    expect(show(parseXattrMap(':ok:all:::'))).toEqual(['ok/all//']);
  });

  it("virtiofsd's example 1: prefix everything, hide the rest; the same as :map::user.virtiofs.:", () => {
    const m = parseXattrMap(':prefix:all::user.virtiofs.::bad:all:::');
    expect(show(m)).toEqual(['prefix/all//user.virtiofs.', 'bad/all//']);
    expect(show(parseXattrMap(':map::user.virtiofs.:'))).toEqual(show(m));
  });

  it("virtiofsd's example 2: '/' separators, rules on separate lines; the same as /map/trusted./user.virtiofs./", () => {
    const m = parseXattrMap(`/prefix/all/trusted./user.virtiofs./
            /bad/server//trusted./
            /bad/client/user.virtiofs.//
            /ok/all///`);
    expect(show(m)).toEqual(['prefix/all/trusted./user.virtiofs.', 'bad/server//trusted.', 'bad/client/user.virtiofs./', 'ok/all//']);
    // the shorthand folds the two bad rules into one 'all' rule; it maps every name the same way
    const short = parseXattrMap('/map/trusted./user.virtiofs./');
    expect(show(short)).toEqual(['prefix/all/trusted./user.virtiofs.', 'bad/all/user.virtiofs./trusted.', 'ok/all//']);
    for (const n of ['trusted.a', 'user.virtiofs.trusted.a', 'user.x', 'security.selinux', 'trusted.', '']) {
      for (const op of ['get', 'set', 'remove'] as const) expect(host(short, n, op)).toEqual(host(m, n, op));
      expect(client(short, n)).toEqual(client(m, n));
    }
  });

  it("virtiofsd's example 3: hide security. both ways, allow the rest", () => {
    const m = parseXattrMap(`/bad/all/security./security./
            /ok/all///`);
    expect(show(m)).toEqual(['bad/all/security./security.', 'ok/all//']);
    expect(host(m, 'security.selinux')).toBe(EPERM);
    expect(host(m, 'user.a')).toBe('user.a');
    expect(list(m, ['security.selinux', 'user.a'])).toEqual(['user.a']);
  });

  it('each rule has its own separator; white space around rules is skipped', () => {
    const m = parseXattrMap('  \n:prefix:all:trusted.:user.vm.:\t/prefix/all/security./user.vm./ |ok|all|||  \n');
    expect(show(m)).toEqual(['prefix/all/trusted./user.vm.', 'prefix/all/security./user.vm.', 'ok/all//']);
    // a separator may be a character that appears in names elsewhere
    expect(show(parseXattrMap('.ok.all...'))).toEqual(['ok/all//']);
    expect(show(parseXattrMap('éokéclientéuser.éé'))).toEqual(['ok/client/user./']);
  });

  it('refuses malformed maps with one line naming the rule', () => {
    expect(parseError('')).toBe('no rules');
    expect(parseError('  \n\t ')).toBe('no rules');
    expect(parseError(':prefix:client:hi')).toBe("rule 1: missing ':' at the end of its key field");
    expect(parseError(':prefix:all:trusted.:user.vm.')).toBe("rule 1: missing ':' at the end of its prepend field");
    expect(parseError(':ok:all::: :ok')).toBe("rule 2: missing ':' at the end of its type field");
    expect(parseError(':TOMATOPIRATE:trusted.:virtiofs.user.:')).toBe('rule 1: unknown type "TOMATOPIRATE" (prefix, ok, bad, unsupported or map)');
    expect(parseError('/prefix/helloworld///')).toBe('rule 1: unknown scope "helloworld" (client, server or all)');
    expect(parseError(':ok:all::: :ok:constructor:::')).toBe('rule 2: unknown scope "constructor" (client, server or all)');
    expect(parseError(':map:trusted.:virtiofs.user.::map:trusted.:virtiofs.user.:')).toBe('rule 1: a map rule must be the last rule');
    expect(parseError(':map::user.vm.: :ok:all:::')).toBe('rule 1: a map rule must be the last rule');
    expect(parseError(':ok:all:a\0b::')).toBe('rule 1: NUL in its key field');
    expect(parseError(`:${'x'.repeat(100)}:all:::`)).toMatch(/^rule 1: unknown type "x{40}\.\.\."/);
    expect(parseError(`:ok:all:${'a'.repeat(70000)}::`)).toMatch(/longer than/);
    for (const m of [':ok:all:a::b', ':prefix:all:x:y:z']) expect(parseError(m)).not.toContain('\n');
  });

  it('fuzzed input: a map or an XattrMapError, never another exception', () => {
    const rand = mulberry32(0x16a77);
    const seps = [':', '/', '|', 'é', '\u{1F600}', ' ', '\0'];
    const words = ['prefix', 'ok', 'bad', 'unsupported', 'map', 'client', 'server', 'all', 'user.', 'trusted.', 'security.',
      'user.virtiofs.', '', '\0', '\ud800', 'x', ' ', '\n'];
    const pick = <T>(a: readonly T[]): T => a[Math.floor(rand() * a.length)]!;
    let parsed = 0;
    let refused = 0;
    for (let i = 0; i < 20000; i++) {
      // rules of 3 to 6 fields from plausible words, then a few random edits
      let s = '';
      for (let r = Math.floor(rand() * 4); r > 0; r--) {
        const sep = rand() < 0.8 ? ':' : pick(seps);
        const fields = [pick(['prefix', 'ok', 'bad', 'unsupported', 'map', 'x']), pick(['client', 'server', 'all', 'x']), pick(words), pick(words)];
        s += `${rand() < 0.3 ? ' \n' : ''}${sep}${fields.slice(0, 2 + Math.floor(rand() * 3)).join(sep)}${sep}`;
      }
      for (let e = Math.floor(rand() * 3); e > 0 && rand() < 0.5; e--) {
        const at = Math.floor(rand() * (s.length + 1));
        s = rand() < 0.5 ? s.slice(0, at) + String.fromCharCode(Math.floor(rand() * 0x3000)) + s.slice(at) : s.slice(0, at) + s.slice(at + 1);
      }
      let m: XattrMap;
      try {
        m = parseXattrMap(s);
      } catch (e) {
        if (!(e instanceof XattrMapError)) throw new Error(`input ${JSON.stringify(s)} threw ${String(e)}`);
        expect(e.message).not.toMatch(/[\n\r]/);
        refused++;
        continue;
      }
      parsed++;
      // a parsed map answers every name with a name or an errno
      for (const name of ['user.a', 'trusted.b', 'security.selinux', 'user.virtiofs.trusted.b', '']) {
        const r = m.toHost(B(name), 'set');
        expect(typeof r === 'number' ? [EPERM, ENOTSUP].includes(r) : Buffer.isBuffer(r)).toBe(true);
      }
      m.filterList(B('user.a\0trusted.b\0\0x'));
    }
    // both outcomes were exercised
    expect(parsed).toBeGreaterThan(100);
    expect(refused).toBeGreaterThan(100);
  });
});

describe('--xattrmap mapping', () => {
  it('prefix: client names get the host prefix, host names lose it (guest security./trusted. under user.virtiofs.)', () => {
    const m = parseXattrMap(':map::user.virtiofs.:');
    expect(host(m, 'security.selinux')).toBe('user.virtiofs.security.selinux');
    expect(host(m, 'trusted.overlay.opaque')).toBe('user.virtiofs.trusted.overlay.opaque');
    expect(host(m, 'user.a')).toBe('user.virtiofs.user.a');
    expect(client(m, 'user.virtiofs.security.selinux')).toBe('security.selinux');
    // host attributes outside the prefix are hidden from the client
    expect(client(m, 'security.selinux')).toBeNull();
    expect(client(m, 'user.hostonly')).toBeNull();
    expect(list(m, ['user.virtiofs.security.selinux', 'security.selinux', 'user.virtiofs.trusted.x', 'user.hostonly']))
      .toEqual(['security.selinux', 'trusted.x']);
  });

  it('round trip: a client name mapped to the host and listed back is the same name', () => {
    for (const spec of [':map::user.virtiofs.:', '/map/trusted./user.virtiofs./', ':prefix:all:security.:user.g.: :bad:client:user.g.:: :ok:all:::']) {
      const m = parseXattrMap(spec);
      for (const name of ['trusted.a', 'security.capability', 'user.plain']) {
        const h = m.toHost(B(name), 'set');
        if (typeof h === 'number') continue;
        expect(client(m, h.toString())).toBe(name);
      }
    }
  });

  it('/map/trusted./user.virtiofs./: only trusted. moves; the mapped space cannot be reached directly', () => {
    const m = parseXattrMap('/map/trusted./user.virtiofs./');
    expect(host(m, 'trusted.a')).toBe('user.virtiofs.trusted.a');
    expect(host(m, 'user.a')).toBe('user.a');
    expect(host(m, 'security.selinux')).toBe('security.selinux');
    // a client naming the target space directly is refused: set/remove EPERM, get ENODATA
    expect(host(m, 'user.virtiofs.trusted.a', 'set')).toBe(EPERM);
    expect(host(m, 'user.virtiofs.trusted.a', 'remove')).toBe(EPERM);
    expect(host(m, 'user.virtiofs.trusted.a', 'get')).toBe(ENODATA);
    // an unprefixed trusted. on the host is hidden, the prefixed one shows under its client name
    expect(list(m, ['trusted.hostonly', 'user.virtiofs.trusted.a', 'user.a'])).toEqual(['trusted.a', 'user.a']);
  });

  it('the first matching rule wins', () => {
    const m = parseXattrMap(':ok:client:user.keep.:: :prefix:client:user.:user.moved.: :bad:all::: ');
    expect(host(m, 'user.keep.x')).toBe('user.keep.x');
    expect(host(m, 'user.x')).toBe('user.moved.user.x');
    expect(host(m, 'trusted.x')).toBe(EPERM);
    const rev = parseXattrMap(':prefix:client:user.:user.moved.: :ok:client:user.keep.:: :bad:all:::');
    expect(host(rev, 'user.keep.x')).toBe('user.moved.user.keep.x');
  });

  it('scopes: a client rule never filters lists, a server rule never maps client names', () => {
    const m = parseXattrMap(':bad:client:security.:: :bad:server::trusted.: :ok:all:::');
    expect(host(m, 'security.x')).toBe(EPERM);
    expect(client(m, 'security.x')).toBe('security.x');
    expect(host(m, 'trusted.x')).toBe('trusted.x');
    expect(client(m, 'trusted.x')).toBeNull();
  });

  it('unsupported: ENOTSUP for every client op, hidden from lists', () => {
    const m = parseXattrMap('/unsupported/all/security.selinux/security.selinux//ok/all///');
    for (const op of ['get', 'set', 'remove'] as const) expect(host(m, 'security.selinux', op)).toBe(ENOTSUP);
    expect(host(m, 'security.ima', 'get')).toBe('security.ima');
    expect(list(m, ['security.selinux', 'security.ima'])).toEqual(['security.ima']);
  });

  it('a name no rule matches is refused and hidden (implicit final bad rule)', () => {
    const m = parseXattrMap(':prefix:client:trusted.:user.virtiofs.:');
    expect(host(m, 'trusted.a')).toBe('user.virtiofs.trusted.a');
    expect(host(m, 'user.a', 'set')).toBe(EPERM);
    expect(host(m, 'user.a', 'get')).toBe(ENODATA);
    expect(list(m, ['user.virtiofs.trusted.a', 'user.a'])).toEqual([]);
  });

  it('list filtering: empty input, a missing final NUL, empty names and names mapped to nothing are dropped', () => {
    const m = parseXattrMap(':prefix:server::user.p.: :ok:all:::');
    expect(m.filterList(Buffer.alloc(0)).length).toBe(0);
    expect(m.filterList(B('user.p.a\0\0user.b')).toString()).toBe('a\0user.b\0');
    expect(m.filterList(B('user.p.\0user.p.c\0')).toString()).toBe('c\0');
  });
});
