/**
 * The server's resident memory over a stress run, against the inodes it knows: VmRSS sampled from
 * /proc/PID/status, VmHWM (the kernel's own peak, which sees what falls between samples) read at
 * every sample and once more before the server is stopped, and the "inodes" counter of the
 * server's --stats-file (rewritten every second) read at the same moments.
 */
import * as fs from 'node:fs';

export interface MemoryReport {
  /** RSS once the mount was live, before any client walked the tree */
  rssStartBytes: number;
  /** the highest of every VmRSS sample and of VmHWM */
  rssPeakBytes: number;
  /** the highest VmRSS sample (below rssPeakBytes when the peak fell between samples: VmHWM) */
  rssPeakSampleBytes: number;
  /** inodes known at the highest RSS sample (see inodesSource) */
  inodesKnown: number | null;
  /** the most inodes known at any sample */
  inodesMax: number | null;
  inodesSource: string;
  /** (rssPeakBytes - rssStartBytes) / inodesKnown */
  bytesPerInode: number | null;
  /** rssPeakBytes / inodesKnown */
  bytesPerInodeOfPeak: number | null;
  samples: number;
}

/** VmRSS and VmHWM of `pid` in bytes, or null once it is gone. */
export function readRss(pid: number): { rss: number; hwm: number } | null {
  let st;
  try {
    st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s*(\\d+) kB`, 'm').exec(st)?.[1] ?? NaN) * 1024;
  const rss = kb('VmRSS');
  const hwm = kb('VmHWM');
  return Number.isFinite(rss) && Number.isFinite(hwm) ? { rss, hwm } : null;
}

export class MemorySampler {
  private start = 0;
  private peakSample = 0;
  private hwm = 0;
  private inodesAtPeak: number | null = null;
  private inodesMax: number | null = null;
  private n = 0;

  /** `inodes()` reads the server's inode count now (null: unknown) */
  constructor(
    private readonly pid: number,
    private readonly inodes: () => number | null,
  ) {}

  /** One sample; the first one is the start. False once the server is gone. */
  sample(): boolean {
    const m = readRss(this.pid);
    if (!m) return false;
    const ino = this.inodes();
    if (this.n++ === 0) this.start = m.rss;
    this.hwm = Math.max(this.hwm, m.hwm);
    if (ino !== null) this.inodesMax = Math.max(this.inodesMax ?? 0, ino);
    if (m.rss >= this.peakSample) {
      this.peakSample = m.rss;
      this.inodesAtPeak = ino ?? this.inodesAtPeak;
    }
    return true;
  }

  /** `fallback`: the inode count to use when the server publishes none, and what it counts */
  report(fallback: { inodes: number; source: string }, statsSource: string): MemoryReport | null {
    if (this.n === 0) return null;
    const peak = Math.max(this.peakSample, this.hwm);
    const fromStats = this.inodesAtPeak !== null;
    const known = fromStats ? this.inodesAtPeak : fallback.inodes;
    const per = (bytes: number): number | null => (known ? Math.round(bytes / known) : null);
    return {
      rssStartBytes: this.start,
      rssPeakBytes: peak,
      rssPeakSampleBytes: this.peakSample,
      inodesKnown: known,
      inodesMax: fromStats ? this.inodesMax : fallback.inodes,
      inodesSource: fromStats ? statsSource : fallback.source,
      bytesPerInode: per(peak - this.start),
      bytesPerInodeOfPeak: per(peak),
      samples: this.n,
    };
  }
}
