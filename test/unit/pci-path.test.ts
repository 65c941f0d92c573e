// kata's PCI paths: parsing, formatting, and their resolution through bridges' pci_bus directories
// in a fake sysfs tree.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { formatPciPath, parsePciPath, pciRelativePath, rootBusDir } from '../../agent/src/device/pci-path.js';
import { errorOf, tempDir } from '../support/unit.js';

const fakeSysfs = (t: { teardown(f: () => unknown): void }): string => tempDir(t, 'pci-path-unit-');

t.test('parsePciPath: the forms kata sends', async (t) => {
  t.same(parsePciPath('02/01'), {
    rootComplex: '00',
    slots: [
      { slot: 2, fn: 0 },
      { slot: 1, fn: 0 },
    ],
  });
  t.same(parsePciPath('02.1/00'), {
    rootComplex: '00',
    slots: [
      { slot: 2, fn: 1 },
      { slot: 0, fn: 0 },
    ],
  });
  t.same(parsePciPath('20/00/02'), {
    rootComplex: '20',
    slots: [
      { slot: 0, fn: 0 },
      { slot: 2, fn: 0 },
    ],
  });
  t.same(parsePciPath('1f'), { rootComplex: '00', slots: [{ slot: 0x1f, fn: 0 }] });
  t.same(parsePciPath('0A/1F'), {
    rootComplex: '00',
    slots: [
      { slot: 0x0a, fn: 0 },
      { slot: 0x1f, fn: 0 },
    ],
  });
  t.same(
    parsePciPath('02/03/04'),
    {
      rootComplex: '00',
      slots: [
        { slot: 2, fn: 0 },
        { slot: 3, fn: 0 },
        { slot: 4, fn: 0 },
      ],
    },
    'a first segment below 0x20 is a slot, not a root complex',
  );
});

t.test('parsePciPath: bad inputs are InvalidArgument naming the input', async (t) => {
  for (const bad of ['', 'xyz', '2g', '40', '02/', '/02', '02//01', '02.8/01', '123', '02.1.1']) {
    const err = errorOf(() => parsePciPath(bad));
    t.equal(err.name, 'InvalidArgument', `"${bad}" is refused`);
    t.match(err.message, `"${bad}"`, `"${bad}" is named in the message`);
  }
  t.match(errorOf(() => parsePciPath('40')).message, /above 1f/);
  t.match(errorOf(() => parsePciPath('zz', 'virtio-blk PCI path')).message, /^virtio-blk PCI path "zz"/);
  t.equal(errorOf(() => parsePciPath(Array(17).fill('01').join('/'))).name, 'InvalidArgument', 'more than 16 levels');
});

t.test('formatPciPath: a round trip of the canonical forms', async (t) => {
  for (const p of ['02/01', '02.1/00', '20/00/02', '1f', '00.7', '21/1f.3/00']) {
    t.equal(formatPciPath(parsePciPath(p)), p, p);
  }
  t.equal(formatPciPath(parsePciPath('2/1')), '02/01', 'one-digit slots come back padded');
  t.equal(formatPciPath(parsePciPath('0A/1F')), '0a/1f', 'hex comes back lower case');
});

t.test('rootBusDir names the root complex directory', async (t) => {
  t.equal(rootBusDir('/sys', '00'), '/sys/devices/pci0000:00');
  t.equal(rootBusDir('/tmp/s', '20'), '/tmp/s/devices/pci0000:20');
});

t.test('pciRelativePath through one bridge of a fake sysfs', async (t) => {
  const sysfs = fakeSysfs(t);
  fs.mkdirSync(path.join(sysfs, 'devices/pci0000:00/0000:00:02.0/pci_bus/0000:01'), { recursive: true });
  t.equal(pciRelativePath(sysfs, parsePciPath('02/01')), '/0000:00:02.0/0000:01:01.0');
  t.equal(pciRelativePath(sysfs, parsePciPath('02/03.2')), '/0000:00:02.0/0000:01:03.2', 'the function is kept');
  t.equal(pciRelativePath(sysfs, parsePciPath('05')), '/0000:00:05.0', 'a device on the root bus needs no bridge');
});

t.test('pciRelativePath follows the bus number the firmware chose, bridge by bridge', async (t) => {
  const sysfs = fakeSysfs(t);
  const b1 = path.join(sysfs, 'devices/pci0000:00/0000:00:1e.0');
  fs.mkdirSync(path.join(b1, 'pci_bus/0000:05'), { recursive: true });
  fs.mkdirSync(path.join(b1, '0000:05:01.0/pci_bus/0000:06'), { recursive: true });
  t.equal(pciRelativePath(sysfs, parsePciPath('1e/01/03')), '/0000:00:1e.0/0000:05:01.0/0000:06:03.0');
});

t.test('pciRelativePath under a pxb-pcie root complex', async (t) => {
  const sysfs = fakeSysfs(t);
  fs.mkdirSync(path.join(sysfs, 'devices/pci0000:20/0000:20:00.0/pci_bus/0000:21'), { recursive: true });
  t.equal(pciRelativePath(sysfs, parsePciPath('20/00/02')), '/0000:20:00.0/0000:21:02.0');
});

t.test('pciRelativePath is undefined while a bridge is not there', async (t) => {
  const sysfs = fakeSysfs(t);
  t.equal(pciRelativePath(sysfs, parsePciPath('02/01')), undefined, 'no tree at all');
  fs.mkdirSync(path.join(sysfs, 'devices/pci0000:00/0000:00:03.0/pci_bus/0000:01'), { recursive: true });
  t.equal(pciRelativePath(sysfs, parsePciPath('02/01')), undefined, 'another bridge is there, not this one');
  fs.mkdirSync(path.join(sysfs, 'devices/pci0000:00/0000:00:02.0'));
  t.equal(pciRelativePath(sysfs, parsePciPath('02/01')), undefined, 'the bridge without its pci_bus yet');
});

t.test('pciRelativePath: a "bridge" with two buses is InvalidArgument', async (t) => {
  const sysfs = fakeSysfs(t);
  const bridge = path.join(sysfs, 'devices/pci0000:00/0000:00:02.0');
  fs.mkdirSync(path.join(bridge, 'pci_bus/0000:01'), { recursive: true });
  fs.mkdirSync(path.join(bridge, 'pci_bus/0000:02'));
  const err = errorOf(() => pciRelativePath(sysfs, parsePciPath('02/01')));
  t.equal(err.name, 'InvalidArgument');
  t.match(err.message, '02/01');
  t.match(err.message, /2 buses/);
  fs.rmdirSync(path.join(bridge, 'pci_bus/0000:01'));
  fs.rmdirSync(path.join(bridge, 'pci_bus/0000:02'));
  t.equal(errorOf(() => pciRelativePath(sysfs, parsePciPath('02/01'))).name, 'InvalidArgument', 'an empty pci_bus too');
});
