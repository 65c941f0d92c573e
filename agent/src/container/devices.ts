// CreateContainer's `devices`: disks the host hot-plugged for this container, named by PCI path or
// SCSI address (kata 3.x Device.id) or /dev path (vm_path: mmioblk, nvdimm's /dev/pmemN), and VFIO
// PCI devices named by their options (device/vfio.ts). Once each is found, the spec is made true
// for this guest, as kata's agents do: the host wrote its own major:minor for the node at
// `container_path` and for the cgroup rule allowing it; both get the guest's numbers. The node is
// then made in the container like any other spec device.
import type { Device } from '../../../protos/gen/agent_pb.js';
import type { LinuxDevice, Spec } from '../../../protos/gen/oci_pb.js';
import type { BlockDevice } from '../device/block.js';
import { isBlockKind, type BlockKind, type HotplugDevices } from '../device/hotplug.js';
import { isVfioKind, rewritePciEnv, type VfioDevice } from '../device/vfio.js';
import { InvalidArgument, Unimplemented } from '../errors.js';

/** A disk's node, or what a VFIO device came to in the guest. */
export type FoundDevice = { device: Device; found: BlockDevice; vfio?: undefined } | { device: Device; found?: undefined; vfio: VfioDevice };

/** Waits for every device (at once); the types this agent does not serve are refused first, by name. */
export async function findContainerDevices(devices: readonly Device[], hotplug: HotplugDevices | undefined, signal?: AbortSignal): Promise<FoundDevice[]> {
  for (const d of devices) {
    if (!isBlockKind(d.type) && !isVfioKind(d.type))
      throw new Unimplemented(
        `device ${d.id || d.vmPath} of type "${d.type}": not supported by this agent (blk, mmioblk, scsi, nvdimm, vfio-pci and vfio-pci-gk are)`,
      );
    if (!hotplug) throw new Unimplemented(`device ${d.id || d.vmPath}: hot-plugged devices are waited for only on the guest`);
    if (d.containerPath === '' || !d.containerPath.startsWith('/')) {
      throw new InvalidArgument(`device ${d.id || d.vmPath}: container_path "${d.containerPath}" must be an absolute path`);
    }
  }
  return Promise.all(
    devices.map(async (d): Promise<FoundDevice> => {
      if (isVfioKind(d.type)) return { device: d, vfio: await hotplug!.vfio(d.type, d.id || d.vmPath, d.options, signal) };
      // mmioblk and nvdimm are named by their node (kata's agents look both up by vm_path); the
      // others by id, with vm_path as 1.x's fallback.
      const source = d.type === 'mmioblk' || d.type === 'nvdimm' ? d.vmPath || d.id : d.id || d.vmPath;
      return { device: d, found: await hotplug!.block(d.type as BlockKind, source, signal) };
    }),
  );
}

/**
 * Rewrites the spec's device nodes at each container_path to the guest's major:minor, and each
 * cgroup device rule that named the host's numbers. A disk with no node in the spec gets one
 * (block, mode 0660, root), as kata's agents add it. A vfio-pci device's node moves to the guest's
 * group (/dev/vfio/<guest group>: the host's group number means nothing here) and gets its numbers;
 * /dev/vfio/vfio, which a VFIO user opens first, is added. Every node added gets an allow rule when
 * the spec has device rules.
 */
export function applyFoundDevices(spec: Spec, found: readonly FoundDevice[]): void {
  if (found.length === 0) return;
  if (!spec.Linux) throw new InvalidArgument('the spec has no Linux section for its devices');
  const linux = spec.Linux;
  const rewritten = new Set<object>();
  type Numbers = { major: number; minor: number };
  // Each rule is rewritten once, from the host's numbers: two devices may trade numbers.
  const retarget = (node: LinuxDevice, type: string, dev: Numbers) => {
    const [major, minor] = [BigInt(dev.major), BigInt(dev.minor)];
    for (const rule of linux.Resources?.Devices ?? []) {
      if (!rewritten.has(rule) && rule.Type === node.Type && rule.Major === node.Major && rule.Minor === node.Minor) {
        rule.Type = type;
        rule.Major = major;
        rule.Minor = minor;
        rewritten.add(rule);
      }
    }
    node.Type = type;
    node.Major = major;
    node.Minor = minor;
  };
  const allow = (type: 'b' | 'c', dev: Numbers) => {
    // The spec's rules start from "deny all" (containerd, CRI-O); no rules at all restricts nothing.
    if (!linux.Resources || linux.Resources.Devices.length === 0) return;
    const [major, minor] = [BigInt(dev.major), BigInt(dev.minor)];
    // Once per node: two devices of one group, or a host rule already retargeted to these numbers.
    if (linux.Resources.Devices.some((r) => r.Allow && r.Type === type && r.Major === major && r.Minor === minor && r.Access === 'rwm')) return;
    linux.Resources.Devices.push({ $typeName: 'grpc.LinuxDeviceCgroup', Allow: true, Type: type, Major: major, Minor: minor, Access: 'rwm' });
  };
  /** A node the spec did not have (root's, `mode`); it would be unopenable without a rule of its own. */
  const addNode = (path: string, type: 'b' | 'c', dev: Numbers, mode: number) => {
    linux.Devices.push({
      $typeName: 'grpc.LinuxDevice',
      Path: path,
      Type: type,
      Major: BigInt(dev.major),
      Minor: BigInt(dev.minor),
      FileMode: mode,
      UID: 0,
      GID: 0,
    });
    allow(type, dev);
  };
  const addresses = new Map<string, string>();
  for (const { device, found: dev, vfio } of found) {
    if (vfio) {
      for (const [host, guest] of vfio.addresses) {
        if (addresses.has(host) && addresses.get(host) !== guest) {
          throw new InvalidArgument(
            `device ${device.id}: host PCI address ${host} is at ${guest} in the guest, and at ${addresses.get(host)} for another device`,
          );
        }
        addresses.set(host, guest);
      }
      if (!vfio.group) continue;
      const { node: groupDev, control } = vfio.group;
      // Two devices may share a guest group: the second finds the node the first one made.
      const node = linux.Devices.find((n) => n.Path === device.containerPath) ?? linux.Devices.find((n) => n.Path === groupDev.path);
      if (node) {
        retarget(node, 'c', groupDev);
        node.Path = groupDev.path;
        allow('c', groupDev);
      } else addNode(groupDev.path, 'c', groupDev, 0o660);
      const ctl = linux.Devices.find((n) => n.Path === control.path);
      if (ctl) {
        retarget(ctl, 'c', control);
        allow('c', control);
      } else addNode(control.path, 'c', control, 0o666);
      continue;
    }
    const node = linux.Devices.find((n) => n.Path === device.containerPath);
    if (node) retarget(node, node.Type, dev);
    else addNode(device.containerPath, 'b', dev, 0o660);
  }
  if (addresses.size > 0 && spec.Process) rewritePciEnv(spec.Process.Env, addresses);
}
