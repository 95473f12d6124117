/**
 * One-line request tracing at debug level (go-fuse request.go / print.go), in one stable format:
 *   rx <unique> <OPCODE> n<nodeid> <args>
 *   tx <unique> <ERRNO|OK> <summary>
 * Only called when debug is enabled: the server checks the level before building any string.
 */
import { errnoName } from '../errors.js';
import { readStruct, type StructValue } from './abi.js';
import { IN, replyErrno, type Request } from './codec.js';
import type { OpcodeRow } from './opcodes.js';

const SKIP = /^(padding|unused|dummy|reserved|__)/;

/** Bytes as a quoted string with non-printable bytes escaped (names may not be UTF-8). */
function quoteBytes(b: Buffer, max = 64): string {
  let s = '"';
  const n = Math.min(b.length, max);
  for (let i = 0; i < n; i++) {
    const c = b[i]!;
    if (c === 0x22 || c === 0x5c) s += `\\${String.fromCharCode(c)}`;
    else if (c >= 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return b.length > max ? `${s}"...(${b.length})` : `${s}"`;
}

function fields(v: StructValue, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, x] of Object.entries(v)) {
    if (SKIP.test(k)) continue;
    if (typeof x === 'object') out.push(...fields(x, `${k}.`));
    else out.push(`${prefix}${k}=${typeof x === 'bigint' && x > 0xffffn ? `0x${x.toString(16)}` : String(x)}`);
  }
  return out;
}

/** `rx 12 LOOKUP n1 "foo"` */
export function rxLine(r: Request, row: OpcodeRow | undefined, name: string): string {
  const parts = [`rx ${r.unique} ${name} n${r.nodeid}`];
  if (row?.in && r.buf.length >= IN + row.in.SIZE) parts.push(...fields(readStruct(row.in, r.buf, IN)));
  if (r.name1) parts.push(quoteBytes(r.name1));
  if (r.name2) parts.push(quoteBytes(r.name2));
  return parts.join(' ');
}

/** `tx 12 OK 144` or `tx 12 ENOENT` */
export function txLine(unique: bigint, reply: Buffer | null): string {
  if (reply === null) return `tx ${unique} -`;
  const err = replyErrno(reply);
  return err === 0 ? `tx ${unique} OK ${reply.length}` : `tx ${unique} ${errnoName(err)}`;
}
