// The block device matchers (virtio-blk on PCI and MMIO, SCSI disks, nvdimm pmem) against made-up uevents and a
// fake sysfs tree in a temp directory.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { nvdimmPmem, parseScsiAddress, scsiDisk, virtioBlkMmio, virtioBlkPci } from '../../agent/src/device/block.js';
import type { Uevent } from '../../agent/src/uevent/uevent.js';
import { errorOf, tempDir } from '../support/unit.js';

const fakeSysfs = (t: { teardown(f: () => unknown): void }): string => tempDir(t, 'block-unit-');

/** The fake tree with the bridge in slot 2 of root bus 00, behind which is bus 01. */
function withBridge(t: { teardown(f: () => unknown): void }): string {
  const sysfs = fakeSysfs(t);
  fs.mkdirSync(path.join(sysfs, 'devices/pci0000:00/0000:00:02.0/pci_bus/0000:01'), { recursive: true });
  return sysfs;
}

/** An event as parseUevents makes it. */
function ev(fields: Record<string, string>): Uevent {
  const num = (k: string) => (fields[k] !== undefined ? Number(fields[k]) : undefined);
  return {
    action: fields.ACTION,
    devpath: fields.DEVPATH,
    subsystem: fields.SUBSYSTEM ?? '',
    devname: fields.DEVNAME ?? '',
    modalias: fields.MODALIAS ?? '',
    major: num('MAJOR'),
    minor: num('MINOR'),
    seqnum: num('SEQNUM'),
    env: fields,
  };
}

const VDA = '/devices/pci0000:00/0000:00:02.0/0000:01:01.0/virtio3/block/vda';
const diskAdd = (over: Record<string, string> = {}) =>
  ev({ ACTION: 'add', DEVPATH: VDA, SUBSYSTEM: 'block', MAJOR: '254', MINOR: '0', DEVNAME: 'vda', DEVTYPE: 'disk', SEQNUM: '1234', ...over });

t.test('virtioBlkPci: the disk add event below its PCI function', async (t) => {
  const m = virtioBlkPci(withBridge(t), '02/01');
  t.equal(m.what, 'virtio-blk PCI path 02/01');
  t.same(m.fromEvent(diskAdd()), { path: '/dev/vda', major: 254, minor: 0 });
  t.same(m.fromEvent(diskAdd({ ACTION: 'change' })), { path: '/dev/vda', major: 254, minor: 0 }, 'a change event too');
  t.same(m.fromEvent(diskAdd({ DEVTYPE: '' })), { path: '/dev/vda', major: 254, minor: 0 }, 'no DEVTYPE: taken as the disk');
});

t.test('virtioBlkPci: not a partition, another slot, another subsystem, a removal', async (t) => {
  const m = virtioBlkPci(withBridge(t), '02/01');
  t.equal(m.fromEvent(diskAdd({ DEVPATH: `${VDA}/vda1`, DEVNAME: 'vda1', MINOR: '1', DEVTYPE: 'partition' })), undefined, 'a partition');
  t.equal(m.fromEvent(diskAdd({ DEVPATH: `${VDA}/vda1`, DEVNAME: 'vda1', MINOR: '1', DEVTYPE: 'disk' })), undefined, 'a node below the disk');
  t.equal(
    m.fromEvent(diskAdd({ DEVPATH: '/devices/pci0000:00/0000:00:02.0/0000:01:02.0/virtio4/block/vdb', DEVNAME: 'vdb', MINOR: '16' })),
    undefined,
    'the next slot behind the same bridge',
  );
  t.equal(m.fromEvent(diskAdd({ DEVPATH: '/devices/pci0000:00/0000:00:01.0/virtio0/block/vda' })), undefined, 'a disk on the root bus');
  t.equal(m.fromEvent(diskAdd({ SUBSYSTEM: 'bdi' })), undefined, 'another subsystem');
  t.equal(m.fromEvent(diskAdd({ SUBSYSTEM: 'virtio', DEVPATH: '/devices/pci0000:00/0000:00:02.0/0000:01:01.0/virtio3' })), undefined, 'the virtio device');
  t.equal(m.fromEvent(diskAdd({ ACTION: 'remove' })), undefined, 'a removal');
  t.equal(m.fromEvent(ev({ ACTION: 'add', DEVPATH: VDA, SUBSYSTEM: 'block', DEVNAME: 'vda', DEVTYPE: 'disk' })), undefined, 'no dev numbers');
});

