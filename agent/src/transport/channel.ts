import fs from 'node:fs';
import path from 'node:path';
import type { AgentConfig } from '../config/config.js';
import { defaults } from '../config/config.js';
import { AGENT_PORT_NAME, findVirtioPort } from './virtio-ports.js';

export interface ChannelProbe {
  /** /dev/vsock exists and a virtio vsock device is bound (kata 1.x's test). */
  vsock: boolean;
  /** A virtio-serial port named agent.channel.0 exists. */
  serial: boolean;
}

/** What the guest offers, looked up the way the kata 1.x agent does. */
export function probeChannels(root = '/'): ChannelProbe {
  let vsock = false;
  if (fs.existsSync(path.join(root, 'dev', 'vsock'))) {
    try {
      // Bound devices show up as links (e.g. virtio3) beside the driver's bind/unbind files.
      const drv = path.join(root, 'sys', 'bus', 'virtio', 'drivers', 'vmw_vsock_virtio_transport');
      vsock = fs.readdirSync(drv).some((e) => e.startsWith('virtio'));
    } catch {
      vsock = false;
    }
  }
  return { vsock, serial: findVirtioPort(path.join(root, 'sys'), AGENT_PORT_NAME) !== undefined };
}

/**
 * The address to serve. An explicit server_addr (anything but the default) always wins. Otherwise
 * kata 1.x's rule: `agent.use_vsock` forces the choice; unset, vsock when the guest has it, else the
 * virtio-serial port when it exists, else the default (whose listen error then names the problem).
 * A server_addr spelled exactly as the default counts as unset.
 */
export function chooseServerAddress(config: Pick<AgentConfig, 'serverAddr' | 'useVsock'>, probe: () => ChannelProbe): string {
  if (config.serverAddr !== defaults.serverAddr) return config.serverAddr;
  const serial = `serial://${AGENT_PORT_NAME}`;
  if (config.useVsock === true) return config.serverAddr;
  if (config.useVsock === false) return serial;
  const p = probe();
  if (p.vsock) return config.serverAddr;
  return p.serial ? serial : config.serverAddr;
}
