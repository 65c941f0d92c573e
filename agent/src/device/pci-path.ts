// kata names a hot-plugged PCI device by its PCI path: the slot (and function) at each bridge from
// the root bus down, "02/01" = slot 1 behind the bridge in slot 2 of root bus 00. Bus numbers are
// the guest firmware's choice, so the path is resolved against sysfs, bridge by bridge, through
// each bridge's pci_bus directory. A leading segment of 0x20 or more is a NUMA root complex
// (pxb-pcie) when three or more segments are given, as kata's runtime sends them.
import fs from 'node:fs';
import path from 'node:path';
import { InvalidArgument } from '../errors.js';

export interface PciSlot {
  slot: number;
  fn: number;
}

export interface PciPath {
  /** The root bus in hex: "00", or a pxb-pcie root ("20"). */
  rootComplex: string;
  slots: PciSlot[];
}

const hex2 = (n: number) => n.toString(16).padStart(2, '0');

export function formatPciPath(p: PciPath): string {
  const slots = p.slots.map((s) => (s.fn === 0 ? hex2(s.slot) : `${hex2(s.slot)}.${s.fn}`)).join('/');
  return p.rootComplex === '00' ? slots : `${p.rootComplex}/${slots}`;
}

/** "02/01", "02.1/00", "20/00/02"; anything else is INVALID_ARGUMENT naming what it got. */
export function parsePciPath(text: string, what = 'PCI path'): PciPath {
  const segments = text.split('/');
  const bad = (why: string) => new InvalidArgument(`${what} "${text}": ${why}`);
  let rootComplex = '00';
  if (segments.length >= 3 && /^[0-9a-f]{2}$/i.test(segments[0]) && parseInt(segments[0], 16) >= 0x20) {
    rootComplex = segments.shift()!.toLowerCase();
  }
  if (text === '' || segments.length === 0) throw bad('empty');
  if (segments.length > 16) throw bad('more than 16 levels');
  const slots = segments.map((s) => {
    const m = /^([0-9a-f]{1,2})(?:\.([0-7]))?$/i.exec(s);
    if (!m) throw bad(`"${s}" is not a slot (two hex digits, optionally .function)`);
    const slot = parseInt(m[1], 16);
    if (slot > 0x1f) throw bad(`slot ${m[1]} is above 1f`);
    return { slot, fn: m[2] ? Number(m[2]) : 0 };
  });
  return { rootComplex, slots };
}

/** "/sys/devices/pci0000:00" for root complex "00". */
export function rootBusDir(sysfs: string, rootComplex: string): string {
  return path.join(sysfs, 'devices', `pci0000:${rootComplex}`);
}

/**
 * The device's directory below the root bus directory ("/0000:00:02.0/0000:01:01.0"), or undefined
 * while a bridge on the way is not there yet (its bus cannot be known).
 */
export function pciRelativePath(sysfs: string, p: PciPath): string | undefined {
  const root = rootBusDir(sysfs, p.rootComplex);
  let bus = `0000:${p.rootComplex}`;
  let rel = '';
  for (let i = 0; i < p.slots.length; i++) {
    rel += `/${bus}:${hex2(p.slots[i].slot)}.${p.slots[i].fn}`;
    if (i === p.slots.length - 1) break;
    let buses: string[];
    try {
      buses = fs.readdirSync(path.join(root, rel, 'pci_bus'));
    } catch {
      return undefined;
    }
    if (buses.length !== 1) {
      throw new InvalidArgument(`PCI path ${formatPciPath(p)}: ${path.join(root, rel)} exposes ${buses.length} buses, not one (is it a bridge?)`);
    }
    bus = buses[0];
  }
  return rel;
}