t.test('virtioBlkPci: an event is not matched until the bridge is in sysfs', async (t) => {
  const sysfs = fakeSysfs(t);
  const m = virtioBlkPci(sysfs, '02/01');
  t.equal(m.fromEvent(diskAdd()), undefined);
  fs.mkdirSync(path.join(sysfs, 'devices/pci0000:00/0000:00:02.0/pci_bus/0000:01'), { recursive: true });
  t.same(m.fromEvent(diskAdd()), { path: '/dev/vda', major: 254, minor: 0 });
});

t.test('virtioBlkPci: the bus number is the one sysfs shows', async (t) => {
  const sysfs = fakeSysfs(t);
  fs.mkdirSync(path.join(sysfs, 'devices/pci0000:00/0000:00:02.0/pci_bus/0000:07'), { recursive: true });
  const m = virtioBlkPci(sysfs, '02/01');
  t.equal(m.fromEvent(diskAdd()), undefined, 'bus 01 is not the bridge bus');
  t.same(m.fromEvent(diskAdd({ DEVPATH: '/devices/pci0000:00/0000:00:02.0/0000:07:01.0/virtio3/block/vda' })), { path: '/dev/vda', major: 254, minor: 0 });
});

t.test('virtioBlkPci: present() finds a disk already in sysfs', async (t) => {
  const sysfs = withBridge(t);
  const m = virtioBlkPci(sysfs, '02/01');
  t.equal(m.present(), undefined, 'nothing behind the bridge yet');
  const fn = path.join(sysfs, 'devices/pci0000:00/0000:00:02.0/0000:01:01.0');
  fs.mkdirSync(path.join(fn, 'virtio3/block/vda'), { recursive: true });
  t.equal(m.present(), undefined, 'the disk directory without its dev file');
  fs.writeFileSync(path.join(fn, 'virtio3/block/vda/dev'), '254:16\n');
  t.same(m.present(), { path: '/dev/vda', major: 254, minor: 16 });
});

t.test('virtioBlkPci: present() ignores what is not a virtioN directory', async (t) => {
  const sysfs = withBridge(t);
  const fn = path.join(sysfs, 'devices/pci0000:00/0000:00:02.0/0000:01:01.0');
  fs.mkdirSync(path.join(fn, 'driver/block/vda'), { recursive: true });
  fs.writeFileSync(path.join(fn, 'driver/block/vda/dev'), '254:0\n');
  t.equal(virtioBlkPci(sysfs, '02/01').present(), undefined);
});

t.test('virtioBlkPci: a bad PCI path is InvalidArgument at once', async (t) => {
  const err = errorOf(() => virtioBlkPci('/nonexistent', '2g/01'));
  t.equal(err.name, 'InvalidArgument');
  t.match(err.message, '2g/01');
});

t.test('virtioBlkMmio: matched by its /dev name, in events and sysfs', async (t) => {
  const sysfs = fakeSysfs(t);
  const m = virtioBlkMmio(sysfs, '/dev/vdb');
  t.equal(m.what, 'virtio-mmio block device /dev/vdb');
  const vdb = '/devices/platform/a003c00.virtio_mmio/virtio1/block/vdb';
  const add = (over: Record<string, string> = {}) =>
    ev({ ACTION: 'add', DEVPATH: vdb, SUBSYSTEM: 'block', MAJOR: '254', MINOR: '16', DEVNAME: 'vdb', DEVTYPE: 'disk', ...over });
  t.same(m.fromEvent(add()), { path: '/dev/vdb', major: 254, minor: 16 });
  t.equal(m.fromEvent(add({ DEVNAME: 'vdc', DEVPATH: '/devices/platform/a003e00.virtio_mmio/virtio2/block/vdc' })), undefined, 'another disk');
  t.equal(m.fromEvent(add({ DEVNAME: 'vdb1', DEVPATH: `${vdb}/vdb1`, DEVTYPE: 'partition' })), undefined, 'its partition');
  t.equal(m.fromEvent(add({ SUBSYSTEM: 'bdi' })), undefined, 'another subsystem');
  t.equal(m.present(), undefined);
  fs.mkdirSync(path.join(sysfs, 'class/block/vdb'), { recursive: true });
  fs.writeFileSync(path.join(sysfs, 'class/block/vdb/dev'), '254:16\n');
  t.same(m.present(), { path: '/dev/vdb', major: 254, minor: 16 });
  fs.writeFileSync(path.join(sysfs, 'class/block/vdb/dev'), 'garbage\n');
  t.equal(m.present(), undefined, 'a dev file that is no major:minor');
});

