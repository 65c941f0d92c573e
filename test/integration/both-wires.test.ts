// The same calls over gRPC (kata 1.x) and ttrpc (kata 3.x) against one running agent on one unix
// socket, through agent-ctl's clients and its command line.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { create, fromBinary, toBinary, type DescMethod } from '@bufbuild/protobuf';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { busyboxSpec } from '../support/oci-spec.js';
import { AgentService } from '../../protos/gen/agent_pb.js';
import { Health, HealthCheckResponse_ServingStatus } from '../../protos/gen/health_pb.js';
import { Code } from '../../agent/src/rpc/status.js';
import { connect } from '../../agent-ctl/src/connect.js';
import { CallError, GrpcClient, type RpcClient } from '../../agent-ctl/src/grpc-client.js';
import { TtrpcClient } from '../../agent-ctl/src/ttrpc-client.js';
import { readToEnd } from '../support/end-of-stream.js';
import { agentVersion } from '../../agent/src/version.js';
import { repoRoot, startAgentProcess } from '../support/agent-process.js';

interface Step {
  method: DescMethod;
  init?: object;
  /** Bytes to send instead of encoding `init` (bad input). */
  raw?: Uint8Array;
  /** OK with a check of the answer, or the status code expected while a domain is missing. */
  expect: ((res: Record<string, unknown>, t: Test) => void) | Code;
}

// CreateSandbox pins namespaces (root only); containers themselves are driven over both wires in
// test/integration/container-*.test.ts.
const asRoot = process.getuid?.() === 0;
const suite: (Step | 'container lifecycle')[] = [
  { method: Health.method.check, expect: (r, t) => t.equal(r.status, HealthCheckResponse_ServingStatus.SERVING) },
  { method: Health.method.version, expect: (r, t) => t.match(r, { grpcVersion: '0.0.1', agentVersion }) },
  {
    method: AgentService.method.getGuestDetails,
    init: { memBlockSize: false },
    expect: (r, t) => t.match(r, { agentDetails: { version: agentVersion, deviceHandlers: [] } }),
  },
  {
    method: AgentService.method.createSandbox,
    init: { hostname: 'box', sandboxId: 'sb-both-wires' },
    expect: asRoot ? (r, t) => t.match(r, { $typeName: 'google.protobuf.Empty' }) : Code.PERMISSION_DENIED,
  },
  { method: AgentService.method.createSandbox, init: { hostname: 'box' }, expect: asRoot ? Code.ALREADY_EXISTS : Code.PERMISSION_DENIED },
  'container lifecycle',
  { method: AgentService.method.destroySandbox, expect: asRoot ? (r, t) => t.match(r, { $typeName: 'google.protobuf.Empty' }) : Code.FAILED_PRECONDITION },
  // Bad input: a truncated field, and a varint where the message has a string.
  { method: AgentService.method.getGuestDetails, raw: Uint8Array.of(0x0a, 0x05, 0x41), expect: Code.INVALID_ARGUMENT },
  { method: Health.method.check, raw: Uint8Array.of(0x08, 0x01), expect: Code.INVALID_ARGUMENT },
  { method: Health.method.check, expect: (r, t) => t.equal(r.status, HealthCheckResponse_ServingStatus.SERVING, 'still serving after bad input') },
];

/** A busybox container in the sandbox: create, start, its output to end of stream, wait, remove. */
async function containerLifecycle(t: Test, client: RpcClient, wire: string) {
  if (!asRoot || containerTestSkipReason()) {
    t.comment(`container lifecycle over ${wire} not run: ${containerTestSkipReason() ?? 'needs root'}`);
    return;
  }
  const call = async <K extends keyof typeof AgentService.method>(method: K, init: object) => {
    const m = AgentService.method[method];
    return fromBinary(m.output, await client.call('grpc.AgentService', m.name, toBinary(m.input, create(m.input, init as never)), 30_000)) as never;
  };
  const id = `both-wires-${wire}`;
  await call('createContainer', { containerId: id, OCI: busyboxSpec(rootfs(), ['sh', '-c', `echo hello over ${wire}`]) });
  await call('startContainer', { containerId: id });
  const out = (await readToEnd(() => call('readStdout', { containerId: id, execId: '', len: 1024 }), `ReadStdout ${id}`)).toString();
  t.equal(out, `hello over ${wire}\n`, `container output over ${wire}`);
  t.equal(((await call('waitProcess', { containerId: id, execId: '' })) as { status: number }).status, 0);
  await call('removeContainer', { containerId: id });
}

