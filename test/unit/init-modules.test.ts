import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import {
  coldplugModules,
  loadModules,
  loadOrder,
  moduleName,
  modulesForDevices,
  parseModulesAlias,
  parseModulesDep,
  readModuleList,
} from '../../init/src/modules.js';
import { RecordingLibc } from '../support/recording-libc.js';

const dep = `kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/vmw_vsock/vsock-loopback.ko: kernel/net/vmw_vsock/vsock.ko
kernel/net/vmw_vsock/vsock.ko:
`;

t.test('names are normalised like modprobe does', async (t) => {
  t.equal(moduleName('kernel/net/vmw_vsock/vsock-loopback.ko'), 'vsock_loopback');
  t.equal(moduleName('a/b/ext4.ko.xz'), 'ext4');
  t.same(readModuleList('virtio_pci\n# comment\n\n vsock  # why\n'), ['virtio_pci', 'vsock']);
});

t.test('dependencies load first and each file once', async (t) => {
  const { files, unknown } = loadOrder(parseModulesDep(dep), ['virtio_pci', 'virtio_console', 'vsock-loopback', 'nope']);
  const names = files.map(moduleName);
  t.same(unknown, ['nope']);
  t.equal(new Set(names).size, names.length, 'no duplicates');
  for (const [before, after] of [
    ['virtio_ring', 'virtio'],
    ['virtio', 'virtio_pci'],
    ['virtio', 'virtio_console'],
    ['vsock', 'vsock_loopback'],
    ['virtio_pci_modern_dev', 'virtio_pci'],
  ]) {
    t.ok(names.indexOf(before) >= 0 && names.indexOf(before) < names.indexOf(after), `${before} before ${after}`);
  }
});

/** A modules directory with `dep` as its modules.dep and a (fake) file for every module in it. */
function modulesTree(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mods-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'modules.dep'), dep);
  for (const line of dep.trim().split('\n')) {
    const f = path.join(dir, line.slice(0, line.indexOf(':')));
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, 'not really a module');
  }
  return dir;
}

t.test('loadModules: finit_module per file, EEXIST tolerated, failures reported with the file', async (t) => {
  const dir = modulesTree(t);
  const { SyscallError } = await import('../../agent/src/linux/errno.js');
  let n = 0;
  const libc = new RecordingLibc({
    finitModule: () => {
      n++;
      if (n === 1) throw new SyscallError('finit_module', 17, 'fd'); // EEXIST: already built in
      if (n === 2) throw new SyscallError('finit_module', 8, 'fd'); // ENOEXEC: bad module
    },
  });
  const r = loadModules(libc, dir, ['virtio', 'vsock_loopback']);
  t.same(r.alreadyLoaded, ['virtio_ring']);
  t.equal(r.failed.length, 1);
  t.match(r.failed[0], { file: /virtio\.ko$/, error: /ENOEXEC/ });
  t.same(r.loaded, ['vsock', 'vsock_loopback']);
  t.equal(libc.calls.filter((c) => c.name === 'finitModule').length, 4);
});

t.test('loadModules: parameters go to the module they name, not to its dependencies', async (t) => {
  const dir = modulesTree(t);
  const libc = new RecordingLibc();
  const r = loadModules(libc, dir, ['vsock_loopback'], { vsock_loopback: 'a=1 b=2' });
  t.same(r.loaded, ['vsock', 'vsock_loopback']);
  t.same(
    libc.calls.filter((c) => c.name === 'finitModule').map((c) => c.args[1]),
    ['', 'a=1 b=2'],
  );
});

t.test('loadModules without modules.dep reports it instead of throwing', async (t) => {
  const r = loadModules(new RecordingLibc(), '/nonexistent-modules-dir', ['x']);
  t.match(r.failed[0], { file: '/nonexistent-modules-dir/modules.dep', error: /ENOENT/ });
});

t.test('modules.alias globs match modaliases as fnmatch does', async (t) => {
  const aliases = parseModulesAlias(
    [
      '# Aliases extracted from modules themselves.',
      'alias virtio:d00000001v* virtio_net',
      'alias virtio:d00000003v* virtio_console',
      'alias pci:v00001AF4d00001041sv*sd*bc*sc*i* virtio-pci-thing',
      'alias fs-9p 9p',
      'alias pci:v*d*sv*sd*bc01sc0[0-7]i* storage_class',
    ].join('\n'),
  );
  t.same(modulesForDevices(aliases, ['virtio:d00000001v00001AF4']), ['virtio_net']);
  t.same(modulesForDevices(aliases, ['virtio:d00000011v00001AF4']), [], 'device 0x11 is not 0x1');
  t.same(modulesForDevices(aliases, ['pci:v00001AF4d00001041sv00001AF4sd00001100bc02sc00i00']), ['virtio_pci_thing'], 'dashes normalised');
  t.same(modulesForDevices(aliases, ['pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01']), ['storage_class'], 'a [0-7] class');
  t.same(modulesForDevices(aliases, ['pci:v00008086d00002922sv00001AF4sd00001100bc01sc08i01']), []);
});

