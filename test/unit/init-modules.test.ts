import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { loadModules, loadOrder, moduleName, parseModulesDep, readModuleList } from '../../init/src/modules.js';
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
