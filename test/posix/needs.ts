/** Which of the case table's `needs` a target directory has, probed with plain syscalls. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runSync } from '../helpers/child.js';
import type { Need } from './cases.js';
import { PYTHON } from './util.js';

export function probeNeeds(dir: string): Set<Need> {
  const have = new Set<Need>();
  if (process.getuid?.() === 0) have.add('root');
  const probe = fs.mkdtempSync(path.join(dir, 'hfs-probe-'));
  try {
    const py = (code: string): boolean => runSync(PYTHON, ['-c', code, probe]).status === 0;
    if (py(`import os,sys; p=sys.argv[1]+'/x'; open(p,'w').close(); os.setxattr(p,'user.probe',b'1')`)) have.add('user-xattr');
    if (py(`import os,sys; os.close(os.open(sys.argv[1], os.O_TMPFILE|os.O_RDWR, 0o600))`)) have.add('tmpfile');
    if (py(`import os,sys,mmap; fd=os.open(sys.argv[1]+'/m', os.O_RDWR|os.O_CREAT); os.ftruncate(fd,4096); mmap.mmap(fd,4096)[0:1]=b'x'`)) have.add('shared-mmap');
  } finally {
    fs.rmSync(probe, { recursive: true, force: true });
  }
  return have;
}
