/**
 * Whether one call's answer reached the host, as told by the transport that carried it. Some answers
 * hand over what cannot be produced twice (bytes taken from a process's output queue); their handler
 * asks to hear when the answer was lost, and takes those bytes back. The transport says only
 * "delivered" or "not delivered", knowing nothing of what the answer held.
 *
 * "Delivered" means the transport handed every byte of the answer to the kernel (or to the stream
 * below it). An answer dropped because the call was already cancelled or answered (deadline,
 * connection closed), or whose write failed, is not delivered.
 */
export class Delivery {
  private fns: (() => void)[] = [];
  private settled: (() => void)[] = [];
  private outcome: boolean | undefined;

  /** Runs `fn` once the answer's fate is known, delivered or not (at once if it is known already). */
  onSettled(fn: () => void): void {
    if (this.outcome === undefined) this.settled.push(fn);
    else fn();
  }

  /** Runs `fn` once if the answer turns out not to have been delivered (at once if that is known). */
  onUndelivered(fn: () => void): void {
    if (this.outcome === false) fn();
    else if (this.outcome === undefined) this.fns.push(fn);
  }

  /** The transport wrote the whole answer. */
  delivered(): void {
    this.settle(true);
  }

  /** The answer was dropped or its write failed. */
  undelivered(): void {
    this.settle(false);
  }

  private settle(ok: boolean): void {
    if (this.outcome !== undefined) return;
    this.outcome = ok;
    const fns = this.fns;
    this.fns = [];
    if (!ok) for (const fn of fns) fn();
    const settled = this.settled;
    this.settled = [];
    for (const fn of settled) fn();
  }
}
