// VFIO PCI devices (device/vfio.ts) on a fake sysfs tree in a temp directory: the options parsed,
// the PCI function waited for (by uevent or already in sysfs), the rebinding to vfio-pci, the IOMMU
// group read and its node waited for; then the spec rewritten (container/devices.ts).
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { create, type MessageInitShape } from '@bufbuild/protobuf';
import { DeviceSchema } from '../../protos/gen/agent_pb.js';
import { SpecSchema } from '../../protos/gen/oci_pb.js';
import { applyFoundDevices, findContainerDevices } from '../../agent/src/container/devices.js';
import { HotplugDevices } from '../../agent/src/device/hotplug.js';
import { attachVfio, normalizeBdf, overrideDriver, parseVfioOptions, rewritePciEnv, type VfioDevice } from '../../agent/src/device/vfio.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { UeventListener } from '../../agent/src/uevent/listener.js';
import { errorOf, tempDir } from '../support/unit.js';

const log = createLogger('silent');
const BRIDGE = 'devices/pci0000:00/0000:00:02.0';
const FN = '0000:01:01.0';
const FN_DEVPATH = `/${BRIDGE}/${FN}`;

function uevent(fields: Record<string, string>): Buffer {
  return Buffer.from([`${fields.ACTION}@${fields.DEVPATH}`, ...Object.entries(fields).map(([k, v]) => `${k}=${v}`)].join('\0') + '\0', 'utf8');
}

interface Fake {
  sysfs: string;
  /** Puts a PCI function in the tree: its device directory (unless `dirOnlyInBus`), group link, driver link. */
  plug(bdf: string, o: { group?: number; driver?: string; dirOnlyInBus?: boolean; parent?: string }): void;
  read(rel: string): string;
}

/** sysfs with kata's bridge in slot 2 of bus 00 (bus 01 behind it), vfio-pci registered, /dev/vfio/vfio 10:196. */
function fakeSysfs(t: { teardown(f: () => unknown): void }, o: { vfioDriver?: boolean } = {}): Fake {
  const sysfs = tempDir(t, 'vfio-unit-');
  const mk = (rel: string) => fs.mkdirSync(path.join(sysfs, rel), { recursive: true });
  mk(`${BRIDGE}/pci_bus/0000:01`);
  mk('bus/pci/devices');
  mk('bus/pci/drivers/e1000');
  if (o.vfioDriver !== false) mk('bus/pci/drivers/vfio-pci');
  fs.writeFileSync(path.join(sysfs, 'bus/pci/drivers_probe'), '');
  mk('class/misc/vfio');
  fs.writeFileSync(path.join(sysfs, 'class/misc/vfio/dev'), '10:196\n');
  return {
    sysfs,
    plug(bdf, p) {
      const devDir = p.dirOnlyInBus ? `bus/pci/devices/${bdf}` : `${p.parent ?? BRIDGE}/${bdf}`;
      mk(devDir);
      if (!p.dirOnlyInBus) fs.symlinkSync(path.join(sysfs, devDir), path.join(sysfs, 'bus/pci/devices', bdf));
      if (p.group !== undefined) {
        mk(`kernel/iommu_groups/${p.group}`);
        fs.symlinkSync(`../../../../kernel/iommu_groups/${p.group}`, path.join(sysfs, devDir, 'iommu_group'));
      }
      if (p.driver) fs.symlinkSync(`../../../../bus/pci/drivers/${p.driver}`, path.join(sysfs, devDir, 'driver'));
      fs.writeFileSync(path.join(sysfs, devDir, 'driver_override'), '(null)\n');
    },
    read: (rel) => fs.readFileSync(path.join(sysfs, rel), 'utf8'),
  };
}

/** The group's node, as vfio-pci makes it once bound. */
function groupNode(f: Fake, group: number, dev = '243:0') {
  fs.mkdirSync(path.join(f.sysfs, 'class/vfio', String(group)), { recursive: true });
  fs.writeFileSync(path.join(f.sysfs, 'class/vfio', String(group), 'dev'), `${dev}\n`);
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  return p.then(
    () => new Error('resolved'),
    (e: Error) => e,
  );
}

const listener = () => new UeventListener({ libc: {} as never, log });

