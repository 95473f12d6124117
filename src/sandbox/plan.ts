/** The sandbox a supervised worker gets from the configuration (src/sandbox/launcher.ts starts it). */
import { resolve } from 'node:path';
import type { Config, CoreConfig } from '../config.js';
import { capNumbers, defaultCaps } from './capabilities.js';
import { launchCommand, sandboxed, type SandboxPlan, type WorkerLaunch } from './launcher.js';

export function sandboxPlan(cfg: Config): SandboxPlan {
  // chroot: the worker chroots itself once loaded (it drops sys_chroot then)
  const base = [...defaultCaps({ reopenByHandle: cfg.reopen !== 'path' }), ...(cfg.sandbox === 'chroot' ? ['sys_chroot' as const] : [])];
  const caps = cfg.sandbox !== 'none' || cfg.modcaps ? capNumbers(base, cfg.modcaps ?? { add: [], drop: [] }) : null;
  return { sandbox: cfg.sandbox, seccomp: cfg.seccomp, caps };
}

/**
 * The worker's configuration and how it is started. A sandboxed worker's cwd is not the
 * supervisor's, so its file paths are made absolute here.
 */
export function workerLaunch(cfg: Config, core: CoreConfig, share: string): { core: CoreConfig; launch: WorkerLaunch | null } {
  const plan = sandboxPlan(cfg);
  if (!sandboxed(plan)) return { core, launch: null };
  const abs = (f: string | null): string | null => (f === null ? null : resolve(f));
  const placed = { ...core, statsFile: abs(core.statsFile), stateFile: abs(core.stateFile) };
  const files = [placed.statsFile, placed.stateFile].filter((f): f is string => f !== null);
  return { core: placed, launch: launchCommand(plan, share, files) };
}
