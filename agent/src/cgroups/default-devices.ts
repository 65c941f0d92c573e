// The device rules every container gets after its spec's own, as runc and kata's agents append them:
// a spec from containerd or CRI-O starts its rules with "deny all" and relies on the runtime for the
// devices every process needs (/dev/null, a tty, ptys), and for mknod of the spec's own nodes, which
// the container set-up makes after the cgroup exists.
import { create } from '@bufbuild/protobuf';
import { LinuxDeviceCgroupSchema, type LinuxDeviceCgroup, type LinuxResources } from '../../../protos/gen/oci_pb.js';

/** [type, major, minor, access]; -1 is any number. */
const defaults: [string, number, number, string][] = [
  ['c', -1, -1, 'm'], // mknod of any char node (the node itself still needs a read/write rule)
  ['b', -1, -1, 'm'],
  ['c', 1, 3, 'rwm'], // /dev/null
  ['c', 1, 5, 'rwm'], // /dev/zero
  ['c', 1, 7, 'rwm'], // /dev/full
  ['c', 1, 8, 'rwm'], // /dev/random
  ['c', 1, 9, 'rwm'], // /dev/urandom
  ['c', 5, 0, 'rwm'], // /dev/tty
  ['c', 5, 1, 'rwm'], // /dev/console
  ['c', 5, 2, 'rwm'], // /dev/ptmx
  ['c', 136, -1, 'rwm'], // /dev/pts/*
  ['c', 10, 200, 'rwm'], // /dev/net/tun
];

/**
 * `resources` with the default rules after the spec's; a spec without device rules restricts
 * nothing, so it is returned as it is. The spec's message is not changed (it is also the bundle's).
 */
export function withDefaultDeviceRules(resources: LinuxResources | undefined): LinuxResources | undefined {
  if (!resources || resources.Devices.length === 0) return resources;
  const added: LinuxDeviceCgroup[] = defaults.map(([Type, major, minor, Access]) =>
    create(LinuxDeviceCgroupSchema, { Allow: true, Type, Major: BigInt(major), Minor: BigInt(minor), Access }),
  );
  return { ...resources, Devices: [...resources.Devices, ...added] };
}
