// The fuse-native server for the mounted tests, run in a child process (a process must never touch
// its own FUSE mount: every op is answered on its event loop). Needs `npx tsc -p tsconfig.json`.
//   node test/highlevel/server.mjs SHARED MOUNTPOINT [JSON options]
// Prints "READY" once mounted. On SIGTERM/SIGINT (or "unmount" on stdin) it unmounts and prints
// one line "COUNTERS {json}" (adapter + core counters) before exiting 0.
import { pino } from 'pino';

const dist = new URL('../../dist/', import.meta.url);
const { mountHighLevel } = await import(new URL('frontends/highlevel/mount.js', dist).href);
const { PassthroughFs } = await import(new URL('fs/passthrough.js', dist).href);
const { ephemeralKey } = await import(new URL('handle/key.js', dist).href);

const [shared, mountpoint, json] = process.argv.slice(2);
const o = json ? JSON.parse(json) : {};
const log = pino({ level: o.logLevel ?? 'warn' }, pino.destination(2));
const pfs = new PassthroughFs({
  root: shared, fdBudget: o.fdBudget ?? 64, reopen: 'auto', key: ephemeralKey(), cache: o.cache ?? 'auto',
  xattr: true, creds: true, log,
});
const m = await mountHighLevel(pfs, mountpoint, { log, fsname: shared, maxPaths: o.maxPaths, debug: !!o.debug });
process.stdout.write('READY\n');

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  const adapter = m.counters();
  await m.unmount();
  const after = m.counters();
  process.stdout.write(`COUNTERS ${JSON.stringify({ before: adapter, after, core: pfs.counters() })}\n`);
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  if (String(d).includes('unmount')) void stop();
  if (String(d).includes('counters')) process.stdout.write(`LIVE ${JSON.stringify(m.counters())}\n`);
});
