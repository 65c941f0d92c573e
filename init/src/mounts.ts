// The filesystems PID 1 mounts before anything else can run (kata's init mounts, plus /tmp).
import fs from 'node:fs';
import { MS_NODEV, MS_NOEXEC, MS_NOSUID, type Libc } from '../../agent/src/linux/libc.js';

export interface MountSpec {
  source: string;
  target: string;
  fstype: string;
  flags: number;
  data: string | null;
}

export const earlyMounts: readonly MountSpec[] = [
  { source: 'proc', target: '/proc', fstype: 'proc', flags: MS_NOSUID | MS_NODEV | MS_NOEXEC, data: null },
  { source: 'sysfs', target: '/sys', fstype: 'sysfs', flags: MS_NOSUID | MS_NODEV | MS_NOEXEC, data: null },
  { source: 'dev', target: '/dev', fstype: 'devtmpfs', flags: MS_NOSUID, data: 'mode=0755' },
  { source: 'devpts', target: '/dev/pts', fstype: 'devpts', flags: MS_NOSUID | MS_NOEXEC, data: 'newinstance,ptmxmode=0666,mode=0620,gid=5' },
  { source: 'shm', target: '/dev/shm', fstype: 'tmpfs', flags: MS_NOSUID | MS_NODEV, data: 'mode=1777' },
  { source: 'tmpfs', target: '/run', fstype: 'tmpfs', flags: MS_NOSUID | MS_NODEV, data: 'mode=0755' },
  { source: 'tmpfs', target: '/tmp', fstype: 'tmpfs', flags: MS_NOSUID | MS_NODEV, data: 'mode=1777' },
];

/**
 * Mounts each spec, creating its mount point. EBUSY means the kernel (or a stage-1 initramfs that
 * moved its mounts over) already did it, which is fine. Any other failure stops the boot: an agent
 * without /proc or /dev cannot do its job and the error names the mount.
 */
export function mountAll(libc: Pick<Libc, 'mount'>, specs: readonly MountSpec[] = earlyMounts): string[] {
  const already: string[] = [];
  for (const m of specs) {
    fs.mkdirSync(m.target, { recursive: true });
    try {
      libc.mount(m.source, m.target, m.fstype, m.flags, m.data);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EBUSY') throw err;
      already.push(m.target);
    }
  }
  return already;
}

/** /dev/ptmx must be the devpts instance's own ptmx so ptys opened through it land in /dev/pts. */
export function linkPtmx(dev = '/dev'): void {
  try {
    fs.unlinkSync(`${dev}/ptmx`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  fs.symlinkSync('pts/ptmx', `${dev}/ptmx`);
}
