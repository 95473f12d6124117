/**
 * xattr name mapping with virtiofsd's `--xattrmap` syntax and semantics (virtiofsd
 * doc/xattr-mapping.md): a list of rules `:type:scope:key:prepend:`, each with its own separator
 * (the rule's first non-white-space character), white space between rules.
 *
 * - type `prefix`: a client name starting with `key` gets `prepend` in front on the host; a host
 *   name starting with `prepend` is listed with it stripped.
 * - type `ok`: the name passes unchanged. `bad`: a client name is refused (EPERM; ENODATA for a
 *   get, as for a name that is not there), a host name is hidden from lists. `unsupported`: the
 *   same with ENOTSUP.
 * - scope `client` matches `key` against the names of get/set/remove; `server` matches `prepend`
 *   against the names a list returns; `all` both.
 * - `:map:key:prepend:` is shorthand for prefix all key->prepend, then (key empty) bad all, or
 *   (key not empty) bad for host names starting with key and client names starting with prepend,
 *   then ok all. It must be the last rule.
 *
 * The first matching rule wins. A name no rule matches is treated as by a final `:bad:all:::`
 * (the C virtiofsd appends that terminator; the Rust one aborts the process).
 */
import { E } from '../errors.js';

export type XattrRuleType = 'prefix' | 'ok' | 'bad' | 'unsupported';

export interface XattrRule {
  readonly type: XattrRuleType;
  /** matches client names (get/set/remove) against `key` */
  readonly client: boolean;
  /** matches host names (list) against `prepend` */
  readonly server: boolean;
  readonly key: Buffer;
  readonly prepend: Buffer;
}

/** A malformed --xattrmap: the message is one line, naming the rule (1-based) where it applies. */
export class XattrMapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'XattrMapError';
  }
}

/** Longest mapping accepted (the rules are read once; this only bounds a hostile command line). */
const MAX_SPEC = 64 * 1024;
const TYPES: readonly string[] = ['prefix', 'ok', 'bad', 'unsupported', 'map'];
const SCOPES: Readonly<Record<string, { client: boolean; server: boolean }>> = {
  client: { client: true, server: false },
  server: { client: false, server: true },
  all: { client: true, server: true },
};

const isSpace = (c: string): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';
const printable = (s: string): string => JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}...` : s);

/** Parse a --xattrmap value; throws XattrMapError. */
export function parseXattrMap(spec: string): XattrMap {
  if (spec.length > MAX_SPEC) throw new XattrMapError(`the mapping is longer than ${MAX_SPEC} characters`);
  const chars = [...spec];
  const rules: XattrRule[] = [];
  let i = 0;
  let n = 0;
  while (i < chars.length) {
    if (isSpace(chars[i]!)) {
      i++;
      continue;
    }
    n++;
    const sep = chars[i++]!;
    const field = (what: string): string => {
      const start = i;
      while (i < chars.length && chars[i] !== sep) i++;
      if (i === chars.length) throw new XattrMapError(`rule ${n}: missing '${sep}' at the end of its ${what} field`);
      const s = chars.slice(start, i++).join('');
      if (s.includes('\0')) throw new XattrMapError(`rule ${n}: NUL in its ${what} field`);
      return s;
    };
    const type = field('type');
    if (!TYPES.includes(type)) {
      throw new XattrMapError(`rule ${n}: unknown type ${printable(type)} (prefix, ok, bad, unsupported or map)`);
    }
    if (type === 'map') {
      const key = Buffer.from(field('key'));
      const prepend = Buffer.from(field('prepend'));
      if (chars.slice(i).some((c) => !isSpace(c))) throw new XattrMapError(`rule ${n}: a map rule must be the last rule`);
      rules.push(...expandMap(key, prepend));
      break;
    }
    const scopeName = field('scope');
    const scope = Object.hasOwn(SCOPES, scopeName) ? SCOPES[scopeName]! : undefined;
    if (!scope) throw new XattrMapError(`rule ${n}: unknown scope ${printable(scopeName)} (client, server or all)`);
    rules.push({ type: type as XattrRuleType, ...scope, key: Buffer.from(field('key')), prepend: Buffer.from(field('prepend')) });
  }
  if (rules.length === 0) throw new XattrMapError('no rules');
  return new XattrMap(rules);
}

function expandMap(key: Buffer, prepend: Buffer): XattrRule[] {
  const all = { client: true, server: true };
  const rules: XattrRule[] = [{ type: 'prefix', ...all, key, prepend }];
  if (key.length === 0) {
    rules.push({ type: 'bad', ...all, key: Buffer.alloc(0), prepend: Buffer.alloc(0) });
    return rules;
  }
  // host names that look like unmapped client names are hidden; client names that look like
  // mapped host names are refused (else a client could reach the mapped space directly)
  rules.push({ type: 'bad', ...all, key: prepend, prepend: key });
  rules.push({ type: 'ok', ...all, key: Buffer.alloc(0), prepend: Buffer.alloc(0) });
  return rules;
}

/** How a client's name reaches the host: another name, or an errno (positive). */
export type MappedName = Buffer | number;

export type XattrOp = 'get' | 'set' | 'remove';

export class XattrMap {
  constructor(readonly rules: readonly XattrRule[]) {}

  /** The host name for a client's name, or the errno that refuses it for `op`. */
  toHost(name: Buffer, op: XattrOp): MappedName {
    const r = this.rules.find((x) => x.client && startsWith(name, x.key));
    switch (r?.type) {
      case 'ok':
        return name;
      case 'prefix':
        return Buffer.concat([r.prepend, name]);
      case 'unsupported':
        return E.ENOTSUP;
      default:
        // bad, or no rule: a get answers as for a name that is not there
        return op === 'get' ? E.ENODATA : E.EPERM;
    }
  }

  /** The client's name for a host name, or null when it is hidden. */
  toClient(name: Buffer): Buffer | null {
    const r = this.rules.find((x) => x.server && startsWith(name, x.prepend));
    switch (r?.type) {
      case 'ok':
        return name;
      case 'prefix':
        return name.subarray(r.prepend.length);
      default:
        return null;
    }
  }

  /**
   * A host listxattr result (NUL-terminated names) as the client sees it: each name mapped,
   * hidden names dropped. A mapped name that would be empty is dropped too (it could not be asked for).
   */
  filterList(list: Buffer): Buffer {
    const out: Buffer[] = [];
    let start = 0;
    while (start < list.length) {
      let nul = list.indexOf(0, start);
      if (nul < 0) nul = list.length;
      const c = nul > start ? this.toClient(list.subarray(start, nul)) : null;
      if (c !== null && c.length > 0) out.push(c, NUL);
      start = nul + 1;
    }
    return Buffer.concat(out);
  }
}

const NUL = Buffer.alloc(1);

function startsWith(name: Buffer, prefix: Buffer): boolean {
  return name.length >= prefix.length && name.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}
