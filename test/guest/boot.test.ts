// Boots the built guest under QEMU and checks PID-1 duties from the console: the agent's boot-step
// log lines (agent.log=debug), a debug-console shell, and power-off when PID 1 is told to stop.
import t, { type Test } from 'tap';
import { guestSkip, mustRunButCannot } from '../support/guest-skip.js';
import { agentReady, bootGuest, kataKernelParams, type GuestVm } from '../support/qemu.js';

const skip = guestSkip;

/**
 * A script for node inside the guest: connect to vsock loopback (CID 1) on `port` through koffi, then
 * run `exchange` with `fd` open. `label` names the step in the failure line.
 */
function vsockScript(port: number, label: string, exchange: string[]): string {
  return [
    "const koffi = require('/usr/lib/kata-agent/node_modules/koffi');",
    "const lib = koffi.load('libc.so.6');",
    "const socket = lib.func('int socket(int, int, int)');",
    "const connect = lib.func('int connect(int, const void *, uint32_t)');",
    "const fs = require('fs');",
    'const fd = socket(40, 1, 0);',
    `const sa = Buffer.alloc(16); sa.writeUInt16LE(40, 0); sa.writeUInt32LE(${port}, 4); sa.writeUInt32LE(1, 8);`,
    `if (connect(fd, sa, 16) < 0) { console.log('${label} connect failed, errno ' + koffi.errno()); process.exit(1); }`,
    ...exchange,
  ].join('\n');
}

// The agent's own listener over vsock loopback: an HTTP/2 preface and SETTINGS get a SETTINGS back.
const vsockClient = vsockScript(1024, 'vsock', [
  "fs.writeSync(fd, Buffer.from('PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n'));",
  'fs.writeSync(fd, Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));',
  'const b = Buffer.alloc(64); const n = fs.readSync(fd, b);',
  "console.log('vsock-reply type=' + b[3] + ' bytes=' + n);",
]);

// A pty shell per vsock connection (agent.debug_console_vport): run one command and look for its
// computed output in what comes back.
const vportClient = vsockScript(1026, 'vport', [
  "fs.writeSync(fd, 'echo vport-$((6*7)); exit\\n');",
  "let got = ''; const b = Buffer.alloc(4096);",
  "for (;;) { let n = 0; try { n = fs.readSync(fd, b); } catch (e) { break; } if (n <= 0) break; got += b.toString('utf8', 0, n); if (got.includes('vport-42')) break; }",
  "console.log('vport-result ' + (got.includes('vport-42') ? 'ok' : 'missing: ' + JSON.stringify(got)));",
]);
if (mustRunButCannot) t.fail(`CI must run the in-VM tests: ${mustRunButCannot}`);
// Under TCG on a busy 2-core machine a boot takes 10-30 s; the bound only stops a hung VM.
const bootTimeout = 180_000;

