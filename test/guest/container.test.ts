// A pod inside the VM: a busybox container prints its hostname, pid, ids and the cgroup v2 memory
// limit it runs under; DestroySandbox then powers the VM off (kata 3.x behaviour in init mode).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { runGuestContainer } from '../support/guest-container.js';
import { GuestRpc } from '../support/guest-rpc.js';
import { guestSkip, mustRunButCannot } from '../support/guest-skip.js';
import { agentReady, bootGuest } from '../support/qemu.js';

const skip = guestSkip;
if (mustRunButCannot) t.fail(`CI must run the in-VM tests: ${mustRunButCannot}`);

t.test('container lifecycle in the VM, then DestroySandbox powers it off', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-guest-ctr-'));
  const sock = path.join(dir, 'agent.sock');
  const vm = await bootGuest({ mode: 'initrd', serialSocket: sock, consoleFile: path.join(dir, 'console.log') });
  t.teardown(async () => {
    await vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  try {
    await vm.waitFor(agentReady, 300_000);
    const rpc = await GuestRpc.connect(sock);
    const limit = 64n << 20n;
    const run = await runGuestContainer(rpc, { memoryLimit: limit, destroySandbox: true });
    rpc.close();
    t.equal(run.status, 0, 'the container exited 0');
    t.match(run.stdout, /^hello from \S+, pid 1, uid=0\(root\) gid=0\(root\)/m, 'output delivered: pid 1 in its own pid namespace');
    t.match(run.stdout, new RegExp(`^memory.max ${limit}$`, 'm'), 'the cgroup v2 memory limit is what the container sees');
    t.equal(await vm.waitExit(120_000), 0, 'QEMU exited: the guest powered off after DestroySandbox');
    t.match(vm.console, /"reason":"DestroySandbox","msg":"shutting down"/);
  } catch (err) {
    t.fail(`${(err as Error).message}\n--- guest console ---\n${vm.console.slice(-8000)}`);
  }
});
