/**
 * Translation of user and group ids between the client ("guest") and the host, with virtiofsd's
 * --translate-uid / --translate-gid rules (virtiofsd 1.x, src/soft_idmap):
 *
 *   map:GUEST:HOST:COUNT           both ways, 1:1, guest [GUEST, GUEST+COUNT) <-> host [HOST, HOST+COUNT)
 *   guest:GUEST:HOST:COUNT         guest to host only, 1:1
 *   host:HOST:GUEST:COUNT          host to guest only, 1:1
 *   squash-guest:GUEST:HOST:COUNT  guest [GUEST, GUEST+COUNT) all to the one host id HOST
 *   squash-host:HOST:GUEST:COUNT   host [HOST, HOST+COUNT) all to the one guest id GUEST
 *   forbid-guest:GUEST:COUNT       a guest id in [GUEST, GUEST+COUNT) is refused (EPERM)
 *
 * Each direction is its own table; an id no rule covers maps to itself. Ranges of one direction
 * must not overlap, and no range may run past 2^32 - 1 (virtiofsd refuses both at start). Numbers
 * are unsigned 32-bit decimals. Pure functions: parsing for the command line, mapping for the
 * filesystem decorator (src/fs/idmap-fs.ts).
 */

/** An id translation could not be set up: the message is one line for the operator. */
export class IdMapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IdMapError';
  }
}

const KINDS = ['map', 'guest', 'host', 'squash-guest', 'squash-host', 'forbid-guest'] as const;
export type IdMapKind = (typeof KINDS)[number];

/** One command-line rule, as written. `target` is absent for forbid-guest. */
export interface IdMapRule {
  kind: IdMapKind;
  source: number;
  target?: number;
  count: number;
}

/** A range of one direction: [start, end) to `to` + (id - start), all to `to`, or refused. */
interface Range {
  start: number;
  end: number;
  op: 'range' | 'squash' | 'fail';
  to: number;
}

/** Both directions of the uid or the gid translation. */
export interface IdMap {
  readonly guestToHost: readonly Range[];
  readonly hostToGuest: readonly Range[];
}

export const ID_MAX = 0xffff_ffff;

export const IDMAP_SYNTAX =
  'TYPE:SOURCE:TARGET:COUNT with TYPE map|guest|host|squash-guest|squash-host, or forbid-guest:GUEST:COUNT';

/** As Rust's u32::from_str (virtiofsd's parser): decimal digits, an optional '+', at most 2^32 - 1. */
function parseU32(s: string): number | null {
  if (!/^\+?[0-9]+$/.test(s)) return null;
  const digits = s.replace(/^\+?0*/, '');
  if (digits.length > 10) return null;
  const n = digits === '' ? 0 : Number(digits);
  return n <= ID_MAX ? n : null;
}

/** Parse one rule; throws IdMapError naming the rule and the expected syntax. */
export function parseIdMapRule(spec: string): IdMapRule {
  const fields = spec.split(':');
  const kind = fields[0] as IdMapKind;
  if (!(KINDS as readonly string[]).includes(kind)) {
    throw new IdMapError(`'${spec}': unknown mapping type '${fields[0]}' (expected ${IDMAP_SYNTAX})`);
  }
  const want = kind === 'forbid-guest' ? 3 : 4;
  if (fields.length !== want) {
    throw new IdMapError(`'${spec}': ${kind} takes ${want - 1} numbers (expected ${IDMAP_SYNTAX})`);
  }
  const nums = fields.slice(1).map(parseU32);
  const bad = nums.findIndex((n) => n === null);
  if (bad >= 0) throw new IdMapError(`'${spec}': '${fields[bad + 1]}' is not an id (0..${ID_MAX})`);
  const [source, a, b] = nums as number[];
  return kind === 'forbid-guest' ? { kind, source: source!, count: a! } : { kind, source: source!, target: a!, count: b! };
}

function rangeOf(spec: string, base: number, count: number): [number, number] {
  if (count === 0) throw new IdMapError(`'${spec}': the count must be at least 1`);
  if (base + count - 1 > ID_MAX) throw new IdMapError(`'${spec}': the range runs past ${ID_MAX}`);
  return [base, base + count];
}

function push(table: Range[], name: string, spec: string, r: Range): void {
  const clash = table.find((o) => r.start < o.end && o.start < r.end);
  if (clash) throw new IdMapError(`'${spec}': its ${name} range [${r.start}, ${r.end}) overlaps an earlier rule`);
  table.push(r);
}

/** Build both directions from command-line rules; throws IdMapError on a bad rule, an overlap or an overflow. */
export function buildIdMap(specs: readonly string[]): IdMap {
  const g2h: Range[] = [];
  const h2g: Range[] = [];
  for (const spec of specs) {
    const r = parseIdMapRule(spec);
    const [start, end] = rangeOf(spec, r.source, r.count);
    const t = r.target ?? 0;
    // a 1:1 range must also fit on the target side
    if (r.kind === 'map' || r.kind === 'guest' || r.kind === 'host') rangeOf(spec, t, r.count);
    switch (r.kind) {
      case 'map':
        push(g2h, 'guest', spec, { start, end, op: 'range', to: t });
        push(h2g, 'host', spec, { start: t, end: t + r.count, op: 'range', to: start });
        break;
      case 'guest':
        push(g2h, 'guest', spec, { start, end, op: 'range', to: t });
        break;
      case 'host':
        push(h2g, 'host', spec, { start, end, op: 'range', to: t });
        break;
      case 'squash-guest':
        push(g2h, 'guest', spec, { start, end, op: 'squash', to: t });
        break;
      case 'squash-host':
        push(h2g, 'host', spec, { start, end, op: 'squash', to: t });
        break;
      case 'forbid-guest':
        push(g2h, 'guest', spec, { start, end, op: 'fail', to: 0 });
        break;
    }
  }
  return { guestToHost: g2h, hostToGuest: h2g };
}

function apply(table: readonly Range[], id: number): number | null {
  for (const r of table) {
    if (id >= r.start && id < r.end) return r.op === 'fail' ? null : r.op === 'squash' ? r.to : r.to + (id - r.start);
  }
  return id;
}

/** A client id as the host's, or null when a forbid-guest rule refuses it. */
export function guestToHost(m: IdMap, id: number): number | null {
  return apply(m.guestToHost, id);
}

/** A host id as the client is to see it. */
export function hostToGuest(m: IdMap, id: number): number {
  return apply(m.hostToGuest, id) ?? id;
}

/** True when the map translates nothing (no rules). */
export function isIdentity(m: IdMap): boolean {
  return m.guestToHost.length === 0 && m.hostToGuest.length === 0;
}
