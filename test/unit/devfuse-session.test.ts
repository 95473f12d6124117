/**
 * How a failed read of /dev/fuse ends a DevFuseSession (sessionEnd): the connection's end, by an
 * unmount or an abort, is not a failure of the server; any other error is.
 */
import { describe, expect, it } from 'vitest';
import { sessionEnd } from '../../src/frontends/devfuse/session.js';

describe('sessionEnd', () => {
  it('ENODEV and ECONNABORTED end the connection (unmounted): a stopping server exits 0 on either', () => {
    expect(sessionEnd('ENODEV')).toEqual({ reason: 'unmounted', code: 'ENODEV' });
    expect(sessionEnd('ECONNABORTED')).toEqual({ reason: 'unmounted', code: 'ECONNABORTED' });
  });

  it('any other error, and an end of file, is a failure with its code', () => {
    for (const code of ['EIO', 'EBADF', 'EINVAL', 'EOF', 'EPERM']) expect(sessionEnd(code)).toEqual({ reason: 'error', code });
  });
});
