// The console under kata's QEMU: a virtconsole on virtio-serial (the guest's /dev/hvc0) and
// `console=hvc0 console=hvc1`. Debian's kernel has virtio_console as a module, so at boot the kernel
// has no console to give PID 1: the init wrapper (make-tree.sh) then starts node with fds 0-2 on
// /dev/null. Kata's host reads the agent's logs from that console, so as soon as the module is
// loaded and the port shows up, fds 1 and 2 are pointed at it; fd 0 stays /dev/null (the agent never
// reads its console; the debug console opens /dev/console itself).
import fs from 'node:fs';
import path from 'node:path';
import { splitCmdline } from '../../agent/src/config/words.js';
import type { Libc } from '../../agent/src/linux/libc.js';
import { uptimeMs } from '../../agent/src/log/uptime.js';
import { loadModules, type LoadResult } from './modules.js';

/** /dev/null is character device 1:3 on every Linux. */
const devNullRdev = (1 << 8) | 3;

/** What a virtio console needs loaded: the PCI transport (not a dependency of the driver) and the driver. */
export const consoleModules = ['virtio_pci', 'virtio_console'];

/** True when fd 2 is /dev/null: the wrapper found no console at boot. */
export function startedWithoutConsole(fstat: (fd: number) => fs.Stats = fs.fstatSync): boolean {
  try {
    const st = fstat(2);
    return st.isCharacterDevice() && st.rdev === devNullRdev;
  } catch {
    return false;
  }
}

/** The hvc devices named by `console=` on the kernel command line, in order ("hvc0,115200" → "hvc0"). */
export function hvcConsoles(cmdline: string): string[] {
  const names: string[] = [];
  for (const word of splitCmdline(cmdline)) {
    if (!word.startsWith('console=')) continue;
    const name = word.slice('console='.length).split(',', 1)[0];
    if (name.startsWith('hvc') && !names.includes(name)) names.push(name);
  }
  return names;
}

export interface ConsoleMove {
  /** The device fds 1 and 2 now write to, or undefined when none appeared (yet). */
  console?: string;
  /** Why the logs stay where they are (for now). */
  reason?: string;
  waitedMs: number;
  modules?: Pick<LoadResult, 'loaded' | 'alreadyLoaded' | 'failed' | 'unknown'>;
  /**
   * When the port did not show up within the bounded wait but a virtio-serial device is there: the
   * watch goes on in the background (the boot does not wait for it) and this settles with the late
   * move, or with the reason it gave up.
   */
  late?: Promise<ConsoleMove>;
}

export interface ConsoleMoveOptions {
  cmdline: string;
  modulesDir: string;
  devDir?: string;
  sysDir?: string;
  /** The port appears only after the host answers the driver's control messages; the boot waits this long. */
  timeoutMs?: number;
  /** How long the background watch goes on after that. */
  lateMs?: number;
  pollMs?: number;
}

const O_NOCTTY = fs.constants.O_NOCTTY;

/** Devices bound to the console driver: without one, no hvc port can ever appear. */
function consoleDevices(sysDir: string): string[] {
  try {
    return fs.readdirSync(path.join(sysDir, 'bus', 'virtio', 'drivers', 'virtio_console')).filter((e) => e.startsWith('virtio'));
  } catch {
    return [];
  }
}

/**
 * Loads the console driver, waits (bounded) for the first hvc device the command line names and puts
 * it on fds 1 and 2. O_NOCTTY: PID 1 leads a session, and a console that became its controlling tty
 * would send it the tty's signals.
 */
export async function moveLogsToConsole(libc: Pick<Libc, 'finitModule' | 'dup3'>, o: ConsoleMoveOptions): Promise<ConsoleMove> {
  const t0 = uptimeMs();
  const waited = () => Math.round(uptimeMs() - t0);
  const names = hvcConsoles(o.cmdline);
  if (!names.length) return { reason: 'no console=hvcN on the kernel command line', waitedMs: 0 };
  const r = loadModules(libc, o.modulesDir, consoleModules);
  const modules = { loaded: r.loaded, alreadyLoaded: r.alreadyLoaded, failed: r.failed, unknown: r.unknown };
  const sysDir = o.sysDir ?? '/sys';
  if (!consoleDevices(sysDir).length) return { reason: `no device bound to virtio_console under ${sysDir}/bus/virtio/drivers`, waitedMs: waited(), modules };
  const devices = names.map((n) => path.join(o.devDir ?? '/dev', n));
  // The device node comes before the port behind it is ready: seen under load, open('/dev/hvc0')
  // failed with EINVAL a moment after the node appeared, and giving up then left the agent's logs
  // on /dev/null for good. So a node that cannot be opened yet counts as not there yet.
  let lastOpenError = '';
  const tryMove = (): string | undefined => {
    let found: string | undefined;
    let fd = -1;
    for (const p of devices) {
      if (!fs.existsSync(p)) continue;
      try {
        fd = fs.openSync(p, fs.constants.O_WRONLY | O_NOCTTY);
        found = p;
        break;
      } catch (err) {
        lastOpenError = ` (${(err as Error).message})`;
      }
    }
    if (!found) return undefined;
    try {
      libc.dup3(fd, 1, 0);
      libc.dup3(fd, 2, 0);
    } finally {
      fs.closeSync(fd);
    }
    return found;
  };
  const pollMs = o.pollMs ?? 5;
  const timeoutMs = o.timeoutMs ?? 5000;
  const sleep = (ms: number, unref = false) => new Promise((resolve) => (unref ? setTimeout(resolve, ms).unref() : setTimeout(resolve, ms)));
  for (;;) {
    const found = tryMove();
    if (found) return { console: found, waitedMs: waited(), modules };
    if (waited() >= timeoutMs) break;
    await sleep(pollMs);
  }
  // A loaded machine can make the port later than the boot should wait; the logs still belong there.
  const lateMs = o.lateMs ?? 120_000;
  const late = (async (): Promise<ConsoleMove> => {
    for (;;) {
      await sleep(Math.max(pollMs, 50), true);
      const found = tryMove();
      if (found) return { console: found, waitedMs: waited(), modules };
      if (waited() >= timeoutMs + lateMs)
        return { reason: `none of ${devices.join(', ')} appeared within ${timeoutMs + lateMs} ms${lastOpenError}`, waitedMs: waited(), modules };
    }
  })();
  return { reason: `none of ${devices.join(', ')} appeared within ${timeoutMs} ms${lastOpenError}; still watching`, waitedMs: waited(), modules, late };
}

/**
 * The kernel log is the one place a message can go while PID 1 has no console (it reaches any console
 * that registers later, and dmesg).
 */
export function toKernelLog(line: string, kmsg = '/dev/kmsg'): void {
  try {
    fs.writeFileSync(kmsg, `kata-agent: ${line}\n`);
  } catch {
    // nowhere else to say it
  }
}
