// A minimal container root from Debian's busybox-static, shared by every root-only container test.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const busyboxPath = '/bin/busybox';

/** Why container tests cannot run here, or undefined when they can. */
export function containerTestSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (namespaces, mounts, cgroups)';
  if (!fs.existsSync(busyboxPath)) return `needs ${busyboxPath} (apt-get install busybox-static)`;
  return undefined;
}

/** Builds <dir>/rootfs with busybox and its applet links; returns the rootfs path. */
export function buildBusyboxRootfs(dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-rootfs-'))): string {
  const root = path.join(dir, 'rootfs');
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'proc', 'sys', 'dev', 'etc', 'tmp', 'root']) {
    fs.mkdirSync(path.join(root, d), { recursive: true });
  }
  fs.copyFileSync(busyboxPath, path.join(root, 'bin/busybox'));
  fs.chmodSync(path.join(root, 'bin/busybox'), 0o755);
  // busybox --install -s needs /proc/self/exe to be the busybox in the new root: run it chrooted.
  execFileSync('chroot', [root, '/bin/busybox', '--install', '-s']);
  fs.writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  fs.writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  fs.writeFileSync(path.join(root, 'etc/hostname'), 'rootfs\n');
  fs.chmodSync(path.join(root, 'tmp'), 0o1777);
  return root;
}
