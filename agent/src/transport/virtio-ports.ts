import fs from 'node:fs';
import path from 'node:path';

/** kata 1.x's name for the agent's virtio-serial port (QEMU `virtserialport,name=agent.channel.0`). */
export const AGENT_PORT_NAME = 'agent.channel.0';

/**
 * The device name (e.g. `vport1p1`) of the virtio-serial port with this name, from
 * `<sysfs>/class/virtio-ports/<dev>/name`; undefined when there is none (yet).
 */
export function findVirtioPort(sysfsRoot: string, name: string): string | undefined {
  const dir = path.join(sysfsRoot, 'class', 'virtio-ports');
  let entries: string[];
  try {
    entries = fs.readdirSync(dir).sort();
  } catch {
    return undefined;
  }
  for (const dev of entries) {
    try {
      if (fs.readFileSync(path.join(dir, dev, 'name'), 'utf8').trim() === name) return dev;
    } catch {
      // A port being removed, or one without a name: not ours.
    }
  }
  return undefined;
}