t.test('normalizeBdf and parseVfioOptions', async (t) => {
  t.equal(normalizeBdf('0000:3B:00.0'), '0000:3b:00.0');
  t.equal(normalizeBdf('3b:1f.7'), '0000:3b:1f.7', 'no domain: 0000');
  t.equal(normalizeBdf('0000:3b:20.0'), undefined, 'slot above 1f');
  t.equal(normalizeBdf('0000:3b:00'), undefined);
  t.match(parseVfioOptions('d', ['0000:3b:00.0=02/01', '0000:3b:00.1=02/01.1']), [
    { host: '0000:3b:00.0', pciPath: { rootComplex: '00', slots: [{ slot: 2 }, { slot: 1, fn: 0 }] } },
    { host: '0000:3b:00.1', pciPath: { slots: [{ slot: 2 }, { slot: 1, fn: 1 }] } },
  ]);
  t.same(parseVfioOptions('d', ['0000:3b:00.0=']), [{ host: '0000:3b:00.0' }], 'an empty PCI path: nothing to wait for');
  for (const [opt, why] of [
    ['0000:3b:00.0', 'not "<host PCI address>=<guest PCI path>"'],
    ['0000:3b:00.0=02/01=x', 'not "<host PCI address>=<guest PCI path>"'],
    ['zz=02/01', '"zz" is not a PCI address'],
    ['0000:3b:00.0=02/zz', 'guest PCI path "02/zz"'],
  ]) {
    const e = errorOf(() => parseVfioOptions('vfio-pci device gpu0', [opt]));
    t.equal(e.name, 'InvalidArgument', opt);
    t.match(e.message, 'vfio-pci device gpu0', `${opt}: names the device`);
    t.match(e.message, why, opt);
  }
});

t.test('overrideDriver: override, unbind from the current driver, probe, in that order', async (t) => {
  const f = fakeSysfs(t);
  f.plug(FN, { group: 7, driver: 'e1000' });
  const writes: [string, string][] = [];
  overrideDriver(f.sysfs, FN, 'vfio-pci', 'dev', (file, text) => {
    writes.push([path.relative(f.sysfs, file), text]);
    fs.writeFileSync(file, text);
  });
  t.same(writes, [
    [`bus/pci/devices/${FN}/driver_override`, 'vfio-pci'],
    [`bus/pci/devices/${FN}/driver/unbind`, FN],
    ['bus/pci/drivers_probe', FN],
  ]);
  t.equal(f.read('bus/pci/drivers/e1000/unbind'), FN, 'the unbind went to the current driver (through the driver link)');

  const g = fakeSysfs(t);
  g.plug(FN, { group: 7 });
  const noDriver: string[] = [];
  overrideDriver(g.sysfs, FN, 'vfio-pci', 'dev', (file) => noDriver.push(path.relative(g.sysfs, file)));
  t.same(noDriver, [`bus/pci/devices/${FN}/driver_override`, 'bus/pci/drivers_probe'], 'no driver: no unbind');

  const h = fakeSysfs(t);
  h.plug(FN, { group: 7, driver: 'vfio-pci' });
  const already: string[] = [];
  overrideDriver(h.sysfs, FN, 'vfio-pci', 'dev', (file) => already.push(path.relative(h.sysfs, file)));
  t.same(already, [`bus/pci/devices/${FN}/driver_override`], 'already on vfio-pci: only the override');

  const e = errorOf(() => overrideDriver(h.sysfs, '0000:01:05.0', 'vfio-pci', 'vfio-pci device gpu0'));
  t.match(e.message, /^vfio-pci device gpu0: binding 0000:01:05.0 to vfio-pci: writing "vfio-pci" to .*driver_override: ENOENT/);
  t.equal((e as NodeJS.ErrnoException).code, 'ENOENT', 'the errno name is kept for the status');
});

t.test('attachVfio vfio-pci: the function already present, rebound, its group node found in sysfs', async (t) => {
  const f = fakeSysfs(t, { vfioDriver: false });
  f.plug(FN, { group: 7, driver: 'e1000' });
  groupNode(f, 7, '243:2');
  const loaded: string[][] = [];
  const l = listener();
  const d = await attachVfio({ uevents: l, sysfs: f.sysfs, timeoutMs: 5000, loadModules: (n) => loaded.push(n) }, 'vfio-pci', 'gpu0', ['0000:3b:00.0=02/01']);
  t.same([...d.addresses], [['0000:3b:00.0', FN]], 'host -> guest address');
  t.same(d.group, { number: 7, node: { path: '/dev/vfio/7', major: 243, minor: 2 }, control: { path: '/dev/vfio/vfio', major: 10, minor: 196 } });
  t.equal(f.read(`bus/pci/devices/${FN}/driver_override`), 'vfio-pci');
  t.equal(f.read('bus/pci/drivers/e1000/unbind'), FN);
  t.equal(f.read('bus/pci/drivers_probe'), FN);
  t.same(loaded, [['vfio_pci', 'vfio_iommu_type1']], 'vfio-pci not registered: its modules were loaded first');
});

