/**
 * One /dev/fuse reader on a thread of its own (worker_threads). It blocks in read(2), copies the
 * request out of its reused buffer into a fresh ArrayBuffer and transfers that to the session on
 * the main thread, which handles it and writes the reply. Being a thread of its own, a blocked
 * read never holds a libuv pool thread (see session.ts).
 */
import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

interface ReaderData {
  fd: number;
  size: number;
}

const { fd, size } = workerData as ReaderData;
const port = parentPort!;
const buf = Buffer.allocUnsafeSlow(size);

for (;;) {
  let n: number;
  try {
    n = readSync(fd, buf, 0, size, null);
  } catch (e) {
    const code = (e as { code?: string }).code ?? 'EIO';
    // EINTR: a signal; EAGAIN: spurious wake-up; ENOENT: the request was interrupted before we read it
    if (code === 'EINTR' || code === 'EAGAIN' || code === 'ENOENT') continue;
    port.postMessage({ end: code, message: (e as Error).message });
    break;
  }
  if (n === 0) {
    port.postMessage({ end: 'EOF' });
    break;
  }
  const ab = new ArrayBuffer(n);
  buf.copy(new Uint8Array(ab), 0, 0, n);
  port.postMessage(ab, [ab]);
}
