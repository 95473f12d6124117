/**
 * Identity on the mount: --translate-uid/--translate-gid round trips (create, chown, attributes,
 * forbid-guest), supplementary groups (ACCESS, the group of created files) and --posix-acl (allow
 * and deny through named user and named group entries, default ACL inheritance compared with the
 * host). Clients are other users: setpriv with numeric ids (no passwd entries needed).
 */
import { describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { run, runSync, type RunResult } from '../helpers/child.js';
import { mountSkipReason, useMount } from '../helpers/mount.js';

const skip = mountSkipReason() ?? (fs.existsSync('/usr/bin/setpriv') ? null : 'setpriv is missing');
const haveAcl = fs.existsSync('/usr/bin/setfacl') && fs.existsSync('/usr/bin/getfacl');

/** Run a shell script as uid:gid with exactly `groups` as supplementary groups. */
function as(uid: number, gid: number, groups: number[], script: string, ...args: string[]): Promise<RunResult> {
  const g = groups.length ? [`--groups=${groups.join(',')}`] : ['--clear-groups'];
  return run('setpriv', [`--reuid=${uid}`, `--regid=${gid}`, ...g, '--', 'sh', '-c', script, 'client', ...args], { timeoutMs: 10_000 });
}

/** Let other users reach orig/ and mnt/ (the test's temp dir is 0700). */
function openUp(orig: string): void {
  fs.chmodSync(path.dirname(orig), 0o755);
  fs.chmodSync(orig, 0o777);
}

const owner = (p: string): [number, number] => {
  const st = fs.lstatSync(p);
  return [st.uid, st.gid];
};

describe.skipIf(skip !== null)('--translate-uid / --translate-gid', () => {
  const rules = ['map:2000:3000:10', 'forbid-guest:2666:1'];
  const m = useMount({
    args: ['--allow-other', '--cache', 'never', ...rules.flatMap((r) => ['--translate-uid', r, '--translate-gid', r])],
    setup: (orig) => {
      openUp(orig);
      fs.writeFileSync(path.join(orig, 'hostfile'), 'x');
      fs.chownSync(path.join(orig, 'hostfile'), 3005, 3006);
      fs.writeFileSync(path.join(orig, 'unmapped'), 'x');
      fs.chownSync(path.join(orig, 'unmapped'), 5000, 5001);
    },
  });

  it('a file a mapped user creates belongs to the host id on the host and to the client id on the mount', async () => {
    const { orig, mnt } = m();
    const r = await as(2001, 2002, [], 'touch "$1/made" && mkdir "$1/dir" && ln -s t "$1/sym" && mknod "$1/fifo" p', mnt);
    expect(r.stderr).toBe('');
    for (const n of ['made', 'dir', 'sym', 'fifo']) {
      expect(owner(path.join(orig, n)), n).toEqual([3001, 3002]);
      expect(owner(path.join(mnt, n)), n).toEqual([2001, 2002]);
    }
  });

  it('host ids are shown translated in stat and in a listing (readdirplus); ids outside the rules unchanged', async () => {
    const { mnt } = m();
    expect(owner(path.join(mnt, 'hostfile'))).toEqual([2005, 2006]);
    expect(owner(path.join(mnt, 'unmapped'))).toEqual([5000, 5001]);
    const ls = await run('ls', ['-ln', mnt], { timeoutMs: 10_000 });
    expect(ls.stdout).toMatch(/ 2005 2006 .* hostfile\n/);
    expect(ls.stdout).toMatch(/ 5000 5001 .* unmapped\n/);
  });

  it('chown on the mount sets the host ids; a host chown shows on the mount', async () => {
    const { orig, mnt } = m();
    fs.writeFileSync(path.join(orig, 'c'), '');
    fs.chownSync(path.join(mnt, 'c'), 2007, 2008);
    expect(owner(path.join(orig, 'c'))).toEqual([3007, 3008]);
    expect(owner(path.join(mnt, 'c'))).toEqual([2007, 2008]);
    fs.chownSync(path.join(orig, 'c'), 3009, 3000);
    expect(owner(path.join(mnt, 'c'))).toEqual([2009, 2000]);
  });

  it('a forbidden id is EPERM: as a creator, as a chown target', async () => {
    const { orig, mnt } = m();
    const r = await as(2666, 2001, [], 'touch "$1/nope"', mnt);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Operation not permitted/);
    const g = await as(2001, 2666, [], 'mkdir "$1/nope2"', mnt);
    expect(g.stderr).toMatch(/Operation not permitted/);
    expect(fs.existsSync(path.join(orig, 'nope'))).toBe(false);
    expect(fs.existsSync(path.join(orig, 'nope2'))).toBe(false);
    fs.writeFileSync(path.join(orig, 'd'), '');
    expect(() => fs.chownSync(path.join(mnt, 'd'), 2666, -1)).toThrow(/EPERM/);
    expect(() => fs.chownSync(path.join(mnt, 'd'), -1, 2666)).toThrow(/EPERM/);
    expect(owner(path.join(orig, 'd'))).toEqual([0, 0]);
  });
});