t.test('attachVfio vfio-pci: function and group node both found by uevent', async (t) => {
  const f = fakeSysfs(t);
  const l = listener();
  const loaded: string[][] = [];
  const p = attachVfio({ uevents: l, sysfs: f.sysfs, timeoutMs: 5000, loadModules: (n) => loaded.push(n) }, 'vfio-pci', 'gpu0', ['0000:3b:00.0=02/01']);
  await new Promise((r) => setTimeout(r, 30));
  // The kernel's sysfs has the function once it sends the event; only its bus link is made here,
  // so the device directory the matcher's present() looks at stays absent: the event must do it.
  f.plug(FN, { group: 9, dirOnlyInBus: true });
  l.onData(uevent({ ACTION: 'add', DEVPATH: '/devices/pci0000:00/0000:00:02.0/0000:01:02.0', SUBSYSTEM: 'pci', SEQNUM: '1' }));
  l.onData(uevent({ ACTION: 'remove', DEVPATH: FN_DEVPATH, SUBSYSTEM: 'pci', SEQNUM: '2' }));
  await new Promise((r) => setTimeout(r, 30));
  t.equal(f.read('bus/pci/drivers_probe'), '', 'another slot and a removal are not the device');
  l.onData(uevent({ ACTION: 'add', DEVPATH: FN_DEVPATH, SUBSYSTEM: 'pci', PCI_SLOT_NAME: FN, SEQNUM: '3' }));
  await new Promise((r) => setTimeout(r, 30));
  t.equal(f.read('bus/pci/drivers_probe'), FN, 'bound once the add event came');
  l.onData(uevent({ ACTION: 'add', DEVPATH: '/devices/virtual/vfio/8', SUBSYSTEM: 'vfio', MAJOR: '243', MINOR: '0', DEVNAME: 'vfio/8', SEQNUM: '4' }));
  l.onData(uevent({ ACTION: 'add', DEVPATH: '/devices/virtual/vfio/9', SUBSYSTEM: 'vfio', MAJOR: '243', MINOR: '1', DEVNAME: 'vfio/9', SEQNUM: '5' }));
  const d = await p;
  t.same(d.group?.node, { path: '/dev/vfio/9', major: 243, minor: 1 }, "its group's node, not another group's");
  t.same(loaded, [], 'vfio-pci registered already: nothing loaded');
});

t.test('attachVfio vfio-pci-gk: only the wait; the driver is left alone', async (t) => {
  const f = fakeSysfs(t);
  f.plug(FN, { driver: 'e1000' });
  const fn2 = '0000:01:01.1';
  f.plug(fn2, { driver: 'e1000' });
  const d = await attachVfio({ uevents: listener(), sysfs: f.sysfs, timeoutMs: 5000 }, 'vfio-pci-gk', 'nic0', [
    '0000:3b:00.0=02/01',
    '0000:3b:00.1=02/01.1',
    '0000:3b:00.2=',
  ]);
  t.same(
    [...d.addresses],
    [
      ['0000:3b:00.0', FN],
      ['0000:3b:00.1', fn2],
    ],
  );
  t.equal(d.group, undefined);
  t.equal(f.read(`bus/pci/devices/${FN}/driver_override`), '(null)\n', 'no override (no IOMMU group needed either)');
  t.equal(f.read('bus/pci/drivers_probe'), '');
});

