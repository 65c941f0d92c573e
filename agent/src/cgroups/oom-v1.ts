// cgroup v1 OOM notification: an eventfd registered against memory.oom_control through
// cgroup.event_control. The kernel adds to the eventfd's counter on each OOM in the group, and
// once more when the group is removed, which is told apart by the group's files being gone.
import path from 'node:path';
import type { Libc } from '../linux/libc.js';
import { EFD_CLOEXEC, EFD_NONBLOCK, O_RDONLY } from '../linux/libc.js';
import { openPath } from '../linux/paths.js';
import { socketFromFd } from '../linux/uv-handle.js';
import { CgroupFileError, type CgroupFiles } from './files.js';

export function watchOomV1(memoryDir: string, libc: Libc, files: CgroupFiles, onOom: () => void, onError: (err: Error) => void): () => void {
  const controlPath = path.join(memoryDir, 'memory.oom_control');
  let controlFd: number;
  try {
    controlFd = openPath(libc, controlPath, O_RDONLY);
  } catch (err) {
    throw new CgroupFileError('open', controlPath, err);
  }
  let efd = -1;
  try {
    efd = libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    files.write(path.join(memoryDir, 'cgroup.event_control'), `${efd} ${controlFd}`);
  } catch (err) {
    if (efd >= 0) libc.close(efd);
    libc.close(controlFd);
    throw err;
  }
  // libuv watches the eventfd like any stream fd, so no thread blocks on it; the socket owns efd.
  const sock = socketFromFd(efd);
  sock.unref();
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    sock.destroy();
    libc.close(controlFd);
  };
  sock.on('data', (chunk: Buffer) => {
    // Each 8-byte read is one wake-up; the counter it carries may merge several OOMs of one burst.
    for (let off = 0; off + 8 <= chunk.length && !stopped; off += 8) {
      if (!files.exists(controlPath)) {
        stop();
        return;
      }
      onOom();
    }
  });
  sock.on('error', (err) => {
    stop();
    onError(new Error(`OOM eventfd for ${memoryDir}: ${err.message}`));
  });
  return stop;
}
