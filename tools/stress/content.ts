/**
 * Deterministic file contents for the stress tool: file i at version v (0 = built, >0 = replaced
 * by the host) is a header naming (i, v) followed by a slice of a fixed pseudo-random pool, so a
 * wrong file, a stale version or a torn read never compares equal.
 */
const POOL_SIZE = 1 << 17;
let pool: Buffer | null = null;

function getPool(): Buffer {
  if (pool) return pool;
  pool = Buffer.alloc(POOL_SIZE);
  let x = 0x9e3779b9;
  for (let i = 0; i < POOL_SIZE; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    pool.writeUInt32LE(x >>> 0, i);
  }
  return pool;
}

export function content(i: number, v = 0): Buffer {
  const size = 64 + ((Math.imul(i + 1, 2654435761) + Math.imul(v, 40503)) >>> 0) % 4096;
  const out = Buffer.alloc(size);
  const hdr = Buffer.from(`#file ${i} v${v}\n`);
  hdr.copy(out, 0);
  const p = getPool();
  const off = ((Math.imul(i, 4099) + Math.imul(v, 7919)) >>> 0) % (POOL_SIZE - 4200);
  p.copy(out, hdr.length, off, off + size - hdr.length);
  return out;
}

export const dirName = (j: number): string => `d${String(j).padStart(4, '0')}`;
export const fileName = (i: number): string => `f${String(i).padStart(6, '0')}`;
