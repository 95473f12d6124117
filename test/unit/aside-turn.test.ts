// The readers of one /dev/fuse connection stand aside one at a time (asideTurn), so that one
// always reads.
import { describe, expect, it } from 'vitest';
import { asideTurn } from '../../src/frontends/devfuse/threads.js';

describe('asideTurn', () => {
  it('lets one reader stand aside at a time, and only the one that did gives the turn back', () => {
    const word = new Int32Array(new SharedArrayBuffer(4));
    const [owner, a, b] = [asideTurn(word, 0), asideTurn(word, 1), asideTurn(word, 2)];
    expect(a.take()).toBe(true);
    expect(owner.take()).toBe(false);
    expect(b.take()).toBe(false);
    expect(a.take()).toBe(false);
    // a reader that does not hold the turn cannot give it back
    b.give();
    owner.give();
    expect(owner.take()).toBe(false);
    a.give();
    expect(owner.take()).toBe(true);
    expect(a.take()).toBe(false);
    owner.give();
    expect(word[0]).toBe(0);
    expect(b.take()).toBe(true);
    expect(word[0]).toBe(3);
  });
});
