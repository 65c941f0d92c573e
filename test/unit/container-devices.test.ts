// CreateContainer's hot-plugged devices: the refusals before any wait, the source each kind is
// looked up by, and the spec rewritten from the host's major:minor to the guest's.
import t from 'tap';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { DeviceSchema, type Device } from '../../protos/gen/agent_pb.js';
import { SpecSchema, type Spec } from '../../protos/gen/oci_pb.js';
import { applyFoundDevices, findContainerDevices } from '../../agent/src/container/devices.js';
import type { BlockDevice } from '../../agent/src/device/block.js';

const dev = (d: MessageInitShape<typeof DeviceSchema>): Device => create(DeviceSchema, d);
const spec = (s: MessageInitShape<typeof SpecSchema>): Spec => create(SpecSchema, s);

/** A HotplugDevices stand-in: records each lookup and answers from `answer`. */
function fakeHotplug(answer: (kind: string, source: string) => BlockDevice = () => ({ path: '/dev/vda', major: 254, minor: 0 })) {
  const calls: { kind: string; source: string; signal?: AbortSignal }[] = [];
  const hotplug = {
    block: async (kind: string, source: string, signal?: AbortSignal) => {
      calls.push({ kind, source, signal });
      return answer(kind, source);
    },
  };
  return { hotplug: hotplug as never, calls };
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  return p.then(
    () => new Error('resolved'),
    (e: Error) => e,
  );
}

t.test('findContainerDevices: blk by id, mmioblk and nvdimm by vm_path, scsi by id', async (t) => {
  const { hotplug, calls } = fakeHotplug((kind, source) => ({ path: `/dev/${kind}-${source.replace(/\W/g, '')}`, major: 254, minor: calls.length }));
  const devices = [
    dev({ id: '02/01', type: 'blk', vmPath: '/dev/vda', containerPath: '/dev/xvda' }),
    dev({ id: 'drive-1', type: 'mmioblk', vmPath: '/dev/vdb', containerPath: '/dev/xvdb' }),
    dev({ id: '0:1', type: 'scsi', vmPath: '', containerPath: '/dev/sdx' }),
    dev({ id: 'nv0', type: 'nvdimm', vmPath: '/dev/pmem0', containerPath: '/dev/pmem0' }),
  ];
  const ac = new AbortController();
  const found = await findContainerDevices(devices, hotplug, ac.signal);
  t.same(
    calls.map((c) => [c.kind, c.source]),
    [
      ['blk', '02/01'],
      ['mmioblk', '/dev/vdb'],
      ['scsi', '0:1'],
      ['nvdimm', '/dev/pmem0'],
    ],
  );
  t.ok(
    calls.every((c) => c.signal === ac.signal),
    'the signal is passed on',
  );
  t.equal(found.length, 4);
  t.equal(found[0].device, devices[0]);
  t.same(found[0].found, { path: '/dev/blk-0201', major: 254, minor: 1 });
  t.equal(found[1].device, devices[1]);
  t.same(found[1].found, { path: '/dev/mmioblk-devvdb', major: 254, minor: 2 });
  t.equal(found[2].device, devices[2]);
});

t.test('findContainerDevices: the fallbacks (blk by vm_path as kata 1.x, mmioblk by id)', async (t) => {
  const { hotplug, calls } = fakeHotplug();
  await findContainerDevices(
    [dev({ id: '', type: 'blk', vmPath: '/dev/vdc', containerPath: '/dev/a' }), dev({ id: '/dev/vdd', type: 'mmioblk', vmPath: '', containerPath: '/dev/b' })],
    hotplug,
  );
  t.same(
    calls.map((c) => [c.kind, c.source]),
    [
      ['blk', '/dev/vdc'],
      ['mmioblk', '/dev/vdd'],
    ],
  );
});

t.test('findContainerDevices: no devices, no wait (even off the guest)', async (t) => {
  t.same(await findContainerDevices([], undefined), []);
});

t.test('findContainerDevices: refusals, before any wait', async (t) => {
  const { hotplug, calls } = fakeHotplug();
  const good = dev({ id: '02/01', type: 'blk', containerPath: '/dev/xvda' });

  const vfio = await rejection(findContainerDevices([good, dev({ id: '0000:01:00.0', type: 'vfio', containerPath: '/dev/vfio/1' })], hotplug));
  t.equal(vfio.name, 'Unimplemented');
  t.match(vfio.message, '"vfio"');
  t.match(vfio.message, '0000:01:00.0');

  const rel = await rejection(findContainerDevices([dev({ id: '02/02', type: 'blk', containerPath: 'dev/xvdb' })], hotplug));
  t.equal(rel.name, 'InvalidArgument');
  t.match(rel.message, '"dev/xvdb"');
  t.match(rel.message, '02/02');

  const empty = await rejection(findContainerDevices([dev({ id: '02/02', type: 'blk', containerPath: '' })], hotplug));
  t.equal(empty.name, 'InvalidArgument', 'an empty container_path too');

  const off = await rejection(findContainerDevices([good], undefined));
  t.equal(off.name, 'Unimplemented', 'no hotplug: not waited for off the guest');
  t.match(off.message, '02/01');

  t.same(calls, [], 'nothing was looked up: the good device came before the bad one in the list, and still no wait');
});

t.test('findContainerDevices: a failed lookup fails the call', async (t) => {
  const hotplug = {
    block: async () => {
      throw Object.assign(new Error('virtio-blk PCI path 02/01: not found within 10 ms'), { name: 'DeadlineExceeded' });
    },
  } as never;
  const err = await rejection(findContainerDevices([dev({ id: '02/01', type: 'blk', containerPath: '/dev/xvda' })], hotplug));
  t.equal(err.name, 'DeadlineExceeded');
});

