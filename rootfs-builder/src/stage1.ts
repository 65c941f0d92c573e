// The stage-1 initramfs for booting the ext4 image: this kernel has virtio_blk and ext4 as modules,
// so something must load them before the root can be mounted. A busybox shell script is enough for
// that (load, mount, switch_root) and keeps the stage small; the agent stays PID 1 afterwards.
import fs from 'node:fs';
import path from 'node:path';
import { loadOrder, moduleName, parseModulesDep } from '../../init/src/modules.js';

export const rootModules = ['virtio_pci', 'virtio_blk', 'virtio_mmio', 'ext4', 'crc32c_generic'];

export function stage1Init(modules: string[]): string {
  return `#!/bin/busybox sh
# Stage 1: load what the kernel needs to reach the ext4 root, then hand over to its /sbin/init.
export PATH=/bin
busybox mount -t proc proc /proc
busybox mount -t devtmpfs dev /dev
for m in ${modules.join(' ')}; do busybox insmod /modules/$m.ko 2>/dev/null; done
root=/dev/vda1; mode=ro; init=/sbin/init
for w in $(busybox cat /proc/cmdline); do
  case "$w" in root=/dev/*) root=\${w#root=};; rw) mode=rw;; init=*) init=\${w#init=};; esac
done
i=0
while [ ! -b "$root" ] && [ $i -lt 500 ]; do busybox usleep 10000; i=$((i+1)); done
if ! busybox mount -t ext4 -o $mode "$root" /sysroot; then
  echo "stage1: cannot mount $root (ext4, $mode)"; busybox sleep 2; busybox poweroff -f
fi
busybox umount /dev /proc
exec busybox switch_root /sysroot "$init"
`;
}

/** Lays out the stage-1 tree from the full rootfs tree (its busybox and modules). */
export function makeStage1Tree(rootfs: string, kver: string, dest: string): string[] {
  fs.rmSync(dest, { recursive: true, force: true });
  for (const d of ['bin', 'proc', 'dev', 'sysroot', 'modules']) fs.mkdirSync(path.join(dest, d), { recursive: true });
  fs.copyFileSync(path.join(rootfs, 'bin', 'busybox'), path.join(dest, 'bin', 'busybox'));
  fs.chmodSync(path.join(dest, 'bin', 'busybox'), 0o755);
  const modDir = path.join(rootfs, 'lib', 'modules', kver);
  const { files, unknown } = loadOrder(parseModulesDep(fs.readFileSync(path.join(modDir, 'modules.dep'), 'utf8')), rootModules);
  if (unknown.length) throw new Error(`stage 1: modules ${unknown.join(', ')} are not in ${modDir}`);
  for (const f of files) fs.copyFileSync(path.join(modDir, f), path.join(dest, 'modules', path.basename(f)));
  const names = files.map((f) => path.basename(f).replace(/\.ko$/, ''));
  fs.writeFileSync(path.join(dest, 'init'), stage1Init(names), { mode: 0o755 });
  return names.map(moduleName);
}
