// QEMU's virtiofsd (qemu-system-common) serving a host directory to a guest's virtio-fs, as kata
// 2.x/3.x shares the pod directory (tag kataShared).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const virtiofsdPath = '/usr/lib/qemu/virtiofsd';

/** Why the virtio-fs tests cannot run here, or undefined. */
export const virtiofsdMissing = (): string | undefined => (fs.existsSync(virtiofsdPath) ? undefined : `${virtiofsdPath} missing (qemu-system-common)`);

export interface Virtiofsd {
  socket: string;
  /** Kills the daemon (by its pid) and waits for it. */
  stop(): Promise<void>;
}

/** Starts virtiofsd on `share` with its vhost-user socket in `dir`; resolves once the socket exists. */
export async function startVirtiofsd(share: string, dir: string): Promise<Virtiofsd> {
  const socket = path.join(dir, 'virtiofsd.sock');
  const daemon = spawn(virtiofsdPath, [`--socket-path=${socket}`, '-o', `source=${share}`, '-o', 'cache=auto'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const stop = async () => {
    if (daemon.exitCode !== null || daemon.signalCode !== null || !daemon.pid) return;
    process.kill(daemon.pid, 'SIGKILL');
    await new Promise((r) => daemon.once('exit', r));
  };
  let err = '';
  daemon.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  for (let i = 0; i < 200 && !fs.existsSync(socket); i++) await new Promise((r) => setTimeout(r, 25));
  if (!fs.existsSync(socket)) {
    await stop();
    throw new Error(`virtiofsd made no socket: ${err}`);
  }
  return { socket, stop };
}

/** QEMU's devices for the share: the vhost-user-fs device on the daemon's socket, tag kataShared. */
export const vhostUserFsArgs = (socket: string): string[] => [
  '-chardev',
  `socket,id=vfs,path=${socket}`,
  '-device',
  'vhost-user-fs-pci,chardev=vfs,tag=kataShared',
];
