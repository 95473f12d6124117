/**
 * The command line of virtiofsd's --xattrmap, --security-label, --announce-submounts and
 * --preserve-noatime: parsed into Config, checked (one-line usage errors), and carried to the
 * core and protocol options.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { parseCommandLine, UsageError, USAGE } from '../../src/cli/args.js';
import { coreConfig, passthroughOptions, protocolOptions, type Config } from '../../src/config.js';

const mount = (...opts: string[]): Config => {
  const c = parseCommandLine(['mount', '/s', '/m', ...opts]);
  if (c.kind !== 'mount') throw new Error('not a mount command');
  return c.config;
};
const usageError = (...opts: string[]): string => {
  try {
    mount(...opts);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error(`accepted: ${opts.join(' ')}`);
};
const keys = { key: Buffer.alloc(32), previousKeys: [] };

describe("virtiofsd's xattr, label, submount and atime options", () => {
  it('are off by default and on when given; the core and protocol options follow', () => {
    const d = mount();
    expect([d.xattrmap, d.securityLabel, d.announceSubmounts, d.preserveNoatime]).toEqual([null, false, false, false]);
    expect(passthroughOptions(coreConfig(d), '/s', keys, pino({ level: 'silent' }))).toMatchObject({ xattrmap: null, announceSubmounts: false, preserveNoatime: false });
    expect(protocolOptions(coreConfig(d))).toMatchObject({ securityLabel: false, announceSubmounts: false });

    const c = mount('--xattrmap', ':map::user.virtiofs.:', '--security-label', '--announce-submounts', '--preserve-noatime');
    expect([c.xattrmap, c.securityLabel, c.announceSubmounts, c.preserveNoatime]).toEqual([':map::user.virtiofs.:', true, true, true]);
    const po = passthroughOptions(coreConfig(c), '/s', keys, pino({ level: 'silent' }));
    expect(po).toMatchObject({ announceSubmounts: true, preserveNoatime: true });
    expect(po.xattrmap!.toHost(Buffer.from('trusted.a'), 'set')).toEqual(Buffer.from('user.virtiofs.trusted.a'));
    expect(protocolOptions(coreConfig(c))).toMatchObject({ securityLabel: true, announceSubmounts: true });
    // a supervised worker gets the core config as plain data
    expect(structuredClone(coreConfig(c))).toEqual(coreConfig(c));
  });

  it('a malformed map, a map or label without xattrs, protocol options with fuse-native, and --no-xattrmap are one-line usage errors', () => {
    expect(usageError('--xattrmap', ':prefix:client:hi')).toBe("--xattrmap: rule 1: missing ':' at the end of its key field");
    expect(usageError('--xattrmap', ' ')).toBe('--xattrmap: no rules');
    expect(usageError('--xattrmap', ':ok:all:::', '--no-xattr')).toMatch(/^--xattrmap needs extended attributes/);
    expect(usageError('--security-label', '--no-xattr')).toMatch(/^--security-label needs extended attributes/);
    expect(usageError('--no-xattrmap')).toBe("unknown option '--no-xattrmap'");
    expect(usageError('--security-label', '--frontend', 'fuse-native')).toBe('--security-label needs --frontend raw');
    expect(usageError('--announce-submounts', '--frontend', 'fuse-native')).toBe('--announce-submounts needs --frontend raw');
    // the core's options work with either frontend
    expect(mount('--xattrmap', ':ok:all:::', '--preserve-noatime', '--frontend', 'fuse-native').preserveNoatime).toBe(true);
    expect(usageError('--xattrmap')).toMatch(/needs a value/);
    for (const m of [usageError('--xattrmap', ':x:y:z:w:'), usageError('--xattrmap', ':ok:nowhere:::')]) expect(m).not.toContain('\n');
  });

  it("--help names each with virtiofsd's option", () => {
    const help = USAGE.replace(/\s+/g, ' ');
    for (const o of ['--xattrmap', '--security-label', '--announce-submounts', '--preserve-noatime']) {
      expect(USAGE).toMatch(new RegExp(`^  ${o}`, 'm'));
      expect(help).toContain(`virtiofsd's ${o}`);
    }
  });
});
