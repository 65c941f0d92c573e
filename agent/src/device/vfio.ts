// VFIO PCI devices a kata host passes through to a pod (Device.type "vfio-pci" and "vfio-pci-gk").
// The host names each PCI function of the device's host IOMMU group in `options`, as
// "<host BDF>=<guest PCI path>" ("0000:3b:00.0=02/01"). For each, the agent waits until the
// function is in the guest's sysfs (the host hot-plugged it, or it was there at boot). Then:
//  - vfio-pci: the container drives the device itself through VFIO, so the function is moved to the
//    guest's vfio-pci driver (driver_override, unbind, drivers_probe: `driverctl set-override`),
//    and the container gets the guest's group node /dev/vfio/<group> (the guest's group number and
//    dev numbers, not the host's) and the VFIO container node /dev/vfio/vfio.
//  - vfio-pci-gk ("guest kernel"): the guest's own driver keeps the device; only the wait is needed.
// For both, the host-to-guest PCI address map rewrites the PCIDEVICE_* variables an SR-IOV device
// plugin put in the container's environment.
import fs from 'node:fs';
import path from 'node:path';
import { InvalidArgument, withContext } from '../errors.js';
import type { DeviceMatcher, UeventListener } from '../uevent/listener.js';
import { readDevNumbers } from './dev-numbers.js';
import { formatPciPath, parsePciPath, pciRelativePath, type PciPath } from './pci-path.js';

export const vfioKinds = ['vfio-pci', 'vfio-pci-gk'] as const;
export type VfioKind = (typeof vfioKinds)[number];
export const isVfioKind = (k: string): k is VfioKind => (vfioKinds as readonly string[]).includes(k);

/** A character device node the container gets, with the guest's numbers. */
export interface CharDevice {
  /** "/dev/vfio/5". */
  path: string;
  major: number;
  minor: number;
}

export interface VfioFunction {
  /** The host's address of the function, normalised: "0000:3b:00.0". */
  host: string;
  /** Where the guest has it; undefined when the host sent no PCI path (already present, left alone). */
  pciPath?: PciPath;
}

export interface VfioDevice {
  kind: VfioKind;
  /** Host BDF -> guest BDF, for every function that was waited for. */
  addresses: Map<string, string>;
  /** vfio-pci only: the guest's IOMMU group and its node, and /dev/vfio/vfio. */
  group?: { number: number; node: CharDevice; control: CharDevice };
}

