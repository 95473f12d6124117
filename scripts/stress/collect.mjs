/**
 * Reads a stress client's stdout protocol (scripts/stress/client.mjs): "P <ops>" progress lines,
 * "OPENED", and last "R <json result>". Settles once the child's stdio is closed ('close'), not
 * at 'exit': Node may report a child's exit before the last of its output has been read, and the
 * result line is the last and often the longest (hundreds of KiB in the hold phase).
 *
 * collect(child, { onProgress(ops), onOpened() }) resolves to { result, code, signal, stderr }
 * (result null when the child printed none, or one that does not parse).
 */
export function collect(child, hooks = {}) {
  return new Promise((resolve) => {
    let buf = '';
    let err = '';
    let result = null;
    const line = (l) => {
      if (l.startsWith('P ')) hooks.onProgress?.(Number(l.slice(2)));
      else if (l === 'OPENED') hooks.onOpened?.();
      else if (l.startsWith('R ')) {
        try {
          result = JSON.parse(l.slice(2));
        } catch {
          result = null;
        }
      }
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        line(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => {
      if (err.length < 4096) err += d;
    });
    child.on('close', (code, signal) => resolve({ result, code, signal, stderr: err }));
  });
}
