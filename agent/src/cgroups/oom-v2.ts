// cgroup v2 OOM notification: memory.events counts OOM kills ("oom_kill N") and the kernel raises
// an inotify modify event on it whenever a count changes, so fs.watch wakes us without polling.
import path from 'node:path';
import { CgroupFileError, parseFlatKeyed, type CgroupFiles } from './files.js';

export function watchOomV2(groupDir: string, files: CgroupFiles, onOom: () => void, onError: (err: Error) => void): () => void {
  const eventsPath = path.join(groupDir, 'memory.events');
  const kills = () => parseFlatKeyed(files.readOptional(eventsPath)).get('oom_kill') ?? 0n;
  let seen = 0n;
  let stopped = false;
  let unwatch: () => void;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    unwatch();
  };
  const onChange = () => {
    if (stopped) return;
    if (!files.exists(eventsPath)) {
      stop();
      return;
    }
    let now: bigint;
    try {
      now = kills();
    } catch (err) {
      stop();
      onError(err as Error);
      return;
    }
    for (; seen < now && !stopped; seen++) onOom();
  };
  const onWatchError = (err: Error) => {
    stop();
    onError(new Error(`watching ${eventsPath}: ${err.message}`));
  };
  try {
    unwatch = files.fs.watch(eventsPath, onChange, onWatchError);
  } catch (err) {
    throw new CgroupFileError('watch', eventsPath, err);
  }
  // Read the baseline after the watch is in place so a kill in between is not missed.
  seen = kills();
  return stop;
}