t.test('attachVfio refusals: no path, no group, two groups; a timeout names the device', async (t) => {
  const f = fakeSysfs(t);
  const deps = { uevents: listener(), sysfs: f.sysfs, timeoutMs: 5000 };
  const none = await rejection(attachVfio(deps, 'vfio-pci', 'gpu0', []));
  t.equal(none.name, 'InvalidArgument');
  t.match(none.message, 'vfio-pci device gpu0: no option names a guest PCI path');
  const bad = await rejection(attachVfio(deps, 'vfio-pci', 'gpu0', ['0000:3b:00.0:02/01']));
  t.equal(bad.name, 'InvalidArgument');
  t.match(bad.message, 'vfio-pci device gpu0: option "0000:3b:00.0:02/01"');

  f.plug(FN, { driver: 'e1000' });
  const noGroup = await rejection(attachVfio(deps, 'vfio-pci', 'gpu0', ['0000:3b:00.0=02/01']));
  t.equal(noGroup.name, 'InvalidArgument');
  t.match(noGroup.message, `vfio-pci device gpu0: ${FN} has no IOMMU group in the guest`);
  t.equal(f.read(`bus/pci/devices/${FN}/driver_override`), '(null)\n', 'refused before any rebinding');

  const g = fakeSysfs(t);
  g.plug(FN, { group: 3 });
  g.plug('0000:01:02.0', { group: 4 });
  const two = await rejection(attachVfio({ ...deps, sysfs: g.sysfs }, 'vfio-pci', 'gpu0', ['0000:3b:00.0=02/01', '0000:3b:00.1=02/02']));
  t.equal(two.name, 'InvalidArgument');
  t.match(two.message, 'vfio-pci device gpu0: 0000:01:02.0 is in guest IOMMU group 4, not 3');
  t.equal(g.read('bus/pci/drivers_probe'), '', 'neither was rebound');

  const late = await rejection(attachVfio({ ...deps, sysfs: fakeSysfs(t).sysfs, timeoutMs: 60 }, 'vfio-pci', 'gpu0', ['0000:3b:00.0=02/05']));
  t.equal(late.name, 'DeadlineExceeded');
  t.match(late.message, 'vfio-pci device gpu0: PCI function at PCI path 02/05: not found within 60 ms');

  const h = fakeSysfs(t);
  h.plug(FN, { group: 7 });
  const noNode = await rejection(attachVfio({ ...deps, sysfs: h.sysfs, timeoutMs: 60 }, 'vfio-pci', 'gpu0', ['0000:3b:00.0=02/01']));
  t.equal(noNode.name, 'DeadlineExceeded', 'bound, but vfio-pci never made the group node');
  t.match(noNode.message, 'vfio-pci device gpu0: VFIO group node /dev/vfio/7: not found within 60 ms');
});

t.test('findContainerDevices: vfio devices go to HotplugDevices.vfio with their id and options', async (t) => {
  const f = fakeSysfs(t);
  f.plug(FN, { group: 7 });
  groupNode(f, 7);
  const hotplug = new HotplugDevices({ uevents: listener(), sysfs: f.sysfs, timeoutMs: 5000 });
  const [found] = await findContainerDevices(
    [create(DeviceSchema, { id: 'gpu0', type: 'vfio-pci', containerPath: '/dev/vfio/42', options: ['0000:3b:00.0=02/01'] })],
    hotplug,
  );
  t.equal(found.vfio?.group?.number, 7);
  t.equal(found.found, undefined);
  const ap = await rejection(findContainerDevices([create(DeviceSchema, { id: 'ap0', type: 'vfio-ap', containerPath: '/dev/z90crypt' })], hotplug));
  t.equal(ap.name, 'Unimplemented', 'vfio-ap (s390x) is not served');
});

const vfioFound = (d: MessageInitShape<typeof DeviceSchema>, v: VfioDevice) => ({ device: create(DeviceSchema, d), vfio: v });
const gpu: VfioDevice = {
  kind: 'vfio-pci',
  addresses: new Map([
    ['0000:3b:00.0', '0000:01:01.0'],
    ['0000:3b:00.1', '0000:01:01.1'],
  ]),
  group: { number: 7, node: { path: '/dev/vfio/7', major: 243, minor: 0 }, control: { path: '/dev/vfio/vfio', major: 10, minor: 196 } },
};

