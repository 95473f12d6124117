import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { loadAddon } from '../../src/sys/binding.js';
import { sys } from '../../src/sys/syscalls.js';
import { useTmpDir } from './util.js';

const BINDING_TS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'sys', 'binding.ts');

describe('binding loader', () => {
  const t = useTmpDir();

  it('loads the addon from the package root and exports one function per syscall', () => {
    const addon = loadAddon();
    expect(addon).toBe(sys); // require() cache: loaded once
    for (const name of ['openat', 'openat2', 'nameToHandleAt', 'statx', 'getdents64', 'ofdSetlkw', 'makedev']) {
      expect(typeof (addon as unknown as Record<string, unknown>)[name]).toBe('function');
    }
  });

  it('reports every path it tried when the addon is missing', async () => {
    // a copy of binding.ts inside a package without a built addon
    mkdirSync(t.path('pkg/src/sys'), { recursive: true });
    writeFileSync(t.path('pkg/package.json'), '{"name":"x","type":"module"}');
    copyFileSync(BINDING_TS, t.path('pkg/src/sys/binding.ts'));
    const mod = (await import(t.path('pkg/src/sys/binding.ts'))) as typeof import('../../src/sys/binding.js');
    let message = '';
    try {
      mod.loadAddon();
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain('cannot load the handlefs_sys addon');
    expect(message).toContain(`${t.path('pkg/native/build/Release/handlefs_sys.node')} (not found)`);
  });
});
