// OnlineCPUMem on the guest's real sysfs: QEMU starts with one of two vCPUs, the test hot-adds the
// second through QMP (as kata's runtime does on a resource update), then sends kata 1.x's
// OnlineCPUMem{wait, nb_cpus 1, cpu_only}. A container then sees both CPUs online. Then a DIMM is
// hot-added the same way and OnlineCPUMem onlines its memory blocks: a container's MemTotal grows.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { EmptySchema } from '@bufbuild/protobuf/wkt';
import { CreateSandboxRequestSchema, DestroySandboxRequestSchema, OnlineCPUMemRequestSchema } from '../../protos/gen/agent_pb.js';
import { guestBusyboxRootfs, runInPod } from '../support/guest-container.js';
import { GuestRpc } from '../support/guest-rpc.js';
import { guestSkip, mustRunButCannot } from '../support/guest-skip.js';
import { busyboxSpec } from '../support/oci-spec.js';
import { agentReady, bootGuest } from '../support/qemu.js';
import { qmp } from '../support/qmp.js';

if (mustRunButCannot) t.fail(`CI must run the in-VM tests: ${mustRunButCannot}`);
const agent = 'grpc.AgentService';

t.test('a hot-added vCPU and a hot-added DIMM are onlined by OnlineCPUMem', { skip: guestSkip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-guest-cpu-'));
  const sock = path.join(dir, 'agent.sock');
  const qmpSock = path.join(dir, 'qmp.sock');
  const vm = await bootGuest({
    mode: 'initrd',
    serialSocket: sock,
    consoleFile: path.join(dir, 'console.log'),
    extraArgs: ['-smp', '1,maxcpus=2', '-m', '512M,slots=2,maxmem=1G', '-qmp', `unix:${qmpSock},server=on,wait=off`],
  });
  t.teardown(async () => {
    await vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  try {
    await vm.waitFor(agentReady, 300_000);
    const rpc = await GuestRpc.connect(sock);
    const q = await qmp(qmpSock);
    await rpc.call(agent, 'CreateSandbox', CreateSandboxRequestSchema, { hostname: 'cpu-pod', sandboxId: 'cpu-pod' }, EmptySchema);
    const slots = (await q.cmd('query-hotpluggable-cpus')) as { type: string; props: object; 'qom-path'?: string }[];
    const free = slots.find((c) => !c['qom-path']);
    t.ok(free, 'QEMU has a free vCPU slot');
    await q.cmd('device_add', { driver: free!.type, id: 'hotcpu1', ...free!.props });
    q.close();
    await rpc.call(agent, 'OnlineCPUMem', OnlineCPUMemRequestSchema, { wait: true, nbCpus: 1, cpuOnly: true }, EmptySchema);
    t.match(vm.console, /"cpus_onlined":1,"memory_blocks_onlined":0,"msg":"OnlineCPUMem"/, 'the agent onlined it');
    const run = async (id: string, args: string[]) => (await runInPod(rpc, id, busyboxSpec(guestBusyboxRootfs, args))).stdout;
    t.equal(await run('cpus', ['cat', '/sys/devices/system/cpu/online']), '0-1\n', 'both vCPUs online');

    // Memory: a 128 MiB DIMM hot-added as kata's runtime does (memory backend + pc-dimm), which the
    // guest kernel shows as offline memory blocks until OnlineCPUMem onlines them.
    const memTotal = async (id: string) => Number(/MemTotal:\s+(\d+) kB/.exec(await run(id, ['cat', '/proc/meminfo']))?.[1]);
    const before = await memTotal('mem-before');
    const q2 = await qmp(qmpSock);
    await q2.cmd('object-add', { 'qom-type': 'memory-backend-ram', id: 'hotmem1', size: 128 * 1024 * 1024 });
    await q2.cmd('device_add', { driver: 'pc-dimm', id: 'hotdimm1', memdev: 'hotmem1' });
    q2.close();
    // The guest learns of the DIMM through an ACPI event it handles after device_add returns; wait
    // (from inside the guest) until its blocks are there, offline, as the kernel leaves them.
    const offline =
      'for i in $(seq 1 600); do grep -qx offline /sys/devices/system/memory/memory*/state && { echo offline-seen; exit 0; }; sleep 0.1; done; echo none-offline';
    t.equal(await run('mem-wait', ['sh', '-c', offline]), 'offline-seen\n', 'the new blocks appeared offline');
    await rpc.call(agent, 'OnlineCPUMem', OnlineCPUMemRequestSchema, { wait: true, nbCpus: 0 }, EmptySchema);
    t.match(vm.console, /"cpus_onlined":0,"memory_blocks_onlined":(?:[1-9]\d*),"msg":"OnlineCPUMem"/, 'the agent onlined the new blocks');
    const after = await memTotal('mem-after');
    t.ok(after - before >= 120 * 1024, `MemTotal grew by the DIMM (${before} kB -> ${after} kB)`);
    // As kata hosts end a pod: each container removed (above), then DestroySandbox.
    await rpc.call(agent, 'DestroySandbox', DestroySandboxRequestSchema, {}, EmptySchema);
    rpc.close();
    t.equal(await vm.waitExit(120_000), 0);
  } catch (err) {
    t.fail(`${(err as Error).message}\n--- guest console ---\n${vm.console.slice(-8000)}`);
  }
});
