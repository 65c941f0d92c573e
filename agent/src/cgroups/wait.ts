// Freezing is asynchronous in both cgroup versions: the write starts it and a state file reports
// when every task has stopped. There is no notification for v1, so both drivers poll with backoff.
import { DeadlineExceeded } from '../errors.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitUntil(done: () => boolean, what: string, timeoutMs: number, retry?: () => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 1;
  while (!done()) {
    if (Date.now() >= deadline) throw new DeadlineExceeded(`${what}: not done after ${timeoutMs} ms`);
    await sleep(delay);
    delay = Math.min(delay * 2, 100);
    retry?.();
  }
}
