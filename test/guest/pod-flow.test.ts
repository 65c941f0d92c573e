// Conformance in the VM: the pod of test/support/kata-pod.ts, booted as kata boots a guest (kata's
// console on hvc0, kata's kernel parameters per generation, the agent channel on virtio-serial), with
// the pod directory shared the way each generation shares it: 9p for 1.x (gRPC with 1.x's
// :authority), virtio-fs through QEMU's virtiofsd for 3.x (ttrpc; in a yamux stream of the agent
// port, since these machines cannot give a guest vsock). Paths are the real /run/kata-containers ones.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { AgentService } from '../../protos/gen/agent_pb.js';
import { Health, HealthCheckResponse_ServingStatus } from '../../protos/gen/health_pb.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { GuestRpc } from '../support/guest-rpc.js';
import { guestSkip, mustRunButCannot } from '../support/guest-skip.js';
import { appId, hostShareFiles, runPod, sandboxId, type Generation, type HostCall } from '../support/kata-pod.js';
import { agentReady, bootGuest, kataKernelParams } from '../support/qemu.js';
import { startVirtiofsd, vhostUserFsArgs, virtiofsdMissing, type Virtiofsd } from '../support/virtiofsd.js';

if (mustRunButCannot) t.fail(`CI must run the in-VM tests: ${mustRunButCannot}`);
const skip = guestSkip || containerTestSkipReason() || virtiofsdMissing() || false;

for (const gen of ['3.x', '1.x'] as Generation[]) {
  t.test(`kata ${gen} pod in the VM`, { skip }, async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `kata-pod-vm-${gen}-`));
    const share = path.join(dir, 'share');
    for (const cid of [sandboxId, appId]) buildBusyboxRootfs(path.join(share, cid));
    for (const [name, content] of Object.entries(hostShareFiles(appId))) fs.writeFileSync(path.join(share, name), content);
    let daemon: Virtiofsd | undefined;
    let shareArgs: string[];
    if (gen === '3.x') {
      daemon = await startVirtiofsd(share, dir);
      shareArgs = ['-object', 'memory-backend-memfd,id=mem,size=512M,share=on', '-numa', 'node,memdev=mem', ...vhostUserFsArgs(daemon.socket)];
    } else {
      shareArgs = ['-fsdev', `local,id=fs0,path=${share},security_model=none`, '-device', 'virtio-9p-pci,fsdev=fs0,mount_tag=kataShared'];
    }
    const sock = path.join(dir, 'agent.sock');
    const vm = await bootGuest({
      mode: 'initrd',
      serialSocket: sock,
      consoleFile: path.join(dir, 'console.log'),
      console: 'kata-hvc',
      baseParams: kataKernelParams(gen, 1),
      extraArgs: shareArgs,
    });
    t.teardown(async () => {
      await vm.kill();
      await daemon?.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    });
    try {
      await vm.waitFor(agentReady, 300_000);
      const rpc = await GuestRpc.connect(
        sock,
        10_000,
        gen === '3.x' ? { wire: 'ttrpc' } : { wire: 'grpc', authority: `unix:////run/vc/sbs/${sandboxId}/kata.sock` },
      );
      const call: HostCall = (method, req, ms) => {
        const m = AgentService.method[method];
        return rpc.call('grpc.AgentService', m.name, m.input, req as never, m.output, ms ?? 60_000) as never;
      };
      const check = async () => {
        const res = await rpc.call('grpc.Health', 'Check', Health.method.check.input, {}, Health.method.check.output);
        if (res.status !== HealthCheckResponse_ServingStatus.SERVING) throw new Error(`Check answered ${res.status}`);
      };
      const run = await runPod(gen, { stateRoot: '/run/kata-containers' }, call, check);
      t.comment(`RPC sequence: ${run.sequence.join(' → ')}`);
      rpc.close();
      t.equal(run.appStdout, 'web-0 up: web-0 nameserver 192.0.2.53\nbye\n', 'app output to its end');
      t.equal(run.appStderr, 'warming\n');
      t.same(run.probe, { stdout: 'web-0\n', status: 0 }, 'exec probe');
      t.match(run.tty.output, /\/dev\/pts\/\d+\r?\n/, 'tty names a pty of the container');
      t.match(run.tty.output, /40 120\r?\n[\s\S]*50 132\r?\n/, 'both resizes seen');
      t.equal(run.tty.status, 3);
      t.equal(run.appStatus, 0);
      t.equal(run.pauseStatus, 0, 'the pause container (OOMScoreAdj -998) ran and stopped');
      t.ok(run.guestDetails.agentDetails?.storageHandlers.includes(gen === '3.x' ? 'virtio-fs' : '9p'));
      t.match(vm.console, /"msg":"agent listening"/, 'the agent logs on kata’s console (hvc0)');
      t.equal(await vm.waitExit(120_000), 0, 'DestroySandbox answered, then the VM powered itself off');
    } catch (err) {
      t.fail(`${(err as Error).message}\n--- guest console ---\n${vm.console.slice(-8000)}`);
    }
  });
}
