import { readFileSync } from 'node:fs';

/** NGROUPS_MAX: more is not a process's group list */
const NGROUPS_MAX = 65536;

/**
 * The supplementary groups of process `pid` (the "Groups:" line of /proc/PID/status, as libfuse's
 * fuse_req_getgroups reads it), or null when the process is gone or the line is unreadable.
 * A requester's pid on a local FUSE mount is in our pid namespace; the answer is as fresh as the
 * request (a process that changes its groups meanwhile is seen either way, as with any race).
 */
export function processGroups(pid: number): number[] | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return null;
  }
  const line = /^Groups:[ \t]*([0-9 \t]*)$/m.exec(text);
  if (!line) return null;
  const groups = line[1]!.split(/[ \t]+/).filter((g) => g !== '').map(Number);
  return groups.length <= NGROUPS_MAX && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff_ffff) ? groups : null;
}
