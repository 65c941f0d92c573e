// Host-side harness: boots the built guest under QEMU with its console captured (the serial port, or
// kata's virtconsole), waits for console lines, and always kills QEMU by its pid. KVM only when a
// probe boot ran guest code on it (chooseAccelerator), else TCG.
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

export type Accelerator = 'kvm' | 'tcg';

export interface AccelChoice {
  accel: Accelerator;
  why: string;
}

/** The kernel's last words when it ran all of its init and found no root: proof that guest code ran. */
export const probeDoneLine = /Kernel panic - not syncing: VFS: Unable to mount root fs/;
/** What QEMU prints when KVM cannot run the guest's instructions (PVM KVM, nested hosts). */
const kvmFailure = /KVM internal error|emulation failure|failed to set MSR|kvm_buf_set_msrs|Assertion .* failed/;

/**
 * Boots `kernel` with no initrd and no root under `accel`, the same machine and CPU model the tests
 * use: the kernel runs its whole init, panics at the missing root and (panic=-1, -no-reboot) QEMU
 * exits. Only running guest code tells a usable KVM from one that opens and starts a paused vCPU but
 * stops at the first real instruction (`KVM internal error. Suberror: 1` on a PVM KVM, seen here).
 * Bounded by `timeoutMs`; QEMU is killed by its pid in every case.
 */