describe.skipIf(skip !== null)('supplementary groups', () => {
  describe('ACCESS (no default_permissions: the server checks)', () => {
    const m = useMount({
      args: ['--allow-other', '--no-default-permissions', '--cache', 'never'],
      setup: (orig) => {
        openUp(orig);
        const g = path.join(orig, 'grp');
        fs.mkdirSync(g);
        fs.chownSync(g, 0, 4242);
        fs.chmodSync(g, 0o070);
      },
    });

    it('a user whose access comes only through a supplementary group is granted it, one without is refused', async () => {
      const { mnt } = m();
      const probe = 'test -r "$1/grp" && test -w "$1/grp" && test -x "$1/grp" && echo yes';
      expect((await as(1500, 1500, [4242], probe, mnt)).stdout).toBe('yes\n');
      expect((await as(1500, 1500, [7, 4242, 9], probe, mnt)).stdout).toBe('yes\n');
      const no = await as(1500, 1500, [], probe, mnt);
      expect(no.stdout).toBe('');
      expect(no.status).toBe(1);
      // the primary group still counts
      expect((await as(1500, 4242, [], probe, mnt)).stdout).toBe('yes\n');
    });
  });

  describe('creates (default_permissions: the kernel checks, and sends the parent\'s group)', () => {
    const m = useMount({
      args: ['--allow-other', '--cache', 'never'],
      setup: (orig) => {
        openUp(orig);
        for (const d of ['grp', 'grp-host', 'sgid', 'sgid-host']) {
          fs.mkdirSync(path.join(orig, d));
          fs.chownSync(path.join(orig, d), 0, 4242);
          fs.chmodSync(path.join(orig, d), d.startsWith('sgid') ? 0o2070 : 0o070);
        }
      },
    });

    it('a file created through a supplementary group gets the owner and group a local create gives it', async () => {
      const { orig, mnt } = m();
      const script = 'touch "$1/f" && mkdir "$1/d" && echo ok';
      for (const [d, host] of [['grp', 'grp-host'], ['sgid', 'sgid-host']] as const) {
        expect((await as(1500, 1500, [4242], script, path.join(mnt, d))).stdout, d).toBe('ok\n');
        expect((await as(1500, 1500, [4242], script, path.join(orig, host))).stdout, host).toBe('ok\n');
        for (const n of ['f', 'd']) {
          const local = fs.statSync(path.join(orig, host, n));
          const served = fs.statSync(path.join(orig, d, n));
          expect([served.uid, served.gid, served.mode], `${d}/${n}`).toEqual([local.uid, local.gid, local.mode]);
        }
      }
      // the requester's own group outside a setgid directory, the directory's inside one
      expect(owner(path.join(orig, 'grp', 'f'))).toEqual([1500, 1500]);
      expect(owner(path.join(orig, 'sgid', 'f'))).toEqual([1500, 4242]);
      // and without the group, the kernel refuses
      expect((await as(1501, 1501, [], 'touch "$1/grp/x"', mnt)).stderr).toMatch(/Permission denied/);
    });
  });
});

