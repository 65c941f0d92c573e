import type { Helper } from '../process/helper.js';
import type { ProcessIO } from '../io/process-io.js';

/** One process of a container: its init (exec id "") or an ExecProcess. */
export class ContainerProcess {
  /** Set once WaitProcess has returned: the process is forgotten from then on. */
  waited = false;
  exitStatus: number | undefined;

  constructor(
    readonly execId: string,
    readonly helper: Helper,
    readonly io: ProcessIO,
  ) {
    void helper.exited.then((s) => (this.exitStatus = s));
  }

  get pid(): number {
    return this.helper.pid;
  }

  get running(): boolean {
    return this.exitStatus === undefined;
  }

  /** Signals the process; a process that already exited is not an error (kata ignores ESRCH). */
  kill(signal: number): void {
    if (!this.running) return;
    try {
      process.kill(this.pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
}
