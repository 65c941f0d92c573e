import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { create } from '@bufbuild/protobuf';
import { SpecSchema } from '../../protos/gen/oci_pb.js';
import { secureJoin, PathEscapeError } from '../../agent/src/mount/secure-join.js';
import { parseMountOptions, rootPropagation } from '../../agent/src/mount/options.js';
import { checkId } from '../../agent/src/container/id.js';
import { capMask } from '../../agent/src/container/capabilities.js';
import { createPlan, processPlan } from '../../agent/src/container/plan-builder.js';
import { OomEvents } from '../../agent/src/container/oom-events.js';
import {
  CLONE_NEWCGROUP,
  CLONE_NEWIPC,
  CLONE_NEWNET,
  CLONE_NEWNS,
  CLONE_NEWUTS,
  MS_BIND,
  MS_NOSUID,
  MS_PRIVATE,
  MS_RDONLY,
  MS_REC,
  MS_SLAVE,
} from '../../agent/src/linux/libc.js';
import { InvalidArgument } from '../../agent/src/errors.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'plan-test-'));
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
fs.mkdirSync(`${root}/etc`);
fs.mkdirSync(`${root}/real`);
fs.symlinkSync('/real', `${root}/abs-link`);
fs.symlinkSync('../real', `${root}/etc/rel-link`);
fs.symlinkSync('../../..', `${root}/etc/up`);

t.test('secureJoin keeps paths inside the root', async (t) => {
  t.equal(secureJoin(root, '/etc/x'), `${root}/etc/x`);
  t.equal(secureJoin(root, '/abs-link/y'), `${root}/real/y`, 'absolute links are rooted');
  t.equal(secureJoin(root, '/etc/rel-link/z'), `${root}/real/z`);
  t.equal(secureJoin(root, '/etc/../real'), `${root}/real`, 'dots that stay inside are fine');
  t.throws(() => secureJoin(root, '/../x'), PathEscapeError);
  t.throws(() => secureJoin(root, '/etc/up/x'), /symlink \/etc\/up -> \.\.\/\.\.\/\.\./);
});

t.test('mount options split into flags, propagation and data', async (t) => {
  t.same(parseMountOptions(['ro', 'nosuid', 'mode=755', 'rslave', 'size=1m']), {
    flags: MS_RDONLY | MS_NOSUID,
    propagation: MS_SLAVE | MS_REC,
    data: 'mode=755,size=1m',
  });
  t.same(parseMountOptions(['rbind', 'ro', 'rw']), { flags: MS_BIND | MS_REC, propagation: 0, data: '' });
  t.equal(rootPropagation(''), MS_PRIVATE | MS_REC);
  t.throws(() => rootPropagation('sideways'), /rootfsPropagation "sideways"/);
});

t.test("ids follow kata's rule", async (t) => {
  t.equal(checkId('container', 'abc-1.2_3'), 'abc-1.2_3');
  for (const bad of ['', 'a', '_a', 'a/b', 'a..b', 'ä1']) t.throws(() => checkId('container', bad), InvalidArgument, bad);
});

t.test('capabilities by name', async (t) => {
  t.equal(capMask(['CAP_KILL', 'NET_BIND_SERVICE', 'cap_sys_admin']), (1n << 5n) | (1n << 10n) | (1n << 21n));
  t.throws(() => capMask(['CAP_FLY']), /unknown capability "CAP_FLY"/);
});

t.test('plan: namespaces new, joined, shared; process checks', async (t) => {
  fs.writeFileSync(`${root}/netns`, '');
  const spec = create(SpecSchema, {
    Root: { Path: root, Readonly: true },
    Hostname: 'h1',
    Process: { Args: ['sh'], Cwd: '/', Env: [], Rlimits: [{ Type: 'RLIMIT_NOFILE', Soft: 5n, Hard: 6n }], OOMScoreAdj: 100n },
    Mounts: [
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid'] },
      { destination: '/etc/hosts', type: 'bind', source: '/etc/hosts', options: ['rbind', 'ro'] },
    ],
    Linux: {
      Namespaces: [{ Type: 'pid' }, { Type: 'mount' }, { Type: 'uts' }, { Type: 'ipc' }, { Type: 'cgroup' }, { Type: 'network', Path: `${root}/netns` }],
    },
  });
  const own = createPlan({ spec, rootfs: root, rootfsMount: '/b/rootfs', shared: {}, cgroupV1Hierarchies: [] });
  t.same(own.pidns, { kind: 'new' });
  t.equal(own.plan.unshare, CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP);
  t.same(own.plan.join, [{ type: CLONE_NEWNET, path: `${root}/netns` }]);
  t.equal(own.plan.hostname, 'h1');
  t.ok(own.plan.readonlyRoot);
  t.same(
    own.plan.devices.map((d) => d.path),
    ['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom', '/dev/tty'],
    'default devices on a tmpfs /dev',
  );
  const bind = own.plan.mounts[1];
  t.same([bind.type, bind.flags, bind.remountFlags, bind.isFile], ['bind', MS_BIND | MS_REC, MS_RDONLY, true]);
  t.same(own.plan.process.rlimits, [{ resource: 7, soft: '5', hard: '6' }]);
  t.equal(own.plan.process.oomScoreAdj, 100);

  const shared = createPlan({ spec, rootfs: root, rootfsMount: '/b/rootfs', shared: { ipc: `${root}/netns`, uts: `${root}/netns` }, cgroupV1Hierarchies: [] });
  t.equal(shared.plan.unshare, CLONE_NEWNS | CLONE_NEWCGROUP, 'sandbox ipc/uts are joined, not new');
  t.equal(shared.plan.hostname, undefined, 'hostname belongs to the sandbox then');

  t.throws(() => processPlan(create(SpecSchema, { Process: { Args: ['x'], Cwd: 'rel' } }).Process, 'X'), /cwd "rel" is not absolute/);
  t.throws(() => processPlan(create(SpecSchema, { Process: { Args: ['x'], Rlimits: [{ Type: 'RLIMIT_WINGS' }] } }).Process, 'X'), /unknown rlimit type/);
});

t.test('OOM events: queued until asked, one caller each, cancellable', async (t) => {
  const q = new OomEvents();
  q.push('a');
  t.equal(await q.next(new AbortController().signal), 'a');
  const waiting = q.next(new AbortController().signal);
  q.push('b');
  t.equal(await waiting, 'b');
  const ac = new AbortController();
  const cancelled = q.next(ac.signal);
  ac.abort();
  await t.rejects(cancelled, /cancelled/);
  q.push('c');
  t.equal(await q.next(new AbortController().signal), 'c', 'a cancelled waiter does not eat events');
});
