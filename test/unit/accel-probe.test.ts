// The accelerator probe (test/support/qemu.ts): KVM counts only when guest code ran on it. Fake QEMUs
// (shell scripts) play the failure modes seen on these machines; test/guest/accel-probe.test.ts
// checks the success pattern against the real kernel.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { probeAccelerator, repoRoot } from '../support/qemu.js';

const panicLine = 'Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)';

/**
 * Fake qemu-system-x86_64 scripts in a temp folder. Each writes its pid to `pidFile` first; `-S`
 * (the old probe: a paused vCPU, then "quit" on the monitor) succeeds in all of them, as it did on the
 * PVM KVM.
 */
function fakes(t: Test): { dir: string; pidFile: string; make: (name: string, body: string) => string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'boot-accel-'));
  const pidFile = path.join(dir, 'pid');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const make = (name: string, body: string) => {
    const f = path.join(dir, name);
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, `#!/bin/sh\necho $$ > ${pidFile}\nfor a in "$@"; do [ "$a" = -S ] && { read -r _; exit 0; }; done\n${body}\n`, { mode: 0o755 });
    return f;
  };
  return { dir, pidFile, make };
}

const gone = (pid: number) => {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
};

t.test('PVM KVM: the vCPU stops at the first instruction; seen at once, QEMU killed', async (t) => {
  const f = fakes(t);
  const qemu = f.make('pvm', 'echo "KVM internal error. Suberror: 1" >&2\necho "emulation failure" >&2\nexec sleep 60');
  const r = await probeAccelerator('kvm', __filename, 60_000, qemu);
  t.notOk(r.ok);
  t.match(r.why, /QEMU stopped the guest: "KVM internal error\. Suberror: 1"/, 'from its output, not from the time bound');
  t.ok(gone(Number(fs.readFileSync(f.pidFile, 'utf8'))), 'the paused QEMU was killed');
});

t.test('QEMU aborts setting an MSR (nested KVM): the exit and its message', async (t) => {
  const f = fakes(t);
  const qemu = f.make('msr', 'echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2\nkill -ABRT $$');
  const r = await probeAccelerator('kvm', __filename, 60_000, qemu);
  t.notOk(r.ok);
  t.match(r.why, /QEMU exited \(SIGABRT\) before the kernel ran: .*failed to set MSR 0x10a/);
});

t.test('a vCPU that runs nothing and says nothing: the time bound ends it', async (t) => {
  const f = fakes(t);
  const qemu = f.make('silent', 'exec sleep 60');
  const r = await probeAccelerator('kvm', __filename, 300, qemu);
  t.notOk(r.ok);
  t.match(r.why, /no kernel output within 300 ms/);
  t.ok(gone(Number(fs.readFileSync(f.pidFile, 'utf8'))), 'killed');
});

t.test("the kernel's no-root panic means guest code ran", async (t) => {
  const f = fakes(t);
  const qemu = f.make('works', `echo "${panicLine}"\nexit 0`);
  const r = await probeAccelerator('kvm', __filename, 60_000, qemu);
  t.ok(r.ok, r.why);
  t.match(r.why, /ran to its no-root panic/);
});

t.test('no such QEMU: not usable, and says why', async (t) => {
  const r = await probeAccelerator('kvm', __filename, 60_000, '/nonexistent/qemu-system-x86_64');
  t.notOk(r.ok);
  t.match(r.why, /cannot start \/nonexistent\/qemu-system-x86_64: .*ENOENT/);
});

/** Runs chooseAccelerator twice in a fresh process (the choice is cached per process). */
function choose(env: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string }> {
  const script = `const q = require(${JSON.stringify(path.join(repoRoot, 'dist', 'test', 'support', 'qemu.js'))});
    (async () => { const a = await q.accelerator(${JSON.stringify(__filename)}); const b = await q.accelerator(); console.log(a + ' ' + b); })();`;
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['-e', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('exit', () => resolve({ stdout, stderr }));
  });
}

const noKvm = !fs.existsSync('/dev/kvm') && 'no /dev/kvm here: the probe is skipped and TCG chosen without it';
t.test('a KVM whose paused-vCPU check passes but which runs no guest code: TCG, said once on stderr', { skip: noKvm }, async (t) => {
  const f = fakes(t);
  f.make('bin/qemu-system-x86_64', 'echo "KVM internal error. Suberror: 1" >&2\nexec sleep 60');
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${path.join(f.dir, 'bin')}:${process.env.PATH}` };
  delete env.KATA_TEST_ACCEL;
  const r = await choose(env);
  t.equal(r.stdout.trim(), 'tcg tcg');
  t.match(
    r.stderr,
    /^qemu accelerator: tcg \(KVM probe failed after \d+ ms: QEMU stopped the guest: "KVM internal error\. Suberror: 1"\)\n$/,
    'one line, with the reason',
  );
});

t.test('KATA_TEST_ACCEL forces the choice without a probe', async (t) => {
  const f = fakes(t);
  f.make('bin/qemu-system-x86_64', 'echo probed > ' + path.join(f.dir, 'probed') + '\nexit 1');
  for (const accel of ['kvm', 'tcg']) {
    const r = await choose({ ...process.env, KATA_TEST_ACCEL: accel, PATH: `${path.join(f.dir, 'bin')}:${process.env.PATH}` });
    t.equal(r.stdout.trim(), `${accel} ${accel}`);
    t.equal(r.stderr, `qemu accelerator: ${accel} (forced by KATA_TEST_ACCEL)\n`);
  }
  t.notOk(fs.existsSync(path.join(f.dir, 'probed')), 'QEMU never started');
});
