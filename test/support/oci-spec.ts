import type { MessageInitShape } from '@bufbuild/protobuf';
import type { SpecSchema } from '../../protos/gen/oci_pb.js';

export type SpecInit = MessageInitShape<typeof SpecSchema>;

/** A runc-like default spec for a busybox rootfs: own pid/mount/ipc/uts/cgroup namespaces, /proc, /dev, /sys. */
export function busyboxSpec(rootfs: string, args: string[], extra: { hostname?: string; memoryLimit?: bigint; terminal?: boolean } = {}): SpecInit {
  return {
    Version: '1.0.2',
    Root: { Path: rootfs },
    Hostname: extra.hostname ?? 'ctr',
    Process: {
      Args: args,
      Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root'],
      Cwd: '/',
      Terminal: extra.terminal ?? false,
      User: { UID: 0, GID: 0 },
    },
    Mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
    ],
    Linux: {
      Namespaces: [{ Type: 'pid' }, { Type: 'mount' }, { Type: 'ipc' }, { Type: 'uts' }, { Type: 'cgroup' }],
      Resources: extra.memoryLimit ? { Memory: { Limit: extra.memoryLimit } } : undefined,
      MaskedPaths: ['/proc/kcore', '/proc/keys', '/sys/firmware'],
      ReadonlyPaths: ['/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

type MountInit = { destination: string; type: string; source: string; options?: string[] };

export function addMount(spec: SpecInit, m: MountInit): SpecInit {
  (spec.Mounts as MountInit[]).push(m);
  return spec;
}

export function addNamespace(spec: SpecInit, type: string, path = ''): SpecInit {
  (spec.Linux!.Namespaces as { Type: string; Path: string }[]).push({ Type: type, Path: path });
  return spec;
}
