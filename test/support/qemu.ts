// Host-side harness: boots the built guest under QEMU with the serial console captured, waits for
// console lines, and always kills QEMU by its pid. TCG by default; KVM when /dev/kvm exists and a
// probe shows it can run a vCPU (on some nested hosts KVM opens but QEMU aborts setting MSRs).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const repoRoot = path.resolve(__dirname, '..', '..', '..');
export const defaultAssetsDir = path.join(repoRoot, 'build');
export const qemuBinary = 'qemu-system-x86_64';

export interface GuestAssets {
  kernel: string;
  initrd: string;
  image: string;
  stage1: string;
}

export function assetsIn(dir = process.env.KATA_GUEST_ASSETS ?? defaultAssetsDir): GuestAssets {
  return {
    kernel: path.join(dir, 'vmlinux'),
    initrd: path.join(dir, 'kata-containers-initrd.img'),
    image: path.join(dir, 'kata-containers.img'),
    stage1: path.join(dir, 'kata-containers-initramfs.img'),
  };
}

/** Why the guest tests cannot run here, or undefined when they can. */
export function guestSkipReason(assets = assetsIn()): string | undefined {
  if (spawnSync('which', [qemuBinary]).status !== 0) return `${qemuBinary} is not installed (apt-get install qemu-system-x86)`;
  const missing = Object.values(assets).filter((f) => !fs.existsSync(f));
  if (missing.length) return `guest image not built: ${missing.join(', ')} missing (run \`npm run image\`)`;
  return undefined;
}

let accelCache: 'kvm' | 'tcg' | undefined;

export function accelerator(): 'kvm' | 'tcg' {
  const forced = process.env.KATA_TEST_ACCEL;
  if (forced === 'kvm' || forced === 'tcg') return forced;
  if (accelCache) return accelCache;
  accelCache = 'tcg';
  if (fs.existsSync('/dev/kvm')) {
    // -S: no guest code runs; "quit" on the monitor ends it. A broken KVM aborts during vCPU setup.
    const r = spawnSync(qemuBinary, ['-accel', 'kvm', '-cpu', 'host', '-M', 'q35', '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'stdio', '-S'], { input: 'quit\n', timeout: 10000 });
    if (r.status === 0) accelCache = 'kvm';
  }
  return accelCache;
}

/** Kernel parameters that cut seconds off a TCG boot (measured in shared/notes/platform.md). */
export const fastKernelParams = [
  'console=ttyS0', 'quiet', 'tsc=reliable', 'no_timer_check', 'rcupdate.rcu_expedited=1', 'i8042.direct=1', 'i8042.dumbkbd=1',
  'i8042.nopnp=1', 'i8042.noaux=1', 'noreplace-smp', 'reboot=k', 'cryptomgr.notests', 'panic=1', 'selinux=0', 'apparmor=0', 'audit=0',
];

export interface BootOptions {
  assets?: GuestAssets;
  /** initrd: the whole rootfs as initramfs; image: ext4 on virtio-blk behind the stage-1 initramfs. */
  mode: 'initrd' | 'image';
  /** Extra kernel parameters (agent.* options). */
  params?: string[];
  memoryMiB?: number;
  /** Unix socket QEMU listens on for the virtio-serial port `agent.channel.0`. */
  serialSocket?: string;
  /** Replaces /init or /sbin/init (e.g. a shell for the benchmark's baseline). */
  init?: string;
  /** Where the console goes (besides memory); default a temp file. */
  consoleFile?: string;
}

export class GuestVm {
  private text = '';
  private waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  private exited?: number | null;
  private exitWaiters: ((code: number | null) => void)[] = [];
  readonly startedAt = process.hrtime.bigint();

  constructor(
    private readonly proc: ChildProcess,
    readonly consoleFile: string,
    readonly args: string[],
  ) {
    const out = fs.createWriteStream(consoleFile);
    const onData = (d: Buffer) => {
      out.write(d);
      this.text += d.toString('latin1');
      this.waiters = this.waiters.filter((w) => {
        const m = this.text.match(w.re);
        if (m) w.resolve(m);
        return !m;
      });
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code) => {
      this.exited = code;
      out.end();
      this.exitWaiters.forEach((f) => f(code));
      this.exitWaiters = [];
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get console(): string {
    return this.text;
  }

  get running(): boolean {
    return this.exited === undefined;
  }

  /** Types on the guest console (the serial port is QEMU's stdin). */
  type(text: string): void {
    this.proc.stdin!.write(text);
  }

  /** Resolves with the first console match of `re`; rejects with the console when time runs out or QEMU exits. */
  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const now = this.text.match(re);
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const fail = (why: string) => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`${why} waiting for ${re} (QEMU pid ${this.pid})\n--- guest console ---\n${this.text.slice(-6000)}`));
      };
      const timer = setTimeout(() => fail(`${timeoutMs} ms passed`), timeoutMs);
      const waiter = {
        re,
        resolve: (m: RegExpMatchArray) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      this.waiters.push(waiter);
      this.waitExit(timeoutMs + 1000).then(
        (code) => {
          if (this.waiters.includes(waiter)) {
            clearTimeout(timer);
            fail(`QEMU exited (${code})`);
          }
        },
        () => undefined,
      );
    });
  }

  waitExit(timeoutMs: number): Promise<number | null> {
    if (this.exited !== undefined) return Promise.resolve(this.exited);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`QEMU pid ${this.pid} still running after ${timeoutMs} ms\n--- guest console ---\n${this.text.slice(-6000)}`)), timeoutMs);
      timer.unref();
      this.exitWaiters.push((c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
  }

  /** SIGKILL by pid and wait for the exit, so no test ever leaves a QEMU behind. */
  async kill(): Promise<void> {
    if (this.exited !== undefined) return;
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await this.waitExit(10000);
  }
}