let rootfsDir: string | undefined;
const rootfs = () => {
  if (!rootfsDir) {
    rootfsDir = buildBusyboxRootfs();
    const dir = rootfsDir;
    process.on('exit', () => fs.rmSync(path.dirname(dir), { recursive: true, force: true }));
  }
  return rootfsDir;
};

async function runSuite(t: Test, client: RpcClient, wire: string) {
  for (const step of suite) {
    if (step === 'container lifecycle') {
      await containerLifecycle(t, client, wire);
      continue;
    }
    const m = step.method;
    const req = step.raw ?? toBinary(m.input, create(m.input, step.init as never));
    try {
      const bytes = await client.call(m.parent.typeName, m.name, req, 5000);
      if (typeof step.expect === 'number') t.fail(`${m.name}: expected ${Code[step.expect]}, got OK`);
      else step.expect(fromBinary(m.output, bytes) as never, t);
    } catch (err) {
      if (!(err instanceof CallError)) throw err;
      t.equal(Code[err.code], typeof step.expect === 'number' ? Code[step.expect] : 'OK', `${m.name}: ${err.details}`);
    }
  }
}

const clients: Record<string, (s: string) => Promise<RpcClient>> = {
  grpc: async (s) => new GrpcClient(await connect(`unix://${s}`, { timeoutMs: 5000 })),
  ttrpc: async (s) => new TtrpcClient(await connect(`unix://${s}`, { timeoutMs: 5000 })),
};

