import t from 'tap';
import { containerCgroupPath } from '../../agent/src/cgroups/self-path.js';

t.test('Linux.CgroupsPath as kata hosts send it', async (t) => {
  t.equal(containerCgroupPath('/default/c1', 'c1'), 'default/c1');
  t.equal(containerCgroupPath('/kubepods/besteffort/pod0a1b/c1', 'c1'), 'kubepods/besteffort/pod0a1b/c1');
  t.equal(containerCgroupPath('kubepods/c1', 'c1'), 'kubepods/c1', 'relative form too');
  t.equal(containerCgroupPath('system.slice:kata:c1', 'c1'), 'system.slice/kata-c1.scope', 'systemd form');
  t.equal(containerCgroupPath('system.slice::c1', 'c1'), 'system.slice/c1.scope');
  t.equal(containerCgroupPath('', 'c1'), 'kata-c1', 'empty: the agent picks');
});

t.test('paths that would leave the agent’s group are INVALID_ARGUMENT', async (t) => {
  for (const p of ['/', '/../x', '/a/../../b', '/a//b', '/a/./b', ':kata:c1', 'a\0b']) {
    t.throws(() => containerCgroupPath(p, 'c1'), { kind: 'InvalidArgument', message: /container c1: Linux.CgroupsPath/ }, JSON.stringify(p));
  }
});