export function qemuArgs(o: BootOptions, consoleFile: string): string[] {
  const a = o.assets ?? assetsIn();
  const accel = accelerator();
  const params = [...fastKernelParams];
  const args = [
    '-M', `q35,accel=${accel}`, '-cpu', accel === 'kvm' ? 'host' : 'max', '-m', String(o.memoryMiB ?? 512), '-smp', '1',
    '-nodefaults', '-no-user-config', '-no-reboot', '-display', 'none', '-serial', 'stdio', '-kernel', a.kernel,
  ];
  if (o.mode === 'initrd') {
    args.push('-initrd', a.initrd);
    if (o.init) params.push(`rdinit=${o.init}`);
  } else {
    args.push('-initrd', a.stage1, '-drive', `file=${a.image},format=raw,if=virtio,readonly=on`);
    params.push('root=/dev/vda');
    if (o.init) params.push(`init=${o.init}`);
  }
  if (o.serialSocket) {
    args.push(
      '-device', 'virtio-serial-pci,id=vser0',
      '-chardev', `socket,path=${o.serialSocket},server=on,wait=off,id=agentch`,
      '-device', 'virtserialport,bus=vser0.0,chardev=agentch,name=agent.channel.0',
    );
  }
  params.push(...(o.params ?? []));
  args.push('-append', params.join(' '));
  void consoleFile;
  return args;
}

const live = new Set<number>();
// Last resort when a test file dies without its teardown: no QEMU may outlive the test process.
process.on('exit', () => {
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

export async function bootGuest(o: BootOptions): Promise<GuestVm> {
  const consoleFile = o.consoleFile ?? path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kata-guest-')), 'console.log');
  const args = qemuArgs(o, consoleFile);
  const proc = spawn(qemuBinary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    proc.once('spawn', resolve);
    proc.once('error', (err) => reject(new Error(`cannot start ${qemuBinary}: ${err.message}`)));
  });
  live.add(proc.pid!);
  proc.once('exit', () => live.delete(proc.pid!));
  return new GuestVm(proc, consoleFile, args);
}

/** The agent's "agent listening" log line: the readiness signal before a host channel exists. */
export const agentReady = /"msg":"agent listening"/;
