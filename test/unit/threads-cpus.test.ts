// The CPUs the serving threads are bound to: those of the process's affinity, which taskset (or a
// cgroup's cpuset) may narrow, not every CPU of the machine.
import { describe, expect, it } from 'vitest';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { run } from '../helpers/child.js';

const MODULE = join(process.cwd(), 'dist/frontends/devfuse/threads.js');
const PRINT = `import(${JSON.stringify(MODULE)}).then((m) => console.log(JSON.stringify(m.allowedCpus())))`;

describe('allowedCpus', () => {
  it('lists the CPUs of the process affinity', async () => {
    const r = await run(process.execPath, ['-e', PRINT]);
    expect(r.status, r.stderr).toBe(0);
    const all = JSON.parse(r.stdout) as number[];
    expect(all).toHaveLength(availableParallelism());
    expect(new Set(all).size).toBe(all.length);
  });

  // binding the child to CPU 1 needs a second CPU
  it.skipIf(availableParallelism() < 2)('under taskset -c 1, only CPU 1', async () => {
    const r = await run('taskset', ['-c', '1', process.execPath, '-e', PRINT]);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([1]);
  });
});