export function probeAccelerator(accel: Accelerator, kernel: string, timeoutMs = 10_000, qemu = qemuBinary): Promise<{ ok: boolean; why: string; ms: number }> {
  const t0 = process.hrtime.bigint();
  const ms = () => Math.round(Number(process.hrtime.bigint() - t0) / 1e6);
  const args = [
    '-M',
    `q35,accel=${accel}`,
    '-cpu',
    accel === 'kvm' ? 'host' : 'max',
    '-m',
    '256',
    '-smp',
    '1',
    '-nodefaults',
    '-no-user-config',
    '-no-reboot',
    '-display',
    'none',
    '-serial',
    'stdio',
    '-kernel',
    kernel,
    '-append',
    'console=ttyS0 quiet panic=-1 tsc=reliable no_timer_check cryptomgr.notests',
  ];
  return new Promise((resolve) => {
    let out = '';
    let settled = false;
    const proc = spawn(qemu, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let exited = false;
    let answer: { ok: boolean; why: string; ms: number } | undefined;
    // Resolves only once QEMU is gone, so a probe never leaves one behind.
    const finish = (ok: boolean, why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      answer = { ok, why, ms: ms() };
      if (exited || !proc.pid) return resolve(answer);
      try {
        process.kill(proc.pid, 'SIGKILL');
      } catch {
        // gone already; 'exit' follows
      }
    };
    const lastLine = () =>
      JSON.stringify(
        out
          .trim()
          .split('\n')
          .filter((l) => kvmFailure.test(l))[0] ??
          out.trim().split('\n').at(-1) ??
          '',
      );
    const onData = (d: Buffer) => {
      out += d.toString('latin1');
      if (probeDoneLine.test(out)) finish(true, `the probe kernel ran to its no-root panic in ${ms()} ms`);
      else if (/KVM internal error|emulation failure/.test(out)) finish(false, `QEMU stopped the guest: ${lastLine()}`);
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('error', (err) => {
      exited = true;
      finish(false, `cannot start ${qemu}: ${err.message}`);
    });
    proc.on('exit', (code, signal) => {
      exited = true;
      if (probeDoneLine.test(out)) finish(true, `the probe kernel ran to its no-root panic in ${ms()} ms`);
      else finish(false, `QEMU exited (${signal ?? code}) before the kernel ran: ${lastLine()}`);
      if (answer) resolve(answer);
    });
    const timer = setTimeout(() => finish(false, `no kernel output within ${timeoutMs} ms (the vCPU never ran the guest)`), timeoutMs);
  });
}

let accelChoice: Promise<AccelChoice> | undefined;

/**
 * The accelerator for every guest boot of this process (tests, `npm run demo`, the benchmarks): KVM
 * when a probe boot runs guest code on it within seconds, else TCG. `KATA_TEST_ACCEL=kvm|tcg` forces
 * one. Decided once per process and said in one line on stderr.
 */
export function chooseAccelerator(kernel = assetsIn().kernel): Promise<AccelChoice> {
  accelChoice ??= (async (): Promise<AccelChoice> => {
    const forced = process.env.KATA_TEST_ACCEL;
    let choice: AccelChoice;
    if (forced === 'kvm' || forced === 'tcg') choice = { accel: forced, why: 'forced by KATA_TEST_ACCEL' };
    else if (!fs.existsSync('/dev/kvm')) choice = { accel: 'tcg', why: 'no /dev/kvm' };
    else if (!fs.existsSync(kernel)) choice = { accel: 'tcg', why: `no kernel at ${kernel} to probe KVM with` };
    else {
      const p = await probeAccelerator('kvm', kernel);
      choice = p.ok ? { accel: 'kvm', why: `KVM probe: ${p.why}` } : { accel: 'tcg', why: `KVM probe failed after ${p.ms} ms: ${p.why}` };
    }
    process.stderr.write(`qemu accelerator: ${choice.accel} (${choice.why})\n`);
    return choice;
  })();
  return accelChoice;
}

export async function accelerator(kernel?: string): Promise<Accelerator> {
  return (await chooseAccelerator(kernel)).accel;
}

/** Kernel parameters that cut seconds off a TCG boot (measured in docs/facts/platform.md). */
export const fastKernelParams = [
  'console=ttyS0',
  'quiet',
  'tsc=reliable',
  'no_timer_check',
  'rcupdate.rcu_expedited=1',
  'i8042.direct=1',
  'i8042.dumbkbd=1',
  'i8042.nopnp=1',
  'i8042.noaux=1',
  'noreplace-smp',
  'reboot=k',
  'cryptomgr.notests',
  'panic=1',
  'selinux=0',
  'apparmor=0',
  'audit=0',
];

/**
 * kata's kernel parameters for QEMU (both generations add these; `nr_cpus` is the VM's maximum vCPUs),
 * from kata's runtime defaults as listed in docs/facts/kata-pod-flow.md. The console is kata's
 * virtconsole (`console: 'kata-hvc'`).
 */
export function kataKernelParams(generation: '1.x' | '3.x', maxVcpus: number): string[] {
  const common = [
    'tsc=reliable',
    'no_timer_check',
    'rcupdate.rcu_expedited=1',
    'i8042.direct=1',
    'i8042.dumbkbd=1',
    'i8042.nopnp=1',
    'i8042.noaux=1',
    'noreplace-smp',
    'reboot=k',
    'cryptomgr.notests',
    'net.ifnames=0',
    'pci=lastbus=0',
    'console=hvc0',
    'console=hvc1',
    'quiet',
    'panic=1',
    `nr_cpus=${maxVcpus}`,
  ];
  return generation === '3.x' ? [...common, 'selinux=0', 'cgroup_no_v1=all', 'systemd.unified_cgroup_hierarchy=1'] : [...common, 'agent.use_vsock=false'];
}

export interface BootOptions {
  assets?: GuestAssets;
  /**
   * initrd: the whole rootfs as initramfs; image: the disk image on virtio-blk behind the stage-1
   * initramfs (Debian's kernel). nvdimm and virtio-blk: kata's `image =`, no initramfs at all (our
   * kernel, drivers built in): the image as a read-only nvdimm with root=/dev/pmem0p1 and DAX, or
   * (`disable_image_nvdimm`) a virtio-blk disk with root=/dev/vda1.
   */
  mode: 'initrd' | 'image' | 'nvdimm' | 'virtio-blk';
  /** Extra kernel parameters (agent.* options), after the base ones. */
  params?: string[];
  /** Replaces the harness's base kernel parameters (fastKernelParams), e.g. with kataKernelParams(). */
  baseParams?: string[];
  memoryMiB?: number;
  /** Most vCPUs the VM may have (-smp 1,maxcpus=N, as kata starts with one and hot-plugs the rest). */
  maxVcpus?: number;
  /** Unix socket QEMU listens on for the virtio-serial port `agent.channel.0`. */
  serialSocket?: string;
  /**
   * serial (default): the console is ttyS0. kata-hvc: kata's console, a virtconsole on the same
   * virtio-serial controller as the agent's port (guest /dev/hvc0) and no serial port at all. kata
   * gives QEMU a socket chardev for it; here it is stdio, so the capture and type() work the same.
   */
  console?: 'serial' | 'kata-hvc';
  /** Replaces /init or /sbin/init (e.g. a shell for the benchmark's baseline). */
  init?: string;
  /** Where the console goes (besides memory); default a temp file. */
  consoleFile?: string;
  /** More QEMU arguments (devices such as a 9p or virtio-fs share), added as given. */
  extraArgs?: string[];
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
    /** A temp folder bootGuest made for the console file: removed once QEMU is gone (vm.console keeps the text). */
    ownedDir?: string,
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
      out.end(() => {
        if (ownedDir) fs.rmSync(ownedDir, { recursive: true, force: true });
      });
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
      const timer = setTimeout(
        () => reject(new Error(`QEMU pid ${this.pid} still running after ${timeoutMs} ms\n--- guest console ---\n${this.text.slice(-6000)}`)),
        timeoutMs,
      );
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

export function qemuArgs(o: BootOptions, accel: Accelerator): string[] {
  const a = o.assets ?? assetsIn();
  const kataConsole = o.console === 'kata-hvc';
  const params = [...(o.baseParams ?? fastKernelParams)];
  const args = [
    '-M',
    `q35,accel=${accel}`,
    '-cpu',
    accel === 'kvm' ? 'host' : 'max',
    '-m',
    String(o.memoryMiB ?? 512),
    '-smp',
    o.maxVcpus ? `1,maxcpus=${o.maxVcpus}` : '1',
    '-nodefaults',
    '-no-user-config',
    '-no-reboot',
    '-display',
    'none',
    '-serial',
    kataConsole ? 'none' : 'stdio',
    '-kernel',
    a.kernel,
  ];
  if (o.mode === 'initrd') {
    args.push('-initrd', a.initrd);
    if (o.init) params.push(`rdinit=${o.init}`);
  } else if (o.mode === 'nvdimm') {
    // As kata's QEMU driver attaches `image =` by default (machine nvdimm=on, memory slots for it).
    const size = fs.statSync(a.image).size;
    args.push('-machine', 'nvdimm=on', '-m', `${o.memoryMiB ?? 512}M,slots=2,maxmem=${(o.memoryMiB ?? 512) + 2048}M`);
    args.push('-object', `memory-backend-file,id=mem0,mem-path=${a.image},size=${size},readonly=on`, '-device', 'nvdimm,id=nv0,memdev=mem0,unarmed=on');
    params.push('root=/dev/pmem0p1', 'rootflags=dax,data=ordered,errors=remount-ro', 'ro', 'rootfstype=ext4');
    if (o.init) params.push(`init=${o.init}`);
  } else if (o.mode === 'virtio-blk') {
    args.push('-drive', `file=${a.image},format=raw,if=none,id=image0,readonly=on`, '-device', 'virtio-blk-pci,drive=image0');
    params.push('root=/dev/vda1', 'rootflags=data=ordered,errors=remount-ro', 'ro', 'rootfstype=ext4');
    if (o.init) params.push(`init=${o.init}`);
  } else {
    args.push('-initrd', a.stage1, '-drive', `file=${a.image},format=raw,if=virtio,readonly=on`);
    params.push('root=/dev/vda1');
    if (o.init) params.push(`init=${o.init}`);
  }
  if (o.serialSocket || kataConsole) args.push('-device', 'virtio-serial-pci,id=vser0');
  // The console first: virtio-serial keeps port 0 for a console.
  if (kataConsole) args.push('-chardev', 'stdio,id=charconsole0', '-device', 'virtconsole,bus=vser0.0,chardev=charconsole0,id=console0');
  if (o.serialSocket) {
    args.push(
      '-chardev',
      `socket,path=${o.serialSocket},server=on,wait=off,id=agentch`,
      '-device',
      'virtserialport,bus=vser0.0,chardev=agentch,name=agent.channel.0',
    );
  }
  args.push(...(o.extraArgs ?? []));
  params.push(...(o.params ?? []));
  args.push('-append', params.join(' '));
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
  const ownedDir = o.consoleFile ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'kata-guest-'));
  const consoleFile = o.consoleFile ?? path.join(ownedDir!, 'console.log');
  const args = qemuArgs(o, await accelerator(o.assets?.kernel));
  const proc = spawn(qemuBinary, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    proc.once('spawn', resolve);
    proc.once('error', (err) => reject(new Error(`cannot start ${qemuBinary}: ${err.message}`)));
  });
  live.add(proc.pid!);
  proc.once('exit', () => live.delete(proc.pid!));
  return new GuestVm(proc, consoleFile, args, ownedDir);
}

/** The agent's "agent listening" log line: the readiness signal before a host channel exists. */
export const agentReady = /"msg":"agent listening"/;
