/** Waiting in mounted tests: for a value to appear, and for a JSON file (a stats file) to be readable. */
import * as fs from 'node:fs';

/** Poll `fn` every `everyMs` until it gives a value; throws after `ms`. */
export async function waitFor<T>(what: string, fn: () => T | null | undefined, ms = 15_000, everyMs = 50): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== null && v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The JSON in `file`, or null while it is missing or half written. */
export function readJson(file: string): Record<string, any> | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}