function ctl(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [path.join(repoRoot, 'bin/kata-agent-ctl'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (c) => (out += c));
    p.stderr.on('data', (c) => (err += c));
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

t.test('one agent, one unix socket, both wires', async (t) => {
  const agent = await startAgentProcess({ env: { KATA_AGENT_LOG_LEVEL: 'info' } });
  t.teardown(() => agent.stop());

  for (const wire of ['grpc', 'ttrpc']) {
    t.test(`integration suite over ${wire}`, async (t) => {
      const c = await clients[wire](agent.socketPath);
      t.teardown(() => c.close());
      await runSuite(t, c, wire);
    });
  }

  t.test('both wires at once, each with calls in flight', async (t) => {
    const [g, tt] = await Promise.all([clients.grpc(agent.socketPath), clients.ttrpc(agent.socketPath)]);
    t.teardown(() => (g.close(), tt.close()));
    const m = Health.method.check;
    const req = toBinary(m.input, create(m.input));
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? g : tt).call('grpc.Health', 'Check', req, 5000)));
    t.equal(answers.filter((b) => fromBinary(m.output, b).status === HealthCheckResponse_ServingStatus.SERVING).length, 50);
  });

  t.test('kata-agent-ctl connect --proto ttrpc -c Check', async (t) => {
    const r = await ctl(['connect', '--server-address', `unix://${agent.socketPath}`, '--proto', 'ttrpc', '-c', 'Check']);
    t.equal(r.code, 0, r.err);
    t.same(JSON.parse(r.out), { status: 'SERVING' });
  });

  t.test('kata-agent-ctl --proto grpc and auto', async (t) => {
    for (const proto of ['grpc', 'auto']) {
      const r = await ctl(['connect', '--server-address', `unix://${agent.socketPath}`, '--proto', proto, '-c', 'Version']);
      t.equal(r.code, 0, r.err);
      t.match(JSON.parse(r.out), { grpc_version: '0.0.1', agent_version: agentVersion });
    }
    const bad = await ctl(['connect', '--server-address', `unix://${agent.socketPath}`, '--proto', 'http', '-c', 'Check']);
    t.equal(bad.code, 2);
    t.match(bad.err, /--proto takes ttrpc, grpc or auto/);
  });

  t.test('kata-agent-ctl reports an agent error with its status', async (t) => {
    const r = await ctl(['connect', '--server-address', `unix://${agent.socketPath}`, '--proto', 'ttrpc', '-c', 'DestroySandbox']);
    t.equal(r.code, 1);
    t.match(r.err, /DestroySandbox: FAILED_PRECONDITION: no sandbox to destroy/);
  });

  t.test('--hybrid-vsock: CONNECT handshake through a fake VMM socket', async (t) => {
    // Plays Firecracker/Cloud Hypervisor: reads "CONNECT <port>\n", answers "OK <host port>\n", then
    // pipes the stream to the agent.
    const vmmSock = path.join(path.dirname(agent.socketPath), 'vmm.sock');
    const seen: string[] = [];
    const open = new Set<net.Socket>();
    const vmm = net.createServer((host) => {
      open.add(host);
      let line = '';
      const onData = (c: Buffer) => {
        line += c.toString('latin1');
        const nl = line.indexOf('\n');
        if (nl < 0) return;
        host.off('data', onData);
        seen.push(line.slice(0, nl));
        const rest = Buffer.from(line.slice(nl + 1), 'latin1');
        const guest = net.connect(agent.socketPath, () => {
          open.add(guest);
          host.write('OK 1073741824\n');
          if (rest.length) guest.write(rest);
          host.pipe(guest).pipe(host);
        });
        guest.on('error', () => host.destroy());
        host.on('error', () => guest.destroy());
      };
      host.on('data', onData);
    });
    await new Promise<void>((r) => vmm.listen(vmmSock, r));
    t.teardown(() => {
      open.forEach((s) => s.destroy());
      return new Promise<void>((r) => vmm.close(() => r()));
    });
    const r = await ctl(['connect', '--server-address', `unix://${vmmSock}`, '--hybrid-vsock', '--proto', 'ttrpc', '-c', 'Check', '-c', 'Version']);
    t.equal(r.code, 0, r.err);
    t.same(JSON.parse(r.out.split('\n')[0]), { status: 'SERVING' });
    t.same(seen, ['CONNECT 1024']);
    const r2 = await ctl([
      'connect',
      '--server-address',
      `unix://${vmmSock}`,
      '--hybrid-vsock',
      '--hybrid-vsock-port',
      '2048',
      '--proto',
      'grpc',
      '-c',
      'Check',
    ]);
    t.equal(r2.code, 0, r2.err);
    t.same(seen, ['CONNECT 1024', 'CONNECT 2048']);
  });

  t.test('--hybrid-vsock: a VMM that refuses is reported', async (t) => {
    const vmmSock = path.join(path.dirname(agent.socketPath), 'vmm-refuse.sock');
    const vmm = net.createServer((host) => host.once('data', () => host.end('FAILURE no listener\n')));
    await new Promise<void>((r) => vmm.listen(vmmSock, r));
    t.teardown(() => new Promise<void>((r) => vmm.close(() => r())));
    const r = await ctl(['connect', '--server-address', `unix://${vmmSock}`, '--hybrid-vsock', '-c', 'Check']);
    t.equal(r.code, 2);
    t.match(r.err, /VMM refused: "FAILURE no listener"/);
  });

  t.test('on the real socket: garbage is closed, a preface split across packets reaches gRPC', async (t) => {
    const open = () =>
      new Promise<net.Socket>((resolve) => {
        const s = net.connect({ path: agent.socketPath, allowHalfOpen: true }, () => resolve(s));
      });
    const firstBytes = (s: net.Socket) =>
      new Promise<Buffer>((resolve) => {
        let got = Buffer.alloc(0);
        s.on('data', (c: Buffer) => {
          got = Buffer.concat([got, c]);
          if (got.length >= 9) resolve(got);
        });
        s.on('end', () => resolve(got));
      });
    const garbage = await open();
    const answer = firstBytes(garbage);
    garbage.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    t.equal((await answer).length, 0, 'closed without an answer');
    garbage.destroy();

    const h2 = await open();
    t.teardown(() => h2.destroy());
    const settings = firstBytes(h2);
    const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
    for (const part of [preface.subarray(0, 1), preface.subarray(1, 9), preface.subarray(9, 23), preface.subarray(23)]) {
      h2.write(part);
      await new Promise((r) => setTimeout(r, 10));
    }
    h2.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
    const got = await settings;
    t.equal(got[3], 4, 'the agent answers with an HTTP/2 SETTINGS frame');
  });

  t.test('the agent logged no uncaught errors', async (t) => {
    t.notMatch(agent.logs(), /uncaught|unhandled/);
    t.ok(fs.existsSync(agent.socketPath));
  });
});
