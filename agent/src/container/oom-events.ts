import { Cancelled } from '../errors.js';

/** OOM kills waiting for GetOOMEvent, a long poll: each event goes to exactly one caller. */
export class OomEvents {
  private readonly queue: string[] = [];
  private readonly waiters: ((id: string) => void)[] = [];

  push(containerId: string): void {
    const w = this.waiters.shift();
    if (w) w(containerId);
    else this.queue.push(containerId);
  }

  next(signal: AbortSignal): Promise<string> {
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift()!);
    return new Promise((resolve, reject) => {
      const waiter = (id: string) => {
        signal.removeEventListener('abort', onAbort);
        resolve(id);
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Cancelled('GetOOMEvent cancelled'));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }
}