const BDF = /^(?:([0-9a-f]{4}):)?([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$/i;

/** "0000:3b:00.0" (a domain-less "3b:00.0" is domain 0000), lowercase; undefined if it is not one. */
export function normalizeBdf(text: string): string | undefined {
  const m = BDF.exec(text);
  if (!m || parseInt(m[3], 16) > 0x1f) return undefined;
  return `${(m[1] ?? '0000').toLowerCase()}:${m[2].toLowerCase()}:${m[3].toLowerCase()}.${m[4]}`;
}

/** The device's options, each "<host BDF>=<guest PCI path>"; INVALID_ARGUMENT naming `what` and the entry. */
export function parseVfioOptions(what: string, options: readonly string[]): VfioFunction[] {
  return options.map((opt) => {
    const parts = opt.split('=');
    if (parts.length !== 2) throw new InvalidArgument(`${what}: option "${opt}" is not "<host PCI address>=<guest PCI path>"`);
    const host = normalizeBdf(parts[0]);
    if (!host) throw new InvalidArgument(`${what}: option "${opt}": "${parts[0]}" is not a PCI address (DDDD:BB:DD.F)`);
    // kata's runtime leaves the path empty when it could not work it out (a device behind a NUMA
    // root complex it cannot walk); the device is then present from boot and kata's agent skips it.
    if (parts[1] === '') return { host };
    return { host, pciPath: parsePciPath(parts[1], `${what}: guest PCI path`) };
  });
}

/** The PCI function at `pciPath`, found by its add event or in sysfs; the result is its guest BDF. */
export function pciFunction(sysfs: string, pciPath: PciPath, what: string): DeviceMatcher<string> {
  const devDir = () => {
    const rel = pciRelativePath(sysfs, pciPath);
    return rel === undefined ? undefined : `/devices/pci0000:${pciPath.rootComplex}${rel}`;
  };
  return {
    what: `${what}: PCI function at PCI path ${formatPciPath(pciPath)}`,
    fromEvent(ev) {
      if (ev.action === 'remove' || (ev.subsystem !== '' && ev.subsystem !== 'pci')) return undefined;
      const dir = devDir();
      return dir !== undefined && ev.devpath === dir ? path.basename(dir) : undefined;
    },
    present() {
      const dir = devDir();
      return dir !== undefined && fs.existsSync(path.join(sysfs, dir)) ? path.basename(dir) : undefined;
    },
  };
}

/** The function's IOMMU group number (its iommu_group link names the group's directory). */
export function iommuGroup(sysfs: string, bdf: string, what: string): number {
  const link = path.join(sysfs, 'bus', 'pci', 'devices', bdf, 'iommu_group');
  let target: string;
  try {
    target = fs.readlinkSync(link);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      // No group: the guest has no IOMMU (kata's QEMU needs one for this, e.g. intel_iommu=on), and
      // vfio-pci refuses a device without one.
      throw new InvalidArgument(`${what}: ${bdf} has no IOMMU group in the guest (${link} is missing: is the guest's IOMMU on?)`);
    }
    throw withContext(err, (m) => `${what}: reading ${link}: ${m}`);
  }
  const name = path.basename(target);
  if (!/^\d+$/.test(name)) throw new InvalidArgument(`${what}: ${link} points to "${target}", not an IOMMU group`);
  return Number(name);
}

/** How sysfs attributes are written: fs.writeFileSync; a test records the order of the writes. */
export type SysfsWrite = (file: string, text: string) => void;

/**
 * Moves `bdf` to the driver `driver`: the override first (so no other driver takes it back), then
 * an unbind from its current driver if any, then a probe, which binds it to the override.
 */
export function overrideDriver(sysfs: string, bdf: string, driver: string, what: string, writeFile: SysfsWrite = fs.writeFileSync): void {
  const dev = path.join(sysfs, 'bus', 'pci', 'devices', bdf);
  const write = (file: string, text: string) => {
    try {
      writeFile(file, text);
    } catch (err) {
      throw withContext(err, (m) => `${what}: binding ${bdf} to ${driver}: writing "${text}" to ${file}: ${m}`);
    }
  };
  write(path.join(dev, 'driver_override'), driver);
  let current: string | undefined;
  try {
    current = path.basename(fs.readlinkSync(path.join(dev, 'driver')));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw withContext(err, (m) => `${what}: the driver of ${bdf}: ${m}`);
  }
  if (current === driver) return;
  if (current !== undefined) write(path.join(dev, 'driver', 'unbind'), bdf);
  write(path.join(sysfs, 'bus', 'pci', 'drivers_probe'), bdf);
}

/** The group's node, which vfio-pci creates once it has bound a function of the group. */
export function vfioGroupNode(sysfs: string, group: number, what: string): DeviceMatcher<CharDevice> {
  const devpath = `/devices/virtual/vfio/${group}`;
  return {
    what: `${what}: VFIO group node /dev/vfio/${group}`,
    fromEvent(ev) {
      if (ev.action === 'remove' || ev.devpath !== devpath || ev.major === undefined || ev.minor === undefined) return undefined;
      return { path: `/dev/${ev.devname || `vfio/${group}`}`, major: ev.major, minor: ev.minor };
    },
    present() {
      const n = readDevNumbers(path.join(sysfs, 'class', 'vfio', String(group), 'dev'));
      return n && { path: `/dev/vfio/${group}`, ...n };
    },
  };
}

export interface VfioDeps {
  uevents: UeventListener;
  sysfs: string;
  timeoutMs: number;
  /** Loads kernel modules by name (the image carries vfio_pci as a module); absent: built in. */
  loadModules?: (names: string[]) => void;
  /** Writes sysfs attributes (tests record them); default fs.writeFileSync. */
  writeSysfs?: SysfsWrite;
}

/** What vfio-pci needs in the guest kernel: the driver, and the type1 backend its containers use. */
const VFIO_MODULES = ['vfio_pci', 'vfio_iommu_type1'];

/**
 * Waits for each function of the device, then (vfio-pci) binds them all to vfio-pci and waits for
 * their group's node. Every function must be in one guest group: the container is given one node.
 */
export async function attachVfio(deps: VfioDeps, kind: VfioKind, id: string, options: readonly string[], signal?: AbortSignal): Promise<VfioDevice> {
  const what = `${kind} device ${id}`;
  const functions = parseVfioOptions(what, options);
  const waited = functions.filter((f) => f.pciPath !== undefined);
  if (kind === 'vfio-pci' && waited.length === 0) {
    throw new InvalidArgument(`${what}: no option names a guest PCI path ("<host PCI address>=<guest PCI path>"), so there is no group to give the container`);
  }
  const guest = await Promise.all(waited.map((f) => deps.uevents.waitFor(pciFunction(deps.sysfs, f.pciPath!, what), deps.timeoutMs, signal)));
  const addresses = new Map<string, string>();
  waited.forEach((f, i) => {
    if (addresses.has(f.host)) throw new InvalidArgument(`${what}: host function ${f.host} is named twice in its options`);
    addresses.set(f.host, guest[i]);
  });
  if (kind === 'vfio-pci-gk') return { kind, addresses };

  // The group is read before any rebinding: a function vfio-pci cannot take (no group, or in
  // another group than its siblings) is refused while it still has its own driver.
  let group: number | undefined;
  for (const bdf of guest) {
    const g = iommuGroup(deps.sysfs, bdf, what);
    if (group !== undefined && g !== group) throw new InvalidArgument(`${what}: ${bdf} is in guest IOMMU group ${g}, not ${group} as ${guest[0]} is`);
    group = g;
  }
  if (!fs.existsSync(path.join(deps.sysfs, 'bus', 'pci', 'drivers', 'vfio-pci'))) deps.loadModules?.(VFIO_MODULES);
  for (const bdf of guest) overrideDriver(deps.sysfs, bdf, 'vfio-pci', what, deps.writeSysfs);
  const node = await deps.uevents.waitFor(vfioGroupNode(deps.sysfs, group!, what), deps.timeoutMs, signal);
  // The VFIO core's misc device, there since the module (a dependency of vfio_pci) loaded.
  const control = readDevNumbers(path.join(deps.sysfs, 'class', 'misc', 'vfio', 'dev'));
  if (!control) throw new InvalidArgument(`${what}: the guest has no /dev/vfio/vfio (${path.join(deps.sysfs, 'class', 'misc', 'vfio', 'dev')} is missing)`);
  return { kind, addresses, group: { number: group!, node, control: { path: '/dev/vfio/vfio', ...control } } };
}

/**
 * Rewrites the PCI addresses of PCIDEVICE_<resource> variables (a comma-separated list of host
 * BDFs, as the SR-IOV device plugin sets them) to the guest's, and the same addresses inside the
 * matching PCIDEVICE_<resource>_INFO (JSON). A variable holding anything but PCI addresses is left
 * alone; a host address no device of this container maps is INVALID_ARGUMENT, as the workload
 * would otherwise be pointed at a function the guest does not have.
 */
export function rewritePciEnv(env: string[], addresses: ReadonlyMap<string, string>): void {
  const infoMaps = new Map<string, Map<string, string>>();
  for (let i = 0; i < env.length; i++) {
    const eq = env[i].indexOf('=');
    if (eq < 0) continue;
    const name = env[i].slice(0, eq);
    if (!name.startsWith('PCIDEVICE_') || name.endsWith('_INFO')) continue;
    const hosts = env[i].slice(eq + 1).split(',');
    if (!hosts.every((h) => normalizeBdf(h) !== undefined)) continue;
    const map = new Map<string, string>();
    const guests = hosts.map((h) => {
      const g = addresses.get(normalizeBdf(h)!);
      if (g === undefined) throw new InvalidArgument(`environment ${name}: host PCI address ${h} is not one of this container's VFIO devices`);
      map.set(h, g);
      return g;
    });
    env[i] = `${name}=${guests.join(',')}`;
    infoMaps.set(`${name}_INFO`, map);
  }
  for (let i = 0; i < env.length; i++) {
    const eq = env[i].indexOf('=');
    const map = eq < 0 ? undefined : infoMaps.get(env[i].slice(0, eq));
    if (!map) continue;
    // One pass, so a guest address that is also another function's host address is not rewritten twice.
    const any = new RegExp([...map.keys()].map((h) => h.replace(/[.]/g, '\\.')).join('|'), 'g');
    env[i] = `${env[i].slice(0, eq)}=${env[i].slice(eq + 1).replace(any, (h) => map.get(h)!)}`;
  }
}
