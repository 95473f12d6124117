/**
 * `handlefs virtiofsd`: virtiofsd's command line (the Rust virtiofsd's options in both forms, the C
 * virtiofsd's -o list) parsed into Config and the vhost-user plan; every refusal is a one-line
 * usage error that names the option; --print-capabilities; the executables, the description file,
 * and the built CLI run as a child process.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { isAbsolute, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseCommandLine, UsageError, USAGE, type Command } from '../../src/cli/args.js';
import { CAPABILITIES, VIRTIOFSD_USAGE } from '../../src/cli/virtiofsd-args.js';
import { coreConfig, protocolOptions, type Config } from '../../src/config.js';
import type { VhostPlan } from '../../src/frontends/vhost-user/index.js';
import { CLI, REPO } from '../../tools/lib/repo.js';
import { run } from '../helpers/child.js';

const SHARE = ['--shared-dir=/srv/share'];
const BASE = [...SHARE, '--socket-path=/run/vm1-fs.sock'];

const parse = (...args: string[]): Command => parseCommandLine(['virtiofsd', ...args]);
const served = (...args: string[]): { config: Config; vhost: VhostPlan } => {
  const c = parse(...args);
  if (c.kind !== 'virtiofsd') throw new Error(`not a virtiofsd command: ${c.kind}`);
  return c;
};
const cfg = (...opts: string[]): Config => served(...BASE, ...opts).config;
const plan = (...args: string[]): VhostPlan => served(...args).vhost;
const usageError = (...args: string[]): string => {
  try {
    parse(...args);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    const m = (e as Error).message;
    expect(m).not.toContain('\n');
    return m;
  }
  throw new Error(`accepted: ${args.join(' ')}`);
};

describe('handlefs virtiofsd: parsing', () => {
  it('defaults: as virtiofsd where it has one (xattr off, submounts announced, exit on disconnect)', () => {
    const { config, vhost } = served(...BASE);
    expect(vhost).toEqual({ listen: { path: '/run/vm1-fs.sock' }, socketGroup: null, threadPoolSize: 0, rlimitNofile: null, exitOnDisconnect: true });
    expect(config).toMatchObject({
      sharedDir: '/srv/share', cache: 'auto', readonly: false, writeback: false, xattr: false, posixAcl: false, securityLabel: false,
      announceSubmounts: true, preserveNoatime: false, reopen: 'auto', fdBudget: 'auto', handleKeyFile: null, stateFile: null,
      logLevel: 'warn', frontend: 'raw', supervise: false, sandbox: 'none', seccomp: 'none', modcaps: null, hostNotify: false, passthrough: false,
    });
    // Config's mountpoint says where the client is
    expect(config.mountpoint).toBe('vhost-user socket /run/vm1-fs.sock');
    expect(served(...SHARE, '--fd=3').config.mountpoint).toBe('vhost-user fd 3');
  });

  // [the option as --opt=value, what it sets], each also parsed as `--opt value`
  const valued: [string, (a: string[]) => unknown, unknown, string[]?][] = [
    ['--shared-dir=/data', (a) => served(...a, '--fd=3').config.sharedDir, '/data', []],
    ['--socket-path=/run/a.sock', (a) => plan(...a).listen, { path: '/run/a.sock' }, SHARE],
    ['--socket=/run/b.sock', (a) => plan(...a).listen, { path: '/run/b.sock' }, SHARE],
    ['--fd=7', (a) => plan(...a).listen, { fd: 7 }, SHARE],
    ['--socket-group=kvm', (a) => plan(...a).socketGroup, 'kvm'],
    ['--tag=myfs', (a) => plan(...a).tag, 'myfs'],
    ['--thread-pool-size=16', (a) => plan(...a).threadPoolSize, 16],
    ['--rlimit-nofile=65536', (a) => plan(...a).rlimitNofile, 65536],
    ['--rlimit-nofile=0', (a) => plan(...a).rlimitNofile, null],
    ['--cache=always', (a) => served(...a).config.cache, 'always'],
    ['--xattrmap=:map::user.virtiofs.:', (a) => served(...a).config.xattrmap, ':map::user.virtiofs.:'],
    ['--translate-uid=map:0:1000:1', (a) => served(...a).config.translateUid, ['map:0:1000:1']],
    ['--translate-gid=squash-guest:0:100:10', (a) => served(...a).config.translateGid, ['squash-guest:0:100:10']],
    ['--inode-file-handles=mandatory', (a) => served(...a).config.reopen, 'handle'],
    ['--fd-budget=500', (a) => served(...a).config.fdBudget, 500],
    ['--handle-key-file=/var/lib/k', (a) => served(...a).config.handleKeyFile, '/var/lib/k'],
    ['--log-level=info', (a) => served(...a).config.logLevel, 'info'],
    ['--sandbox=none', (a) => served(...a).config.sandbox, 'none'],
    ['--seccomp=none', (a) => served(...a).config.seccomp, 'none'],
  ];
  it.each(valued)('%s, and the same as two arguments', (opt, get, want, base = BASE) => {
    const eq = opt.indexOf('=');
    expect(get([...base, opt])).toEqual(want);
    expect(get([...base, opt.slice(0, eq), opt.slice(eq + 1)])).toEqual(want);
  });

  it('--state-file with its key file, both forms', () => {
    expect(cfg('--handle-key-file=/k', '--state-file=/st').stateFile).toBe('/st');
    expect(cfg('--handle-key-file', '/k', '--state-file', '/st').stateFile).toBe('/st');
  });

  const flags: [string, (a: string[]) => unknown, unknown][] = [
    ['--readonly', (a) => served(...a).config.readonly, true],
    ['--writeback', (a) => served(...a).config.writeback, true],
    ['--xattr', (a) => served(...a).config.xattr, true],
    ['--posix-acl', (a) => served(...a).config.posixAcl, true],
    ['--security-label', (a) => served(...a).config.securityLabel, true],
    ['--no-announce-submounts', (a) => served(...a).config.announceSubmounts, false],
    ['--preserve-noatime', (a) => served(...a).config.preserveNoatime, true],
    ['--keep-listening', (a) => plan(...a).exitOnDisconnect, false],
    ['--supervise', (a) => served(...a).config.supervise, true],
  ];
  it.each(flags)('%s, and with a value it is a usage error', (opt, get, want) => {
    expect(get([...BASE, opt])).toEqual(want);
    expect(usageError(...BASE, `${opt}=yes`)).toBe(`option '${opt}' takes no value`);
  });

  it('negations and repeats: the last one wins, as clap and fuse_opt; --translate-* accumulate', () => {
    expect(cfg('--writeback', '--no-writeback').writeback).toBe(false);
    expect(cfg('--xattr', '--no-xattr').xattr).toBe(false);
    expect(cfg('--posix-acl', '--no-posix-acl').posixAcl).toBe(false);
    expect(cfg('--security-label', '--no-security-label').securityLabel).toBe(false);
    expect(cfg('--no-announce-submounts', '--announce-submounts').announceSubmounts).toBe(true);
    expect(cfg('--cache=never', '--cache', 'metadata').cache).toBe('metadata');
    expect(plan(...BASE, '--socket-path=/run/c.sock').listen).toEqual({ path: '/run/c.sock' });
    expect(cfg('--translate-uid=map:0:1000:1', '--translate-uid', 'forbid-guest:5:1').translateUid).toEqual(['map:0:1000:1', 'forbid-guest:5:1']);
  });

  it('-d, -f (bundled too), --killpriv-v2', () => {
    expect(cfg('-d').logLevel).toBe('debug');
    expect(cfg('-df').logLevel).toBe('debug');
    expect(cfg('-f')).toEqual(cfg());
    expect(cfg('--killpriv-v2')).toEqual(cfg());
  });
});

describe("handlefs virtiofsd: the mapping onto handlefs's options", () => {
  it('--cache: the four policies, none is never', () => {
    for (const c of ['auto', 'always', 'metadata', 'never'] as const) expect(cfg(`--cache=${c}`).cache).toBe(c);
    expect(cfg('--cache=none').cache).toBe('never');
    expect(cfg('-o', 'cache=none').cache).toBe('never');
  });

  it('--readonly, --writeback reach the core and the protocol options', () => {
    const c = cfg('--readonly', '--writeback');
    expect(coreConfig(c)).toMatchObject({ readonly: true, writeback: true });
    // nothing is written back on a read-only share
    expect(protocolOptions(coreConfig(c)).writeback).toBe(false);
    expect(protocolOptions(coreConfig(cfg('--writeback'))).writeback).toBe(true);
  });

  it('xattr: off unless asked, implied by --xattrmap, --posix-acl and --security-label; an explicit --no-xattr with them is refused by Config', () => {
    expect(cfg().xattr).toBe(false);
    expect(cfg('--xattr').xattr).toBe(true);
    expect(cfg('--xattrmap=:ok:all:::').xattr).toBe(true);
    expect(cfg('--posix-acl').xattr).toBe(true);
    expect(cfg('--security-label').xattr).toBe(true);
    expect(usageError(...BASE, '--no-xattr', '--xattrmap=:ok:all:::')).toMatch(/^--xattrmap needs extended attributes/);
    expect(usageError(...BASE, '--no-xattr', '--posix-acl')).toMatch(/^--posix-acl needs extended attributes/);
    expect(usageError(...BASE, '--no-xattr', '--security-label')).toMatch(/^--security-label needs extended attributes/);
  });

  it('--inode-file-handles: never = reopen by path, prefer (fallback) = auto, mandatory = by handle', () => {
    expect(cfg('--inode-file-handles=never').reopen).toBe('path');
    expect(cfg('--inode-file-handles=prefer').reopen).toBe('auto');
    expect(cfg('--inode-file-handles=fallback').reopen).toBe('auto');
    expect(cfg('--inode-file-handles=mandatory').reopen).toBe('handle');
    expect(usageError(...BASE, '--inode-file-handles=sometimes')).toBe("--inode-file-handles must be one of never|prefer|mandatory, got 'sometimes'");
  });

  it("--log-level: virtiofsd's names (err, off) and ours", () => {
    expect(cfg('--log-level=err').logLevel).toBe('error');
    expect(cfg('--log-level=error').logLevel).toBe('error');
    expect(cfg('--log-level=off').logLevel).toBe('silent');
    expect(cfg('--log-level=trace').logLevel).toBe('trace');
    expect(usageError(...BASE, '--log-level=loud')).toMatch(/^--log-level must be one of .*, got 'loud'$/);
  });

  it("Config's own checks apply (not repeated here)", () => {
    expect(usageError(...BASE, '--state-file=/st')).toMatch(/^--state-file needs --handle-key-file/);
    expect(usageError(...BASE, '--posix-acl', '--translate-uid=map:0:1000:1')).toBe('--posix-acl cannot be combined with --translate-uid/--translate-gid');
    expect(usageError(...BASE, '--fd-budget=3')).toMatch(/^--fd-budget must be 'auto' or at least/);
    expect(usageError(...BASE, '--translate-uid=map:0:1000:0')).toMatch(/^--translate-uid /);
    expect(usageError(...BASE, '--xattrmap=:prefix:client:hi')).toMatch(/^--xattrmap: rule 1/);
    expect(usageError(...BASE, '--cache=sometimes')).toBe("--cache must be one of auto|always|metadata|never, got 'sometimes'");
    expect(usageError(...BASE, '--handle-key-file=')).toBe('--handle-key-file must not be empty');
  });
});

describe('handlefs virtiofsd: the C virtiofsd -o list', () => {
  it('-o VALUE, -oVALUE, several -o, comma lists', () => {
    const want = served('--socket-path=/s.sock', '-o', 'source=/srv/x', '-o', 'cache=always,xattr,writeback').config;
    expect(want).toMatchObject({ sharedDir: '/srv/x', cache: 'always', xattr: true, writeback: true });
    expect(served('--socket-path=/s.sock', '-osource=/srv/x,cache=always', '-oxattr,writeback').config).toEqual(want);
    expect(served('--socket-path=/s.sock', '-o=source=/srv/x,cache=always,xattr,writeback').config).toEqual(want);
  });

  it('each -o name onto its option', () => {
    const o = (list: string): Config => cfg('-o', list);
    expect(o('xattr,no_xattr').xattr).toBe(false);
    expect(o('writeback').writeback).toBe(true);
    expect(o('writeback,no_writeback').writeback).toBe(false);
    expect(o('xattrmap=:map::user.virtiofs.:').xattrmap).toBe(':map::user.virtiofs.:');
    expect(o('log_level=err').logLevel).toBe('error');
    expect(o('loglevel=info').logLevel).toBe('info');
    expect(o('debug').logLevel).toBe('debug');
    expect(o('posix_acl')).toMatchObject({ posixAcl: true, xattr: true });
    expect(o('posix_acl,no_posix_acl').posixAcl).toBe(false);
    expect(o('security_label').securityLabel).toBe(true);
    expect(o('security_label,no_security_label').securityLabel).toBe(false);
    expect(cfg('--no-announce-submounts', '-o', 'announce_submounts').announceSubmounts).toBe(true);
    expect(o('sandbox=none').sandbox).toBe('none');
    // what handlefs always does
    expect(o('killpriv_v2,no_allow_direct_io,readdirplus,flock,posix_lock')).toEqual(cfg());
  });

  it("a comma in a value: ',,' (libvirt's escape) and '\\,' (fuse_opt's)", () => {
    expect(served('--fd=3', '-o', 'source=/srv/a,,b,cache=none').config).toMatchObject({ sharedDir: '/srv/a,b', cache: 'never' });
    expect(served('--fd=3', '-o', 'source=/srv/a\\,b,cache=none').config).toMatchObject({ sharedDir: '/srv/a,b', cache: 'never' });
  });

  it('values and their absence', () => {
    expect(usageError(...BASE, '-o', 'xattr=1')).toBe("option '-o xattr' takes no value");
    expect(usageError(...BASE, '-o', 'cache')).toBe("option '-o cache' needs a value");
    expect(usageError(...BASE, '-o')).toBe("option '-o' needs a value");
    expect(usageError(...BASE, '-o', '--xattr')).toBe("option '-o' needs a value");
    expect(usageError(...BASE, '-o', 'frobnicate')).toBe("unknown option '-o frobnicate'");
    expect(usageError(...BASE, '-o', 'xattr,,')).toBe("unknown option '-o xattr,'");
  });
});

describe('handlefs virtiofsd: what VMMs and libvirt pass', () => {
  it('libvirt with the separate-options capability', () => {
    const { config, vhost } = served('--fd=3', '--shared-dir', '/var/lib/vm1', '--cache', 'never', '--sandbox', 'none', '--xattr',
      '--thread-pool-size=16', '--rlimit-nofile=65536', '--log-level', 'debug');
    expect(vhost).toEqual({ listen: { fd: 3 }, socketGroup: null, threadPoolSize: 16, rlimitNofile: 65536, exitOnDisconnect: true });
    expect(config).toMatchObject({ sharedDir: '/var/lib/vm1', cache: 'never', xattr: true, logLevel: 'debug' });
  });

  it('libvirt before it (-o, C virtiofsd style)', () => {
    const { config, vhost } = served('--fd=4', '-o', 'source=/var/lib/vm,,1,cache=always,xattr,flock,posix_lock', '--thread-pool-size=0', '-d');
    expect(vhost.listen).toEqual({ fd: 4 });
    expect(config).toMatchObject({ sharedDir: '/var/lib/vm,1', cache: 'always', xattr: true, logLevel: 'debug' });
  });

  it("QEMU's documentation and Kata", () => {
    expect(served('--socket-path=/var/run/vm001-vhost-fs.sock', '-o', 'source=/var/lib/fs/vm001').config.sharedDir).toBe('/var/lib/fs/vm001');
    const kata = served('--cache=auto', '--shared-dir=/run/kata/shared', '--fd=3', '--thread-pool-size=1', '--announce-submounts');
    expect(kata.vhost.threadPoolSize).toBe(1);
    expect(kata.config.announceSubmounts).toBe(true);
  });
});

describe('handlefs virtiofsd: refusals are one-line usage errors that name the option', () => {
  const refusedLong = ['--no-killpriv-v2', '--allow-direct-io', '--allow-mmap', '--no-readdirplus', '--syslog', '--daemonize',
    '--migration-verify-handles', '--migration-confirm-paths'];
  it.each(refusedLong)('%s', (opt) => {
    expect(usageError(...BASE, opt)).toMatch(new RegExp(`^${opt} is not supported yet: \\S`));
  });
  const refusedValued = ['--uid-map=:0:100000:65536:', '--gid-map=:0:100000:65536:', '--migration-mode=file-handles',
    '--migration-on-error=abort'];
  it.each(refusedValued)('%s, both forms', (opt) => {
    const name = opt.slice(0, opt.indexOf('='));
    const re = new RegExp(`^${name} is not supported yet: \\S`);
    expect(usageError(...BASE, opt)).toMatch(re);
    expect(usageError(...BASE, name, opt.slice(name.length + 1))).toMatch(re);
  });
  const refusedCompat = ['no_killpriv_v2', 'allow_direct_io', 'no_readdirplus', 'no_flock', 'no_posix_lock', 'timeout=5',
    'max_idle_threads=4', 'allow_root'];
  it.each(refusedCompat)('-o %s', (item) => {
    const name = item.split('=')[0]!;
    expect(usageError(...BASE, '-o', `cache=auto,${item}`)).toMatch(new RegExp(`^-o ${name} is not supported yet: \\S`));
  });

  it('--sandbox, --seccomp and --modcaps: the worker of --supervise; trap refused with why, a bad value listed', () => {
    const c = served(...BASE, '--supervise', '--sandbox=namespace', '--seccomp', 'kill', '--modcaps=-mknod').config;
    expect([c.supervise, c.sandbox, c.seccomp, c.modcaps]).toEqual([true, 'namespace', 'kill', { add: [], drop: ['mknod'] }]);
    expect(served(...BASE, '--supervise', '-o', 'sandbox=chroot', '--seccomp=log').config).toMatchObject({ sandbox: 'chroot', seccomp: 'log' });
    expect(served(...BASE, '--sandbox=none', '--seccomp=none').config.sandbox).toBe('none');
    for (const o of ['--sandbox=namespace', '--sandbox=chroot', '--seccomp=kill', '--modcaps=+sys_admin']) {
      expect(usageError(...BASE, o)).toBe('--sandbox, --seccomp and --modcaps need --supervise (they apply to the worker process)');
    }
    expect(usageError(...BASE, '--supervise', '--sandbox=chroot', '--state-file=/s', '--handle-key-file=/k')).toMatch(/^--sandbox chroot cannot write --stats-file or --state-file/);
    expect(usageError(...BASE, '--supervise', '--seccomp=trap')).toMatch(/^--seccomp=trap is not supported: /);
    expect(usageError(...BASE, '--sandbox=jail')).toBe("--sandbox must be one of namespace|chroot|none, got 'jail'");
    expect(usageError(...BASE, '--seccomp=strict')).toBe("--seccomp must be one of kill|log|none|trap, got 'strict'");
  });

  it('unknown options and arguments', () => {
    expect(usageError(...BASE, '--frobnicate')).toBe("unknown option '--frobnicate'");
    expect(usageError(...BASE, '--frobnicate=1')).toBe("unknown option '--frobnicate'");
    // handlefs mount's options that mean nothing here
    expect(usageError(...BASE, '--allow-other')).toBe("unknown option '--allow-other'");
    expect(usageError(...BASE, '--host-notify')).toBe("unknown option '--host-notify'");
    expect(usageError(...BASE, '-x')).toBe("unknown option '-x'");
    expect(usageError(...BASE, '/mnt')).toMatch(/^unexpected argument '\/mnt': virtiofsd takes options only/);
    expect(usageError(...BASE, '--')).toMatch(/^unexpected argument '--'/);
  });

  it('missing or conflicting socket and shared directory', () => {
    expect(usageError('--socket-path=/s.sock')).toBe('missing --shared-dir=DIR (or -o source=DIR)');
    expect(usageError(...SHARE)).toBe('missing --socket-path=PATH or --fd=FDNUM');
    expect(usageError()).toBe('missing --shared-dir=DIR (or -o source=DIR)');
    expect(usageError(...BASE, '--fd=3')).toBe('--fd and --socket-path exclude each other');
    expect(usageError(...SHARE, '--fd=3', '--socket-group=kvm')).toBe('--socket-group goes with --socket-path, not --fd');
    expect(usageError(...SHARE, '--socket-path=')).toBe('--socket-path must not be empty');
    expect(usageError(...BASE, '--socket-group=')).toBe('--socket-group must not be empty');
    expect(usageError('--shared-dir=', '--fd=3')).toBe('the shared directory must not be empty');
  });

  it('values: missing, or not what the option takes', () => {
    expect(usageError(...BASE, '--cache')).toBe("option '--cache' needs a value");
    expect(usageError(...BASE, '--cache', '--xattr')).toBe("option '--cache' needs a value");
    expect(usageError(...SHARE, '--fd=2')).toBe("--fd must be the number of a listening socket (3 or more), got '2'");
    expect(usageError(...SHARE, '--fd=three')).toBe("--fd must be a non-negative integer, got 'three'");
    expect(usageError(...BASE, '--thread-pool-size=-1')).toBe("--thread-pool-size must be a non-negative integer, got '-1'");
    expect(usageError(...BASE, '--rlimit-nofile=many')).toBe("--rlimit-nofile must be a non-negative integer, got 'many'");
    expect(usageError(...BASE, '--tag=')).toBe('--tag must be 1 to 36 bytes, got 0');
    expect(usageError(...BASE, `--tag=${'t'.repeat(37)}`)).toBe('--tag must be 1 to 36 bytes, got 37');
    expect(plan(...BASE, `--tag=${'t'.repeat(36)}`).tag).toBe('t'.repeat(36));
  });
});

describe('handlefs virtiofsd: --print-capabilities, --help, --version', () => {
  it('--print-capabilities: type fs, separate-options, no migration; whatever else is on the line', () => {
    expect(CAPABILITIES).toBe('{\n  "type": "fs",\n  "features": [\n    "separate-options"\n  ]\n}');
    expect(JSON.parse(CAPABILITIES)).toEqual({ type: 'fs', features: ['separate-options'] });
    expect(parse('--print-capabilities')).toEqual({ kind: 'print', text: CAPABILITIES });
    expect(parse('--frobnicate', '--print-capabilities', '--sandbox=namespace')).toEqual({ kind: 'print', text: CAPABILITIES });
  });

  it('--help names every option, with what it does here; -V prints the version', () => {
    expect(parse('--help')).toEqual({ kind: 'print', text: VIRTIOFSD_USAGE });
    expect(parse(...BASE, '-h')).toEqual({ kind: 'print', text: VIRTIOFSD_USAGE });
    expect(parse('--version')).toEqual({ kind: 'version' });
    expect(parse('-V')).toEqual({ kind: 'version' });
    const options = ['--socket-path', '--socket=', '--fd', '--socket-group', '--keep-listening', '--supervise', '--tag', '--thread-pool-size', '--rlimit-nofile',
      '--shared-dir', '-o source', '--cache', '--readonly', '--writeback', '--xattr', '--no-xattr', '--xattrmap', '--posix-acl', '--security-label',
      '--announce-submounts', '--no-announce-submounts', '--preserve-noatime', '--translate-uid', '--translate-gid', '--inode-file-handles',
      '--fd-budget', '--handle-key-file', '--state-file', '--log-level', '-d', '-f', '--sandbox', '--seccomp', '--print-capabilities', '--killpriv-v2',
      '--no-killpriv-v2', '--allow-direct-io', '--allow-mmap', '--no-readdirplus', '--modcaps', '--uid-map', '--gid-map', '--syslog', '--daemonize',
      '--migration-mode', '--migration-on-error', '--migration-verify-handles', '--migration-confirm-paths', 'no_flock', 'no_posix_lock', 'timeout',
      'max_idle_threads', 'allow_root', '--install-description'];
    for (const o of options) expect(VIRTIOFSD_USAGE, o).toContain(o);
    for (const line of VIRTIOFSD_USAGE.split('\n')) expect(line.length, line).toBeLessThanOrEqual(100);
    // handlefs --help points at the command
    expect(USAGE).toContain('handlefs virtiofsd --shared-dir=DIR');
  });
});

describe('handlefs virtiofsd: the executables and the description file', () => {
  const script = join(REPO, 'scripts', 'handlefs-virtiofsd');

  beforeAll(async () => {
    // the child processes below run the built CLI: build what is stale (idempotent, quick when done)
    const r = await run('bash', [join(REPO, 'scripts', 'setup')], { timeoutMs: 300_000 });
    expect(r.status, r.stderr).toBe(0);
  }, 310_000);

  it('scripts/handlefs-virtiofsd is executable; package.json names the bin', () => {
    expect(fs.statSync(script).mode & 0o111).toBe(0o111);
    fs.accessSync(script, fs.constants.X_OK);
    const pkg = JSON.parse(fs.readFileSync(join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    expect(pkg.bin['handlefs-virtiofsd']).toBe('dist/cli/virtiofsd-main.js');
    expect(fs.existsSync(join(REPO, pkg.bin['handlefs-virtiofsd']!))).toBe(true);
  });

  it('the description template is a vhost-user.json backend of type fs with an absolute binary', () => {
    const d = JSON.parse(fs.readFileSync(join(REPO, 'share', 'qemu', 'vhost-user', '50-handlefs-virtiofsd.json'), 'utf8')) as Record<string, unknown>;
    expect(Object.keys(d).sort()).toEqual(['binary', 'description', 'type']);
    expect(d.type).toBe('fs');
    expect(isAbsolute(d.binary as string)).toBe(true);
  });

  it('--install-description writes it with the absolute path of the script', async () => {
    const dir = fs.mkdtempSync(join(os.tmpdir(), 'handlefs-vu-'));
    try {
      const out = join(dir, 'vhost-user');
      const r = await run(script, ['--install-description', out], { timeoutMs: 60_000 });
      expect(r.status, r.stderr).toBe(0);
      const d = JSON.parse(fs.readFileSync(join(out, '50-handlefs-virtiofsd.json'), 'utf8')) as Record<string, unknown>;
      expect(d).toMatchObject({ type: 'fs', binary: script });
      expect(fs.statSync(join(out, '50-handlefs-virtiofsd.json')).mode & 0o777).toBe(0o644);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--print-capabilities and --help exit 0 with their text, from the CLI, the bin and the script', async () => {
    for (const [cmd, args] of [[process.execPath, [CLI, 'virtiofsd']], [process.execPath, [join(REPO, 'dist', 'cli', 'virtiofsd-main.js')]], [script, []]] as const) {
      const caps = await run(cmd, [...args, '--print-capabilities'], { timeoutMs: 60_000 });
      expect([caps.status, caps.stdout, caps.stderr]).toEqual([0, CAPABILITIES + '\n', '']);
      const help = await run(cmd, [...args, '--help'], { timeoutMs: 60_000 });
      expect([help.status, help.stdout]).toEqual([0, VIRTIOFSD_USAGE + '\n']);
    }
  });

  it('a bad option exits 2 with one line on stderr', async () => {
    for (const args of [['--frobnicate'], ['--shared-dir=/s', '--socket-path=/s.sock', '--syslog'], ['--socket-path=/s.sock']]) {
      const r = await run(process.execPath, [CLI, 'virtiofsd', ...args], { timeoutMs: 30_000 });
      expect(r.status).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^handlefs: [^\n]+ \(see handlefs virtiofsd --help\)\n$/);
    }
  });
});
