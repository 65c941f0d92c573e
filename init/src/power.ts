import { RB_POWER_OFF, type Libc } from '../../agent/src/linux/libc.js';

/**
 * Flushes and powers the VM off (kata 3.x does this after DestroySandbox in init mode). PID 1 must
 * never simply exit: the kernel would panic.
 */
export function powerOff(libc: Pick<Libc, 'sync' | 'reboot'>): void {
  libc.sync();
  libc.reboot(RB_POWER_OFF);
}
