/**
 * The supervised worker: the filesystem core and the protocol server, fed request bytes by the
 * supervisor over the IPC channel, answering reply bytes. Started only by the supervisor (it needs
 * the IPC channel the supervisor created; run by hand it exits at once).
 */
import { passthroughOptions, protocolOptions } from '../../config.js';
import type { FileSystem } from '../../fs/filesystem.js';
import { PassthroughFs } from '../../fs/passthrough.js';
import { decorate } from '../../fs/decorate.js';
import { ProtocolServer } from '../../fuse/protocol-server.js';
import { InHeader } from '../../fuse/abi.js';
import { childLogger, makeLogger } from '../../log.js';
import { startStats } from '../../stats.js';
import { asToWorker, type FromWorker, type StartMsg } from './protocol.js';

if (!process.send) {
  process.stderr.write('handlefs: the worker is started by `handlefs mount --supervise`, not by hand\n');
  process.exit(2);
}

const send = (m: FromWorker): void => {
  process.send!(m);
};

let core: PassthroughFs | null = null;
let server: ProtocolServer | null = null;
let pendingRecs: Uint8Array[] = [];
let flushScheduled = false;

function flushRecs(): void {
  flushScheduled = false;
  if (pendingRecs.length === 0) return;
  const recs = pendingRecs;
  pendingRecs = [];
  send({ t: 'recs', recs });
}

/** A sealed record for the supervisor, sent in a batch once the current request is done. */
function streamRecord(sealed: Buffer): void {
  pendingRecs.push(sealed);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushRecs);
  }
}

/** Groups the supervisor read for requests in flight, by requester pid (several may share a pid). */
const suppliedGroups = new Map<number, { groups: number[] | null; uses: number }>();

/** Make `groups` the answer for `pid` while its request runs; returns the release. */
function supplyGroups(pid: number, groups: number[] | null): () => void {
  const e = suppliedGroups.get(pid);
  if (e) {
    e.groups = groups;
    e.uses++;
  } else suppliedGroups.set(pid, { groups, uses: 1 });
  return () => {
    const cur = suppliedGroups.get(pid);
    if (cur && --cur.uses === 0) suppliedGroups.delete(pid);
  };
}

async function start(m: StartMsg): Promise<void> {
  const { cfg } = m;
  const log = makeLogger(cfg.logLevel, { role: 'worker' });
  const keys = { key: Buffer.from(m.key), previousKeys: m.previousKeys.map((k) => Buffer.from(k)) };
  const pfs = new PassthroughFs(passthroughOptions(cfg, m.root, keys, log, { onRecord: streamRecord }));
  core = pfs;
  const fsys: FileSystem = decorate(pfs, cfg);
  const opts = protocolOptions(cfg);
  // in its own pid namespace the worker cannot read a requester's /proc entry: the supervisor
  // sends the groups with each ACCESS request, and no other source is trusted
  if (cfg.sandbox === 'namespace') opts.requesterGroups = (pid) => suppliedGroups.get(pid)?.groups ?? null;
  server = new ProtocolServer(fsys, opts, childLogger('fuse', log));
  let restored = 0;
  // every record is verified by the core before use: a foreign or tampered one is refused and logged
  for (const blob of m.state ? [m.state, ...m.records] : m.records) {
    const r = pfs.importState(Buffer.from(blob));
    if (r.ok) restored += r.records;
  }
  if (m.init) {
    // the kernel sent INIT to a predecessor; replay it so that this protocol server is initialized
    // with the same negotiation (the reply is dropped: the kernel already has one)
    await server.handle(Buffer.from(m.init));
  }
  startStats(cfg.statsFile, () => ({ role: 'worker', ...pfs.counters() }), log);
  log.info({ restored }, 'worker ready');
  send({ t: 'ready', restored });
}

process.on('message', (raw) => {
  const m = asToWorker(raw);
  if (!m) return;
  switch (m.t) {
    case 'req': {
      const srv = server;
      if (!srv) return;
      const buf = Buffer.from(m.buf.buffer, m.buf.byteOffset, m.buf.byteLength);
      const supplied = m.groups !== undefined && buf.length >= InHeader.SIZE ? supplyGroups(buf.readUInt32LE(InHeader.pid), m.groups) : null;
      srv.handle(buf).then(
        (rep) => {
          flushRecs(); // records before the reply that names them
          send({ t: 'rep', id: m.id, buf: rep });
        },
        () => send({ t: 'rep', id: m.id, buf: null }),
      ).finally(() => supplied?.());
      return;
    }
    case 'start':
      start(m).catch((e: unknown) => {
        send({ t: 'fail', message: e instanceof Error ? e.message : String(e) });
        process.exit(1);
      });
      return;
    case 'state':
      flushRecs();
      send({ t: 'state', blob: core ? core.exportState() : Buffer.alloc(0) });
      return;
    case 'stop':
      flushRecs();
      void (core ? core.destroy() : Promise.resolve()).finally(() => process.exit(0));
      return;
  }
});

// the supervisor went away: nothing can reach us any more
process.on('disconnect', () => process.exit(0));
