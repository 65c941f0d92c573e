// CreateContainer's `devices`: disks the host hot-plugged for this container, named by PCI path or
// SCSI address (kata 3.x Device.id) or /dev path (vm_path: mmioblk, nvdimm's /dev/pmemN). Once
// each is found, the spec is made true for this guest, as kata's agents do: the host wrote its own
// major:minor for the node at `container_path` and for the cgroup rule allowing it; both get the
// guest's numbers. The node is then made in the container like any other spec device.
import type { Device } from '../../../protos/gen/agent_pb.js';
import type { Spec } from '../../../protos/gen/oci_pb.js';
import type { BlockDevice } from '../device/block.js';
import { isBlockKind, type BlockKind, type HotplugDevices } from '../device/hotplug.js';
import { InvalidArgument, Unimplemented } from '../errors.js';

export interface FoundDevice {
  device: Device;
  found: BlockDevice;
}

/** Waits for every device (at once); the types this agent does not serve are refused first, by name. */
export async function findContainerDevices(devices: readonly Device[], hotplug: HotplugDevices | undefined, signal?: AbortSignal): Promise<FoundDevice[]> {
  for (const d of devices) {
    if (!isBlockKind(d.type))
      throw new Unimplemented(`device ${d.id || d.vmPath} of type "${d.type}": not supported by this agent (blk, mmioblk, scsi and nvdimm are)`);
    if (!hotplug) throw new Unimplemented(`device ${d.id || d.vmPath}: hot-plugged devices are waited for only on the guest`);
    if (d.containerPath === '' || !d.containerPath.startsWith('/')) {
      throw new InvalidArgument(`device ${d.id || d.vmPath}: container_path "${d.containerPath}" must be an absolute path`);
    }
  }
  return Promise.all(
    devices.map(async (d) => {
      // mmioblk and nvdimm are named by their node (kata's agents look both up by vm_path); the
      // others by id, with vm_path as 1.x's fallback.
      const source = d.type === 'mmioblk' || d.type === 'nvdimm' ? d.vmPath || d.id : d.id || d.vmPath;
      return { device: d, found: await hotplug!.block(d.type as BlockKind, source, signal) };
    }),
  );
}

/**
 * Rewrites the spec's device nodes at each container_path to the guest's major:minor, and each
 * cgroup device rule that named the host's numbers. A device with no node in the spec gets one
 * (block, mode 0660, root), as kata's agents add it, and an allow rule when the spec has rules.
 */
export function applyFoundDevices(spec: Spec, found: readonly FoundDevice[]): void {
  if (found.length === 0) return;
  if (!spec.Linux) throw new InvalidArgument('the spec has no Linux section for its devices');
  const linux = spec.Linux;
  const rewritten = new Set<object>();
  for (const { device, found: dev } of found) {
    const node = linux.Devices.find((n) => n.Path === device.containerPath);
    const major = BigInt(dev.major);
    const minor = BigInt(dev.minor);
    if (!node) {
      linux.Devices.push({ $typeName: 'grpc.LinuxDevice', Path: device.containerPath, Type: 'b', Major: major, Minor: minor, FileMode: 0o660, UID: 0, GID: 0 });
      // The spec's device rules start from "deny all" (containerd, CRI-O): a node added here would
      // be there but unopenable without a rule of its own. No rules at all restricts nothing.
      const rules = linux.Resources?.Devices;
      if (rules && rules.length > 0) rules.push({ $typeName: 'grpc.LinuxDeviceCgroup', Allow: true, Type: 'b', Major: major, Minor: minor, Access: 'rwm' });
      continue;
    }
    // Each rule is rewritten once, from the host's numbers: two devices may trade numbers.
    for (const rule of linux.Resources?.Devices ?? []) {
      if (!rewritten.has(rule) && rule.Type === node.Type && rule.Major === node.Major && rule.Minor === node.Minor) {
        rule.Major = major;
        rule.Minor = minor;
        rewritten.add(rule);
      }
    }
    node.Major = major;
    node.Minor = minor;
  }
}