const found = (d: MessageInitShape<typeof DeviceSchema>, b: BlockDevice) => ({ device: dev(d), found: b });

t.test('applyFoundDevices: the node and its cgroup rule get the guest numbers', async (t) => {
  const s = spec({
    Linux: {
      Devices: [
        { Path: '/dev/null', Type: 'c', Major: 1n, Minor: 3n, FileMode: 0o666 },
        { Path: '/dev/xvda', Type: 'b', Major: 8n, Minor: 0n, FileMode: 0o660, UID: 0, GID: 6 },
      ],
      Resources: {
        Devices: [
          { Allow: false, Access: 'rwm' },
          { Allow: true, Type: 'c', Major: 1n, Minor: 3n, Access: 'rwm' },
          { Allow: true, Type: 'b', Major: 8n, Minor: 0n, Access: 'rw' },
          { Allow: true, Type: 'c', Major: 8n, Minor: 0n, Access: 'r' },
        ],
      },
    },
  });
  applyFoundDevices(s, [found({ id: '02/01', type: 'blk', containerPath: '/dev/xvda' }, { path: '/dev/vda', major: 254, minor: 16 })]);
  const nodes = s.Linux!.Devices;
  t.equal(nodes.length, 2, 'no node added');
  t.match(nodes[1], { Path: '/dev/xvda', Type: 'b', Major: 254n, Minor: 16n, FileMode: 0o660, GID: 6 });
  t.match(nodes[0], { Path: '/dev/null', Major: 1n, Minor: 3n }, 'other nodes untouched');
  const rules = s.Linux!.Resources!.Devices;
  t.match(rules[2], { Allow: true, Type: 'b', Major: 254n, Minor: 16n, Access: 'rw' });
  t.match(rules[1], { Type: 'c', Major: 1n, Minor: 3n });
  t.match(rules[3], { Type: 'c', Major: 8n, Minor: 0n }, 'a char rule with the same numbers is not the block device');
  t.match(rules[0], { Allow: false, Major: 0n, Minor: 0n });
});

t.test('applyFoundDevices: a device with no node in the spec gets one', async (t) => {
  const s = spec({ Linux: { Devices: [] } });
  applyFoundDevices(s, [found({ id: '0:1', type: 'scsi', containerPath: '/dev/sdx' }, { path: '/dev/sdb', major: 8, minor: 16 })]);
  t.equal(s.Linux!.Devices.length, 1);
  t.match(s.Linux!.Devices[0], { Path: '/dev/sdx', Type: 'b', Major: 8n, Minor: 16n, FileMode: 0o660, UID: 0, GID: 0 });
});

t.test('applyFoundDevices: an added node gets an allow rule after a deny-all; no rules, none added', async (t) => {
  const s = spec({ Linux: { Devices: [], Resources: { Devices: [{ Allow: false, Access: 'rwm' }] } } });
  applyFoundDevices(s, [found({ id: '', type: 'nvdimm', vmPath: '/dev/pmem1', containerPath: '/dev/pmem1' }, { path: '/dev/pmem1', major: 259, minor: 1 })]);
  t.equal(s.Linux!.Resources!.Devices.length, 2);
  t.match(s.Linux!.Resources!.Devices[1], { Allow: true, Type: 'b', Major: 259n, Minor: 1n, Access: 'rwm' });
  const bare = spec({ Linux: { Devices: [] } });
  applyFoundDevices(bare, [found({ id: '0:1', type: 'scsi', containerPath: '/dev/sdx' }, { path: '/dev/sdb', major: 8, minor: 16 })]);
  t.equal(bare.Linux!.Resources, undefined, 'no Resources: nothing to allow against');
});

t.test('applyFoundDevices: two devices trading numbers are each rewritten once', async (t) => {
  const s = spec({
    Linux: {
      Devices: [
        { Path: '/dev/a', Type: 'b', Major: 8n, Minor: 0n },
        { Path: '/dev/b', Type: 'b', Major: 8n, Minor: 16n },
      ],
      Resources: {
        Devices: [
          { Allow: true, Type: 'b', Major: 8n, Minor: 0n, Access: 'rwm' },
          { Allow: true, Type: 'b', Major: 8n, Minor: 16n, Access: 'r' },
        ],
      },
    },
  });
  applyFoundDevices(s, [
    found({ id: '0:0', type: 'scsi', containerPath: '/dev/a' }, { path: '/dev/sdb', major: 8, minor: 16 }),
    found({ id: '0:1', type: 'scsi', containerPath: '/dev/b' }, { path: '/dev/sda', major: 8, minor: 0 }),
  ]);
  t.match(s.Linux!.Devices, [
    { Path: '/dev/a', Major: 8n, Minor: 16n },
    { Path: '/dev/b', Major: 8n, Minor: 0n },
  ]);
  t.match(s.Linux!.Resources!.Devices, [
    { Major: 8n, Minor: 16n, Access: 'rwm' },
    { Major: 8n, Minor: 0n, Access: 'r' },
  ]);
});

t.test('applyFoundDevices: nothing found changes nothing; devices need a Linux section', async (t) => {
  const s = spec({});
  applyFoundDevices(s, []);
  t.equal(s.Linux, undefined);
  t.throws(() => applyFoundDevices(s, [found({ id: '02/01', type: 'blk', containerPath: '/dev/xvda' }, { path: '/dev/vda', major: 254, minor: 0 })]), {
    name: 'InvalidArgument',
  });
});