t.test('virtioBlkMmio: a path not /dev/<disk> is InvalidArgument', async (t) => {
  for (const bad of ['vdb', '/dev/', '/dev/../vdb', '/dev/vd/b', '/sys/vdb']) {
    const err = errorOf(() => virtioBlkMmio('/nonexistent', bad));
    t.equal(err.name, 'InvalidArgument', bad);
    t.match(err.message, `"${bad}"`);
  }
});

t.test('parseScsiAddress', async (t) => {
  t.same(parseScsiAddress('0:0'), { target: 0, lun: 0 });
  t.same(parseScsiAddress('3:7'), { target: 3, lun: 7 });
  t.same(parseScsiAddress('0:0:1:2'), { target: 1, lun: 2 });
  for (const bad of ['1:0:1:2', '0:1:1:2', 'a:b', '', '0', '0:0:0', '0:-1', '0:0:0:0:0', '1:2 ']) {
    const err = errorOf(() => parseScsiAddress(bad));
    t.equal(err.name, 'InvalidArgument', `"${bad}"`);
    t.match(err.message, `"${bad}"`);
  }
});

t.test('scsiDisk: asks every SCSI host for a scan of target and LUN', async (t) => {
  const sysfs = fakeSysfs(t);
  for (const h of ['host0', 'host1']) {
    fs.mkdirSync(path.join(sysfs, 'class/scsi_host', h), { recursive: true });
    fs.writeFileSync(path.join(sysfs, 'class/scsi_host', h, 'scan'), '');
  }
  // A host whose scan file cannot be written (a directory here) is skipped.
  fs.mkdirSync(path.join(sysfs, 'class/scsi_host/host2/scan'), { recursive: true });
  const m = scsiDisk(sysfs, '0:1');
  t.equal(m.what, 'SCSI disk 0:0:0:1');
  t.equal(fs.readFileSync(path.join(sysfs, 'class/scsi_host/host0/scan'), 'utf8'), '0 0 1');
  t.equal(fs.readFileSync(path.join(sysfs, 'class/scsi_host/host1/scan'), 'utf8'), '0 0 1');
  scsiDisk(sysfs, '0:0:2:5');
  t.equal(fs.readFileSync(path.join(sysfs, 'class/scsi_host/host0/scan'), 'utf8'), '0 2 5');
  fs.writeFileSync(path.join(sysfs, 'class/scsi_host/host0/scan'), 'untouched');
  scsiDisk(sysfs, '0:1', false);
  t.equal(fs.readFileSync(path.join(sysfs, 'class/scsi_host/host0/scan'), 'utf8'), 'untouched', 'scan=false writes nothing');
});

t.test('scsiDisk: no SCSI host yet is no error', async (t) => {
  const m = scsiDisk(fakeSysfs(t), '0:1');
  t.equal(m.present(), undefined);
});

t.test('scsiDisk: the disk add event of its LUN', async (t) => {
  const m = scsiDisk(fakeSysfs(t), '0:1');
  const sdb = '/devices/pci0000:00/0000:00:03.0/virtio1/host0/target0:0:0/0:0:0:1/block/sdb';
  const add = (over: Record<string, string> = {}) =>
    ev({ ACTION: 'add', DEVPATH: sdb, SUBSYSTEM: 'block', DEVNAME: 'sdb', MAJOR: '8', MINOR: '16', DEVTYPE: 'disk', ...over });
  t.same(m.fromEvent(add()), { path: '/dev/sdb', major: 8, minor: 16 });
  t.equal(
    m.fromEvent(add({ DEVPATH: '/devices/pci0000:00/0000:00:03.0/virtio1/host0/target0:0:0/0:0:0:0/block/sda', DEVNAME: 'sda', MINOR: '0' })),
    undefined,
    'LUN 0',
  );
  t.equal(
    m.fromEvent(add({ DEVPATH: '/devices/pci0000:00/0000:00:03.0/virtio1/host0/target0:0:1/0:0:1:1/block/sdc', DEVNAME: 'sdc', MINOR: '32' })),
    undefined,
    'target 1',
  );
  t.equal(m.fromEvent(add({ DEVPATH: `${sdb}/sdb1`, DEVNAME: 'sdb1', MINOR: '17', DEVTYPE: 'partition' })), undefined, 'its partition');
  t.equal(
    m.fromEvent(add({ SUBSYSTEM: 'scsi_disk', DEVPATH: '/devices/pci0000:00/0000:00:03.0/virtio1/host0/target0:0:0/0:0:0:1/scsi_disk/0:0:0:1' })),
    undefined,
    'scsi_disk',
  );
});

