import t from 'tap';
import { createLogger } from '../../agent/src/log/logger.js';
import { mountPointsBelow, staleShareMountHandlers } from '../../agent/src/storage/stale-share-mounts.js';

const shared = '/run/kata-containers/shared/containers';
const mountinfo = [
  '22 1 0:20 / / rw - rootfs rootfs rw',
  `30 22 0:30 / ${shared} rw - virtiofs kataShared rw`,
  `31 30 0:30 /c1/rootfs ${shared}/c1/rootfs rw - virtiofs kataShared rw`,
  `32 30 0:30 /c2/my\\040vol ${shared}/c2/my\\040vol rw - virtiofs kataShared rw`,
  `33 22 0:31 / ${shared}-other rw - tmpfs tmpfs rw`,
  '34 22 0:32 / /run/kata-containers/sandbox/shm rw - tmpfs shm rw',
  '',
].join('\n');

t.test('mount points at and below the shared directory, unescaped', async (t) => {
  t.same(mountPointsBelow(mountinfo, shared), [shared, `${shared}/c1/rootfs`, `${shared}/c2/my vol`]);
});

t.test('RemoveStaleVirtiofsShareMounts looks each of them up; a gone one is not an error', async (t) => {
  const looked: string[] = [];
  const h = staleShareMountHandlers({
    sharedDir: shared,
    log: createLogger('error'),
    readMountinfo: () => mountinfo,
    lookup: (p) => {
      looked.push(p);
      if (p.endsWith('c1/rootfs')) throw Object.assign(new Error('gone'), { code: 'ENOENT' });
    },
  });
  t.same(await h.removeStaleVirtiofsShareMounts!({} as never, {} as never), {});
  t.same(looked, [shared, `${shared}/c1/rootfs`, `${shared}/c2/my vol`]);
});
