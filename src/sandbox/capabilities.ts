/**
 * The capabilities a sandboxed worker keeps: the set its features need, adjusted by --modcaps
 * (virtiofsd's syntax: `+name` adds, `-name` removes, `:` or `,` between; names as in
 * capabilities(7) without the CAP_ prefix, any case).
 */

/** capabilities(7), by number (linux/capability.h up to CAP_CHECKPOINT_RESTORE = 40). */
const CAP_NAMES = [
  'chown', 'dac_override', 'dac_read_search', 'fowner', 'fsetid', 'kill', 'setgid', 'setuid', 'setpcap',
  'linux_immutable', 'net_bind_service', 'net_broadcast', 'net_admin', 'net_raw', 'ipc_lock', 'ipc_owner',
  'sys_module', 'sys_rawio', 'sys_chroot', 'sys_ptrace', 'sys_pacct', 'sys_admin', 'sys_boot', 'sys_nice',
  'sys_resource', 'sys_time', 'sys_tty_config', 'mknod', 'lease', 'audit_write', 'audit_control', 'setfcap',
  'mac_override', 'mac_admin', 'syslog', 'wake_alarm', 'block_suspend', 'audit_read', 'perfmon', 'bpf',
  'checkpoint_restore',
] as const;

export type CapName = (typeof CAP_NAMES)[number];

export interface CapChange {
  add: CapName[];
  drop: CapName[];
}

/**
 * What the server does as root with them (virtiofsd keeps the same, bar setuid/setgid: handlefs
 * never switches credentials): chown a new file to its requester, write and set modes, times and
 * xattrs of files it does not own, keep set-id bits where the client asks, create device nodes,
 * set security.capability.
 */
const BASE: readonly CapName[] = ['chown', 'dac_override', 'fowner', 'fsetid', 'mknod', 'setfcap'];

/**
 * Left out by default: sys_admin (fanotify's rename watch, trusted.* xattrs, FUSE passthrough) --
 * with mknod it would let a compromised worker mount a host block device and leave the sandbox; the
 * core then redoes its confinement proofs per request instead of trusting the rename watch.
 */
export function defaultCaps(o: { reopenByHandle: boolean }): CapName[] {
  // open_by_handle_at and linkat(AT_EMPTY_PATH)
  return o.reopenByHandle ? [...BASE, 'dac_read_search'] : [...BASE];
}

/** `+sys_admin:-mknod` (or with commas); throws with a one-line message on a bad item. */
export function parseModcaps(spec: string): CapChange {
  const out: CapChange = { add: [], drop: [] };
  for (const item of spec.split(/[:,]/)) {
    const m = /^([+-])(?:cap_)?([a-z_]+)$/i.exec(item.trim());
    const name = m?.[2]!.toLowerCase();
    if (!m || !(CAP_NAMES as readonly string[]).includes(name!)) {
      throw new Error(`--modcaps items are +name or -name (e.g. +sys_admin:-mknod), got '${item}'`);
    }
    (m[1] === '+' ? out.add : out.drop).push(name as CapName);
  }
  return out;
}

/** The numbers of `base` with `change` applied (adding wins over nothing, dropping over the base). */
export function capNumbers(base: readonly CapName[], change: CapChange): number[] {
  const set = new Set<CapName>(base);
  for (const c of change.add) set.add(c);
  for (const c of change.drop) set.delete(c);
  return [...set].map((c) => CAP_NAMES.indexOf(c)).sort((a, b) => a - b);
}