t.test('scsiDisk: present() finds the disk on the SCSI bus', async (t) => {
  const sysfs = fakeSysfs(t);
  const m = scsiDisk(sysfs, '0:1');
  t.equal(m.present(), undefined);
  const dir = path.join(sysfs, 'bus/scsi/devices/0:0:0:1/block/sdb');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'dev'), '8:16\n');
  t.same(m.present(), { path: '/dev/sdb', major: 8, minor: 16 });
  t.equal(scsiDisk(sysfs, '0:2', false).present(), undefined, 'another LUN is not it');
});

// Where QEMU's `-device nvdimm` puts its pmem disk in a 6.1 guest (ACPI NFIT bus, raw namespace).
const NFIT_PMEM0 = '/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0012:00/ndbus0/region0/namespace0.0/block/pmem0';

t.test('nvdimmPmem: the add event of its pmem disk on the NFIT bus', async (t) => {
  const m = nvdimmPmem(fakeSysfs(t), '/dev/pmem0');
  t.equal(m.what, 'nvdimm /dev/pmem0');
  const add = (over: Record<string, string> = {}) =>
    ev({ ACTION: 'add', DEVPATH: NFIT_PMEM0, SUBSYSTEM: 'block', MAJOR: '259', MINOR: '0', DEVNAME: 'pmem0', DEVTYPE: 'disk', ...over });
  t.same(m.fromEvent(add()), { path: '/dev/pmem0', major: 259, minor: 0 });
  const pfn = '/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0012:00/ndbus0/region0/pfn0.1/block/pmem0';
  t.same(m.fromEvent(add({ DEVPATH: pfn })), { path: '/dev/pmem0', major: 259, minor: 0 }, 'fsdax mode: a pfn device claims the namespace');
  t.equal(m.fromEvent(add({ DEVNAME: 'pmem1', DEVPATH: NFIT_PMEM0.replace(/pmem0$/, 'pmem1') })), undefined, 'another pmem disk');
  t.equal(m.fromEvent(add({ DEVNAME: 'pmem0p1', DEVPATH: `${NFIT_PMEM0}/pmem0p1`, DEVTYPE: 'partition' })), undefined, 'its partition');
  const virtioPmem = '/devices/pci0000:00/0000:00:05.0/virtio4/ndbus1/region1/namespace1.0/block/pmem0';
  t.equal(m.fromEvent(add({ DEVPATH: virtioPmem })), undefined, 'a virtio-pmem disk of the same name is not an nvdimm');
  t.equal(m.fromEvent(add({ ACTION: 'remove' })), undefined, 'a removal');
});

t.test('nvdimmPmem: present() follows /sys/class/block to a disk below the NFIT bus', async (t) => {
  const sysfs = fakeSysfs(t);
  const m = nvdimmPmem(sysfs, '/dev/pmem0');
  t.equal(m.present(), undefined, 'nothing there yet');
  const dir = path.join(sysfs, NFIT_PMEM0);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'dev'), '259:0\n');
  fs.mkdirSync(path.join(sysfs, 'class/block'), { recursive: true });
  fs.symlinkSync(path.relative(path.join(sysfs, 'class/block'), dir), path.join(sysfs, 'class/block/pmem0'));
  t.same(m.present(), { path: '/dev/pmem0', major: 259, minor: 0 });

  const other = fakeSysfs(t);
  const vdir = path.join(other, 'devices/pci0000:00/0000:00:05.0/virtio4/ndbus1/region1/namespace1.0/block/pmem0');
  fs.mkdirSync(vdir, { recursive: true });
  fs.writeFileSync(path.join(vdir, 'dev'), '259:0\n');
  fs.mkdirSync(path.join(other, 'class/block'), { recursive: true });
  fs.symlinkSync(path.relative(path.join(other, 'class/block'), vdir), path.join(other, 'class/block/pmem0'));
  t.equal(nvdimmPmem(other, '/dev/pmem0').present(), undefined, 'a virtio-pmem disk in sysfs is not it');
});

t.test('nvdimmPmem: a path that is no /dev/pmem<N> is InvalidArgument at once', async (t) => {
  for (const bad of ['/dev/vda', 'pmem0', '/dev/pmem', '/dev/pmem0/../vda', '/dev/pmemX']) {
    t.match(
      errorOf(() => nvdimmPmem(fakeSysfs(t), bad)),
      { name: 'InvalidArgument', message: /nvdimm device .*\/dev\/pmem<N>/ },
      bad,
    );
  }
  t.doesNotThrow(() => nvdimmPmem(fakeSysfs(t), '/dev/pmem1.2s'), 'a BTT on namespace 1.2');
});
