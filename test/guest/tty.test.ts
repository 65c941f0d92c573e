// In the VM (Debian's guest kernel, the bundled agent and container-init helper): a tty init and a
// tty exec each get a pty of their container's own devpts, so `tty` names a /dev/pts entry that
// exists in there.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { EmptySchema } from '@bufbuild/protobuf/wkt';
import {
  CreateContainerRequestSchema,
  CreateSandboxRequestSchema,
  DestroySandboxRequestSchema,
  ExecProcessRequestSchema,
  ReadStreamRequestSchema,
  ReadStreamResponseSchema,
  RemoveContainerRequestSchema,
  StartContainerRequestSchema,
  WaitProcessRequestSchema,
  WaitProcessResponseSchema,
} from '../../protos/gen/agent_pb.js';
import { readToEnd } from '../support/end-of-stream.js';
import { guestBusyboxRootfs } from '../support/guest-container.js';
import { GuestRpc } from '../support/guest-rpc.js';
import { guestSkip, mustRunButCannot } from '../support/guest-skip.js';
import { busyboxSpec } from '../support/oci-spec.js';
import { agentReady, bootGuest } from '../support/qemu.js';

const skip = guestSkip;
if (mustRunButCannot) t.fail(`CI must run the in-VM tests: ${mustRunButCannot}`);
const agent = 'grpc.AgentService';
const script = 'tty; echo pts: $(ls /dev/pts)';

async function readAll(rpc: GuestRpc, containerId: string, execId: string): Promise<string> {
  const out = await readToEnd(
    () => rpc.call(agent, 'ReadStdout', ReadStreamRequestSchema, { containerId, execId, len: 32 * 1024 }, ReadStreamResponseSchema),
    `ReadStdout ${execId}`,
  );
  return out.toString();
}

function checkTty(t: Test, out: string, what: string): void {
  const n = /^\/dev\/pts\/(\d+)\r$/m.exec(out)?.[1];
  t.ok(n !== undefined, `${what}: tty prints a /dev/pts path (${JSON.stringify(out)})`);
  t.ok((/^pts: (.*)\r$/m.exec(out)?.[1].split(' ') ?? []).includes(String(n)), `${what}: that pty is in the container's /dev/pts`);
}

t.test("tty init and tty exec in the VM get the container's own pty", { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-guest-tty-'));
  const sock = path.join(dir, 'agent.sock');
  const vm = await bootGuest({ mode: 'initrd', serialSocket: sock, consoleFile: path.join(dir, 'console.log') });
  t.teardown(async () => {
    await vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  try {
    await vm.waitFor(agentReady, 300_000);
    const rpc = await GuestRpc.connect(sock);
    await rpc.call(agent, 'CreateSandbox', CreateSandboxRequestSchema, { hostname: 'tty-pod', sandboxId: 'tty' }, EmptySchema);
    const init = busyboxSpec(guestBusyboxRootfs, ['/bin/sh', '-c', script], { terminal: true });
    await rpc.call(agent, 'CreateContainer', CreateContainerRequestSchema, { containerId: 'ttyinit', execId: 'ttyinit', OCI: init }, EmptySchema);
    await rpc.call(agent, 'StartContainer', StartContainerRequestSchema, { containerId: 'ttyinit' }, EmptySchema);
    checkTty(t, await readAll(rpc, 'ttyinit', ''), 'init');
    const initStatus = await rpc.call(agent, 'WaitProcess', WaitProcessRequestSchema, { containerId: 'ttyinit', execId: '' }, WaitProcessResponseSchema);
    t.equal(initStatus.status, 0);

    const sleeper = busyboxSpec(guestBusyboxRootfs, ['/bin/sleep', '1000']);
    await rpc.call(agent, 'CreateContainer', CreateContainerRequestSchema, { containerId: 'ttyexec', execId: 'ttyexec', OCI: sleeper }, EmptySchema);
    await rpc.call(agent, 'StartContainer', StartContainerRequestSchema, { containerId: 'ttyexec' }, EmptySchema);
    const proc = { Args: ['/bin/sh', '-c', script], Env: ['PATH=/bin:/sbin:/usr/bin'], Cwd: '/', Terminal: true, User: { UID: 0, GID: 0 } };
    await rpc.call(agent, 'ExecProcess', ExecProcessRequestSchema, { containerId: 'ttyexec', execId: 'e1', process: proc }, EmptySchema);
    checkTty(t, await readAll(rpc, 'ttyexec', 'e1'), 'exec');
    const execStatus = await rpc.call(agent, 'WaitProcess', WaitProcessRequestSchema, { containerId: 'ttyexec', execId: 'e1' }, WaitProcessResponseSchema);
    t.equal(execStatus.status, 0);

    for (const id of ['ttyinit', 'ttyexec']) await rpc.call(agent, 'RemoveContainer', RemoveContainerRequestSchema, { containerId: id }, EmptySchema);
    await rpc.call(agent, 'DestroySandbox', DestroySandboxRequestSchema, {}, EmptySchema);
    rpc.close();
    t.equal(await vm.waitExit(120_000), 0, 'the guest powered off after DestroySandbox');
  } catch (err) {
    t.fail(`${(err as Error).message}\n--- guest console ---\n${vm.console.slice(-8000)}`);
  }
});