describe.skipIf(skip !== null || !haveAcl)('--posix-acl', () => {
  const acl = (args: string[]): void => {
    const r = runSync('setfacl', args);
    if (r.status !== 0) throw new Error(`setfacl ${args.join(' ')}: ${r.stderr}`);
  };
  const defaults = ['-d', '-m', 'u::rwx,u:1607:rwx,g::rwx,g:4300:r-x,m::rwx,o::---'];
  const m = useMount({
    args: ['--allow-other', '--posix-acl', '--cache', 'never'],
    setup: (orig) => {
      openUp(orig);
      const f = (n: string, mode: number): string => {
        const p = path.join(orig, n);
        fs.writeFileSync(p, 'secret\n');
        fs.chmodSync(p, mode);
        return p;
      };
      acl(['-m', 'u:1600:rw', f('user-allow', 0o600)]);
      acl(['-m', 'u:1602:---', f('user-deny', 0o644)]);
      acl(['-m', 'g:4300:rw', f('group-allow', 0o600)]);
      acl(['-m', 'g:4301:---', f('group-deny', 0o644)]);
      f('later', 0o600);
      for (const d of ['dflt', 'dflt-host']) {
        fs.mkdirSync(path.join(orig, d));
        acl([...defaults, path.join(orig, d)]);
      }
      for (const d of ['plain', 'plain-host']) fs.mkdirSync(path.join(orig, d));
    },
  });
  const rw = 'cat "$1" && echo more >> "$1" && echo ok';

  it('a named user entry allows, and denies where the mode bits alone would allow', async () => {
    const { mnt } = m();
    expect((await as(1600, 1600, [], rw, path.join(mnt, 'user-allow'))).stdout).toBe('secret\nok\n');
    expect((await as(1601, 1601, [], rw, path.join(mnt, 'user-allow'))).stderr).toMatch(/Permission denied/);
    expect((await as(1602, 1602, [], 'cat "$1"', path.join(mnt, 'user-deny'))).stderr).toMatch(/Permission denied/);
    expect((await as(1603, 1603, [], 'cat "$1"', path.join(mnt, 'user-deny'))).stdout).toBe('secret\n');
  });

  it('a named group entry allows a member (also a supplementary one) and denies where "other" would allow', async () => {
    const { mnt } = m();
    expect((await as(1604, 1604, [4300], rw, path.join(mnt, 'group-allow'))).stdout).toBe('secret\nok\n');
    expect((await as(1604, 1604, [], rw, path.join(mnt, 'group-allow'))).stderr).toMatch(/Permission denied/);
    expect((await as(1605, 1605, [4301], 'cat "$1"', path.join(mnt, 'group-deny'))).stderr).toMatch(/Permission denied/);
    expect((await as(1605, 4301, [], 'cat "$1"', path.join(mnt, 'group-deny'))).stderr).toMatch(/Permission denied/);
    expect((await as(1605, 1605, [], 'cat "$1"', path.join(mnt, 'group-deny'))).stdout).toBe('secret\n');
  });

  it('an ACL set through the mount reaches the host and takes effect at once', async () => {
    const { orig, mnt } = m();
    expect((await as(1606, 1606, [], 'cat "$1"', path.join(mnt, 'later'))).stderr).toMatch(/Permission denied/);
    acl(['-m', 'u:1606:r', path.join(mnt, 'later')]);
    expect(runSync('getfacl', ['-n', '-p', path.join(orig, 'later')]).stdout).toMatch(/^user:1606:r--$/m);
    expect((await as(1606, 1606, [], 'cat "$1"', path.join(mnt, 'later'))).stdout).toBe('secret\n');
  });

  it('files and directories made in a directory with a default ACL get what the host gives them (the umask does not apply)', async () => {
    const { orig, mnt } = m();
    const make = 'umask 022 && cd "$1" && touch f && mkdir d && mknod p p && echo ok';
    const facl = (p: string): string => runSync('getfacl', ['-n', '-p', '--omit-header', p]).stdout;
    for (const [d, host] of [['dflt', 'dflt-host'], ['plain', 'plain-host']] as const) {
      expect((await as(0, 0, [], make, path.join(mnt, d))).stdout).toBe('ok\n');
      expect((await as(0, 0, [], make, path.join(orig, host))).stdout).toBe('ok\n');
      for (const n of ['f', 'd', 'p']) {
        const served = path.join(orig, d, n);
        const local = path.join(orig, host, n);
        expect(fs.statSync(served).mode.toString(8), `${d}/${n}`).toBe(fs.statSync(local).mode.toString(8));
        expect(facl(served), `${d}/${n}`).toBe(facl(local));
      }
    }
    // the inheritance really happened (not two equally wrong answers)
    expect(facl(path.join(orig, 'dflt', 'f'))).toMatch(/^user:1607:rwx\s+#effective:rw-$/m);
    expect(fs.statSync(path.join(orig, 'dflt', 'd')).mode & 0o777).toBe(0o770);
    expect(fs.statSync(path.join(orig, 'plain', 'd')).mode & 0o777).toBe(0o755);
    // and the inherited entry grants what it says, through the mount
    expect((await as(1607, 1607, [], 'echo hi > "$1/f" && cat "$1/f"', path.join(mnt, 'dflt'))).stdout).toBe('hi\n');
  });
});