t.test('coldplug: the drivers of present PCI devices, then of the virtio devices they create', async (t) => {
  const dir = modulesTree(t);
  fs.writeFileSync(path.join(dir, 'modules.alias'), 'alias virtio:d00000003v* virtio_console\nalias pci:v00001AF4d00001043sv*sd*bc*sc*i* virtio_pci\n');
  const sysfs = fs.mkdtempSync(path.join(os.tmpdir(), 'coldplug-sysfs-'));
  t.teardown(() => fs.rmSync(sysfs, { recursive: true, force: true }));
  const device = (bus: string, name: string, modalias: string | undefined) => {
    const d = path.join(sysfs, 'bus', bus, 'devices', name);
    fs.mkdirSync(d, { recursive: true });
    if (modalias) fs.writeFileSync(path.join(d, 'modalias'), `${modalias}\n`);
  };
  device('pci', '0000:00:03.0', 'pci:v00001AF4d00001043sv00001AF4sd00001100bc07sc80i00');
  device('pci', '0000:00:00.0', 'pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00');
  device('pci', '0000:00:01.0', undefined);
  const libc = new RecordingLibc({
    // virtio_pci's probe creates the virtio device, as the kernel does during finit_module.
    finitModule: () => device('virtio', 'virtio0', 'virtio:d00000003v00001AF4'),
  });
  const r = coldplugModules(libc, dir, sysfs);
  t.same(r.loaded, ['virtio_ring', 'virtio', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio_pci', 'virtio_console']);
  t.same(r.failed, []);
  t.equal(r.devices, 3, 'two PCI devices with a modalias file and the virtio device');
  t.equal(libc.calls.length, 6, 'the shared dependencies are not loaded twice');
});

t.test('coldplug: an nvdimm is nfit for the ACPI NFIT device, then nd_pmem for the namespace on its nd bus', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mods-nd-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ndDep = `kernel/drivers/acpi/nfit/nfit.ko: kernel/drivers/nvdimm/libnvdimm.ko
kernel/drivers/nvdimm/libnvdimm.ko:
kernel/drivers/nvdimm/nd_pmem.ko: kernel/drivers/nvdimm/nd_btt.ko kernel/drivers/nvdimm/libnvdimm.ko
kernel/drivers/nvdimm/nd_btt.ko: kernel/drivers/nvdimm/libnvdimm.ko
`;
  fs.writeFileSync(path.join(dir, 'modules.dep'), ndDep);
  for (const line of ndDep.trim().split('\n')) {
    const f = path.join(dir, line.slice(0, line.indexOf(':')));
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, 'not really a module');
  }
  // The aliases as 6.1's modules.alias has them (nd:t<type>* is the nd bus's modalias form).
  fs.writeFileSync(path.join(dir, 'modules.alias'), 'alias acpi*:ACPI0012:* nfit\nalias nd:t4* nd_pmem\nalias nd:t5* nd_pmem\n');
  const sysfs = fs.mkdtempSync(path.join(os.tmpdir(), 'coldplug-sysfs-'));
  t.teardown(() => fs.rmSync(sysfs, { recursive: true, force: true }));
  const device = (bus: string, name: string, modalias: string) => {
    const d = path.join(sysfs, 'bus', bus, 'devices', name);
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, 'modalias'), `${modalias}\n`);
  };
  device('acpi', 'ACPI0012:00', 'acpi:ACPI0012:');
  device('acpi', 'PNP0A03:00', 'acpi:PNP0A03:');
  const order: string[] = [];
  const libc = new RecordingLibc({
    finitModule: (fd: number) => {
      const file = fs.readlinkSync(`/proc/self/fd/${fd}`);
      order.push(path.basename(file, '.ko'));
      // nfit's probe registers the nd bus and its namespace (libnvdimm does it asynchronously; the
      // bus's wait_probe is what coldplug reads before the nd round).
      if (file.endsWith('/nfit.ko')) {
        device('nd', 'ndbus0', 'nd:t0');
        fs.writeFileSync(path.join(sysfs, 'bus/nd/devices/ndbus0/wait_probe'), '1\n');
        device('nd', 'namespace0.0', 'nd:t4');
      }
    },
  });
  const r = coldplugModules(libc, dir, sysfs);
  t.same(r.failed, []);
  t.same(order, ['libnvdimm', 'nfit', 'nd_btt', 'nd_pmem'], 'nfit (and libnvdimm) first, then nd_pmem for the namespace it made');
  t.equal(r.devices, 4, 'two ACPI devices, the bus and the namespace');
});

t.test('coldplug without modules.alias reports it and loads nothing', async (t) => {
  const dir = modulesTree(t);
  const libc = new RecordingLibc();
  const r = coldplugModules(libc, dir, '/nonexistent-sysfs');
  t.match(r.failed, [{ file: /modules\.alias$/ }]);
  t.same(libc.calls, []);
});

t.test('coldplug does not try again what the boot module list loaded', async (t) => {
  const dir = modulesTree(t);
  fs.writeFileSync(path.join(dir, 'modules.alias'), 'alias pci:v00001AF4d00001043sv*sd*bc*sc*i* virtio_pci\n');
  const sysfs = fs.mkdtempSync(path.join(os.tmpdir(), 'coldplug-sysfs-'));
  t.teardown(() => fs.rmSync(sysfs, { recursive: true, force: true }));
  fs.mkdirSync(path.join(sysfs, 'bus', 'pci', 'devices', '0000:00:03.0'), { recursive: true });
  fs.writeFileSync(path.join(sysfs, 'bus', 'pci', 'devices', '0000:00:03.0', 'modalias'), 'pci:v00001AF4d00001043sv00001AF4sd00001100bc07sc80i00\n');
  const libc = new RecordingLibc();
  const tried = new Set<string>();
  t.same(loadModules(libc, dir, ['virtio_pci'], {}, tried).loaded.length, 5);
  const r = coldplugModules(libc, dir, sysfs, tried);
  t.same(r.loaded, [], 'virtio_pci and its dependencies were loaded by the list');
  t.equal(libc.calls.length, 5, 'no second finit_module');
});
