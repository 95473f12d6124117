import { describe, expect, it } from 'vitest';
import { parseCommandLine, UsageError, USAGE } from '../../src/cli/args.js';
import { coreConfig, protocolOptions } from '../../src/config.js';

const mount = (...opts: string[]) => parseCommandLine(['mount', '/s', '/m', ...opts]);
const usageError = (...opts: string[]): string => {
  try {
    mount(...opts);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    expect((e as Error).message).not.toContain('\n');
    return (e as Error).message;
  }
  throw new Error(`accepted: ${opts.join(' ')}`);
};

describe('--translate-uid, --translate-gid, --posix-acl on the command line', () => {
  it('collects repeated rules in order and hands them (and --posix-acl) to the core', () => {
    const c = mount('--translate-uid', 'squash-guest:0:1000:4294967295', '--translate-uid', 'host:1000:0:1', '--translate-gid', 'map:0:100:5');
    if (c.kind !== 'mount') throw new Error(c.kind);
    expect(c.config.translateUid).toEqual(['squash-guest:0:1000:4294967295', 'host:1000:0:1']);
    expect(coreConfig(c.config).translateGid).toEqual(['map:0:100:5']);
    const a = mount('--posix-acl');
    if (a.kind !== 'mount') throw new Error(a.kind);
    expect(protocolOptions(coreConfig(a.config)).posixAcl).toBe(true);
    expect(protocolOptions(coreConfig(a.config)).requesterGroups?.(process.pid)).toEqual(expect.any(Array));
  });

  it('refuses a bad rule, an overlap and the combinations virtiofsd refuses, in one line', () => {
    expect(usageError('--translate-uid', 'map:1:2')).toMatch(/^--translate-uid 'map:1:2': map takes 3 numbers/);
    expect(usageError('--translate-gid', 'mapp:1:2:3')).toMatch(/^--translate-gid 'mapp:1:2:3': unknown mapping type/);
    expect(usageError('--translate-uid', 'map:0:0:10', '--translate-uid', 'squash-guest:5:1:1')).toMatch(/overlaps/);
    expect(usageError('--translate-uid', 'map:0:0:1', '--posix-acl')).toMatch(/--posix-acl cannot be combined/);
    expect(usageError('--posix-acl', '--no-xattr')).toMatch(/--posix-acl needs extended attributes/);
    expect(usageError('--posix-acl', '--frontend', 'fuse-native')).toMatch(/--posix-acl needs --frontend raw/);
    expect(usageError('--no-translate-uid')).toMatch(/unknown option '--no-translate-uid'/);
  });

  it('--help names the options with virtiofsd', () => {
    expect(USAGE).toMatch(/--translate-uid RULE, --translate-gid RULE\n[^]*virtiofsd's options of the same name/);
    expect(USAGE).toMatch(/--posix-acl .*virtiofsd --posix-acl/);
  });
});
