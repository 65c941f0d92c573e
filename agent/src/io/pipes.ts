import { F_SETPIPE_SZ, O_CLOEXEC, type Libc } from '../linux/libc.js';

export interface Pipe {
  read: number;
  write: number;
}

/**
 * A close-on-exec pipe, so no other process the agent spawns inherits an end (a stray write end
 * would delay end of stream forever). `size` > 0 resizes it with F_SETPIPE_SZ, as
 * agent.container_pipe_size asks.
 */
export function openPipe(libc: Libc, size: number): Pipe {
  const [read, write] = libc.pipe2(O_CLOEXEC);
  if (size > 0) {
    try {
      libc.fcntl(write, F_SETPIPE_SZ, size);
    } catch (err) {
      libc.close(read);
      libc.close(write);
      throw err;
    }
  }
  return { read, write };
}
