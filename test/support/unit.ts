// Small helpers shared by unit tests.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A temp directory removed when the test ends. */
export function tempDir(t: { teardown(f: () => unknown): void }, prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** What `f` threw; an Error saying so if it did not throw. */
export function errorOf(f: () => unknown): Error {
  try {
    f();
  } catch (err) {
    return err as Error;
  }
  return new Error('did not throw');
}
