// Root-only: the real bin/kata-agent process (its own config parsing, cgroup driver, reaper, pool)
// runs a container for a host over its socket, and removes it when it is stopped with SIGTERM.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { AgentService } from '../../protos/gen/agent_pb.js';
import { GrpcClient } from '../../agent-ctl/src/grpc-client.js';
import { connect } from '../../agent-ctl/src/connect.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { busyboxSpec } from '../support/oci-spec.js';
import { leftovers } from '../support/leftovers.js';

const skip = containerTestSkipReason();
const tag = `p${process.pid}`;

t.test('bin/kata-agent runs a container and cleans up on SIGTERM', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-agent-proc-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rootfs = buildBusyboxRootfs(path.join(dir, 'bb'));
  const addr = `unix://${dir}/agent.sock`;
  const agent = spawn(path.resolve('bin/kata-agent'), ['--server-addr', addr, '--state-root', `${dir}/state`, '--log-level', 'warn'], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = once(agent, 'exit');
  t.teardown(() => {
    if (agent.exitCode === null) agent.kill('SIGKILL');
  });
  let sock;
  for (;;) {
    try {
      sock = await connect(addr, 1000);
      break;
    } catch (err) {
      if (agent.exitCode !== null) throw new Error(`agent exited with ${agent.exitCode} before listening: ${(err as Error).message}`, { cause: err });
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const client = new GrpcClient(sock);
  const call = async (name: keyof typeof AgentService.method, req: object) => {
    const m = AgentService.method[name];
    return fromBinary(m.output, await client.call('grpc.AgentService', m.name, toBinary(m.input, create(m.input, req as never)), 30_000));
  };
  const id = `${tag}-c`;
  await call('createContainer', { containerId: id, OCI: busyboxSpec(rootfs, ['sh', '-c', 'echo hello from $$; exec sleep 1000']) });
  await call('startContainer', { containerId: id });
  const out = (await call('readStdout', { containerId: id, execId: '', len: 100 })) as { data: Uint8Array };
  t.equal(Buffer.from(out.data).toString(), 'hello from 1\n');
  t.ok(fs.existsSync(`${dir}/state/${id}/config.json`), 'bundle written under --state-root');
  client.close();
  agent.kill('SIGTERM');
  const [code] = await exited;
  t.equal(code, 0, 'agent exits cleanly');
  t.notOk(fs.existsSync(`${dir}/state/${id}`), 'container removed at shutdown');
  t.same(leftovers(tag, dir), { mounts: [], cgroups: [], processes: [], zombies: [] });
});