function bootStep(vm: GuestVm, step: string): Record<string, unknown> | undefined {
  for (const line of vm.console.split('\n')) {
    if (!line.includes('"msg":"boot step done"') || !line.includes(`"step":"${step}"`)) continue;
    try {
      return JSON.parse(line.slice(line.indexOf('{'))) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

async function withGuest(t: Test, opts: Parameters<typeof bootGuest>[0], fn: (vm: GuestVm) => Promise<void>): Promise<void> {
  const vm = await bootGuest(opts);
  t.teardown(() => vm.kill());
  try {
    await fn(vm);
  } catch (err) {
    // Failure output carries the guest console.
    t.fail(`${(err as Error).message}\n--- guest console (${vm.consoleFile}) ---\n${vm.console.slice(-8000)}`);
  }
}

t.test('initrd boot: PID-1 duties done, agent listening', { skip }, async (t) => {
  await withGuest(t, { mode: 'initrd', params: ['agent.log=debug'] }, async (vm) => {
    await vm.waitFor(agentReady, bootTimeout);
    t.notMatch(vm.console, /boot step failed/, 'no boot step failed');
    const mods = bootStep(vm, 'modules')?.result as { loaded: string[]; failed: unknown[] } | undefined;
    t.ok(mods, 'modules step logged');
    t.ok(mods?.loaded.includes('virtio_console'), 'virtio_console loaded');
    t.ok(mods?.loaded.includes('vmw_vsock_virtio_transport'), 'vsock transport loaded');
    t.notOk(mods?.loaded.includes('vsock_loopback'), 'vsock_loopback only carried (modprobe on demand)');
    t.same(mods?.failed, [], 'no module failed');
    const cg = bootStep(vm, 'cgroups')?.result as { version: number; controllers: string[] } | undefined;
    t.equal(cg?.version, 2, 'cgroup2 mounted by default');
    t.ok(cg?.controllers.includes('memory'), 'memory controller available (the v2 driver delegates it on first use)');
    t.equal(bootStep(vm, 'hostname')?.result, 'kata-guest', 'hostname from /etc/hostname');
    t.match(vm.console, /"address":"vsock:\/\/-1:1024"/, 'listening on the default vsock address');
  });
});

t.test('ext4 image behind the stage-1 initramfs boots to the agent', { skip }, async (t) => {
  await withGuest(t, { mode: 'image' }, async (vm) => {
    await vm.waitFor(agentReady, bootTimeout);
    t.notMatch(vm.console, /stage1: cannot mount/, 'root mounted');
    t.notMatch(vm.console, /boot step failed/, 'no boot step failed');
  });
});

t.test("kata's console (virtconsole, no serial port, kata 3.x parameters): the ext4 image behind stage 1 boots too", { skip }, async (t) => {
  await withGuest(t, { mode: 'image', console: 'kata-hvc', baseParams: kataKernelParams('3.x', 2), maxVcpus: 2, params: ['agent.log=debug'] }, async (vm) => {
    await vm.waitFor(agentReady, bootTimeout);
    const moved = bootStep(vm, 'console')?.result as { console?: string } | undefined;
    t.equal(moved?.console, '/dev/hvc0', 'PID 1 (after switch_root) started without a console and moved its logs to /dev/hvc0');
    t.equal((bootStep(vm, 'cgroups')?.result as { version?: number } | undefined)?.version, 2, 'cgroup_no_v1=all: cgroup v2');
    t.notMatch(vm.console, /boot step failed/, 'no boot step failed');
  });
});

t.test('cgroup v1 on request, debug console (console and vport), vsock loopback, PID 1 powers off on SIGTERM', { skip }, async (t) => {
  const params = ['agent.log=debug', 'agent.unified_cgroup_hierarchy=0', 'agent.debug_console', 'agent.debug_console_vport=1026'];
  await withGuest(t, { mode: 'initrd', params }, async (vm) => {
    await vm.waitFor(agentReady, bootTimeout);
    const cg = bootStep(vm, 'cgroups')?.result as { version: number; controllers: string[] } | undefined;
    t.equal(cg?.version, 1, 'v1 hierarchies when agent.unified_cgroup_hierarchy=0');
    t.ok(cg?.controllers.includes('memory'), 'memory hierarchy mounted');
    await vm.waitFor(/debug console on the console/, bootTimeout);
    // The product is computed by the guest shell, so the match cannot come from our own echo.
    vm.type('echo "shell-$((6*7))"; cat /proc/1/comm; ls /sys/fs/cgroup/memory/memory.limit_in_bytes\n');
    await vm.waitFor(/shell-42/, 60_000);
    await vm.waitFor(/\/sys\/fs\/cgroup\/memory\/memory\.limit_in_bytes/, 60_000);
    t.pass('shell on the console runs commands');
    // vsock loopback (CID 1) inside the guest: a client written on the console with the image's own
    // node and koffi sends the HTTP/2 preface to the agent's vsock://-1:1024 listener, which must
    // answer with a SETTINGS frame (type 4). The pattern only matches the script's output, not the
    // echoed source.
    // vsock_loopback is carried, not loaded at boot: busybox modprobe reads the image's modules.dep.
    vm.type(`modprobe vsock_loopback && cat > /tmp/vsock-check.js <<'EOF'\n${vsockClient}\nEOF\nnode /tmp/vsock-check.js\n`);
    await vm.waitFor(/vsock-reply type=4 /, 120_000);
    t.pass('agent answered HTTP/2 over vsock loopback inside the guest');
    vm.type(`cat > /tmp/vport-check.js <<'EOF'\n${vportClient}\nEOF\nnode /tmp/vport-check.js\n`);
    const vport = await vm.waitFor(/vport-result (ok|missing.*)/, 120_000);
    t.equal(vport[1], 'ok', 'debug console vport: a pty shell ran the command');
    vm.type('kill -TERM 1\n');
    const code = await vm.waitExit(60_000);
    t.equal(code, 0, 'QEMU exited by itself: the guest powered off');
    t.match(vm.console, /"reason":"SIGTERM".*shutting down/, 'agent logged the shutdown');
    t.notMatch(vm.console, /Kernel panic/, 'no kernel panic (PID 1 did not just exit)');
  });
});
