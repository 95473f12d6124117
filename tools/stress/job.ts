/**
 * What the stress tool hands a client process (a JSON job file) and what the client prints back
 * (its "R <json>" line, read by tools/lib/collect.ts).
 */
export interface PhaseWork {
  /** readdir each [dir, entry count]; lstat each [i, relpath, size] */
  stat: { files: [number, string, number][]; dirs: [string, number][] };
  /** read each [i, relpath, version] and compare with content(i, version) */
  read: { files: [number, string, number][] };
  /** read each [i, relpath, sha256 hex, size] and compare the hash */
  verify: { files: [number, string, string, number][] };
  /** hold each [i, relpath, mode] open, then read/patch random ones for holdMs */
  hold: { files: [number, string, 'rw' | 'ro'][]; holdMs: number };
}
export type Phase = keyof PhaseWork;

export type Job = { [P in Phase]: PhaseWork[P] & { phase: P; mnt: string; timeoutMs: number; seed: number } }[Phase];

export interface ClientError {
  i: number;
  op: string;
  code: string;
  /** only on the first errors (a bounded report) */
  msg?: string;
}

export interface Corrupt {
  i: number;
  op: string;
  why: string;
}

export interface ClientResult {
  phase: Phase;
  ops: number;
  ms: number;
  timedOut: boolean;
  errors: ClientError[];
  corrupt: Corrupt[];
  corruptCount: number;
  /** hold phase: every acknowledged write, in order: [i, offset, base64 bytes] */
  patches?: [number, number, string][];
  held?: number;
  reads?: number;
  writes?: number;
}