t.test('applyFoundDevices vfio-pci: the node moves to the guest group, gets its numbers and an allow rule; /dev/vfio/vfio too', async (t) => {
  const s = create(SpecSchema, {
    Process: { Env: ['PATH=/bin', 'PCIDEVICE_INTEL_COM_GPU=0000:3b:00.1,0000:3b:00.0', 'PCIDEVICE_INTEL_COM_GPU_INFO={"0000:3b:00.0":{},"0000:3b:00.1":{}}'] },
    Linux: {
      Devices: [{ Path: '/dev/vfio/42', Type: 'c', Major: 241n, Minor: 3n, FileMode: 0o660 }],
      Resources: {
        Devices: [
          { Allow: false, Access: 'rwm' },
          { Allow: true, Type: 'c', Major: 241n, Minor: 3n, Access: 'rw' },
        ],
      },
    },
  });
  applyFoundDevices(s, [vfioFound({ id: 'gpu0', type: 'vfio-pci', containerPath: '/dev/vfio/42' }, gpu)]);
  t.match(s.Linux!.Devices, [
    { Path: '/dev/vfio/7', Type: 'c', Major: 243n, Minor: 0n, FileMode: 0o660 },
    { Path: '/dev/vfio/vfio', Type: 'c', Major: 10n, Minor: 196n, FileMode: 0o666 },
  ]);
  t.equal(s.Linux!.Devices.length, 2);
  t.match(s.Linux!.Resources!.Devices, [
    { Allow: false, Access: 'rwm' },
    { Allow: true, Type: 'c', Major: 243n, Minor: 0n, Access: 'rw' },
    { Allow: true, Type: 'c', Major: 243n, Minor: 0n, Access: 'rwm' },
    { Allow: true, Type: 'c', Major: 10n, Minor: 196n, Access: 'rwm' },
  ]);
  t.equal(s.Linux!.Resources!.Devices.length, 4, 'after the deny-all, so they take effect');
  t.same(s.Process!.Env, [
    'PATH=/bin',
    'PCIDEVICE_INTEL_COM_GPU=0000:01:01.1,0000:01:01.0',
    'PCIDEVICE_INTEL_COM_GPU_INFO={"0000:01:01.0":{},"0000:01:01.1":{}}',
  ]);
});

t.test('applyFoundDevices vfio-pci: no node in the spec (one is added); vfio-pci-gk changes only the environment', async (t) => {
  const s = create(SpecSchema, {
    Process: { Env: ['PCIDEVICE_X=0000:3b:00.0'] },
    Linux: { Devices: [{ Path: '/dev/vfio/vfio', Type: 'c', Major: 10n, Minor: 196n, FileMode: 0o666 }] },
  });
  applyFoundDevices(s, [
    vfioFound({ id: 'gpu0', type: 'vfio-pci', containerPath: '/dev/vfio/42' }, gpu),
    vfioFound(
      { id: 'nic0', type: 'vfio-pci-gk', containerPath: '/dev/vfio/43' },
      { kind: 'vfio-pci-gk', addresses: new Map([['0000:5e:00.0', '0000:02:00.0']]) },
    ),
  ]);
  t.match(s.Linux!.Devices, [{ Path: '/dev/vfio/vfio' }, { Path: '/dev/vfio/7', Type: 'c', Major: 243n, Minor: 0n }]);
  t.equal(s.Linux!.Devices.length, 2, "the spec's own /dev/vfio/vfio is kept, not doubled");
  t.equal(s.Linux!.Resources, undefined, 'a spec without device rules restricts nothing: no rule is added');
  t.same(s.Process!.Env, ['PCIDEVICE_X=0000:01:01.0']);
});

t.test('rewritePciEnv: other variables alone; an unknown host address refused', async (t) => {
  const env = ['PCIDEVICE_NAME=not-a-bdf', 'OTHER=0000:3b:00.0', 'PCIDEVICE_A=0000:3B:00.0'];
  rewritePciEnv(env, gpu.addresses);
  t.same(env, ['PCIDEVICE_NAME=not-a-bdf', 'OTHER=0000:3b:00.0', 'PCIDEVICE_A=0000:01:01.0']);
  const e = errorOf(() => rewritePciEnv(['PCIDEVICE_B=0000:99:00.0'], gpu.addresses));
  t.equal(e.name, 'InvalidArgument');
  t.match(e.message, 'PCIDEVICE_B: host PCI address 0000:99:00.0');
  // A guest address that is another function's host address is rewritten once.
  const swap = ['PCIDEVICE_S=0000:01:00.0,0000:01:00.1', 'PCIDEVICE_S_INFO=0000:01:00.0 0000:01:00.1'];
  rewritePciEnv(
    swap,
    new Map([
      ['0000:01:00.0', '0000:01:00.1'],
      ['0000:01:00.1', '0000:01:00.0'],
    ]),
  );
  t.same(swap, ['PCIDEVICE_S=0000:01:00.1,0000:01:00.0', 'PCIDEVICE_S_INFO=0000:01:00.1 0000:01:00.0']);
});
