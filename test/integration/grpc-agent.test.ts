import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { GrpcClient, CallError } from '../../agent-ctl/src/grpc-client.js';
import { connect } from '../../agent-ctl/src/connect.js';
import { CheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus, VersionCheckResponseSchema } from '../../protos/gen/health_pb.js';
import { Code } from '../../agent/src/rpc/status.js';
import { probeSeccomp } from '../../agent/src/seccomp/index.js';
import { ctlBin, repoRoot, run, startAgentProcess, tempDir } from '../support/agent-process.js';

const version = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).version as string;

t.test('agent on a unix socket', async (t) => {
  const agent = await startAgentProcess();
  t.teardown(() => agent.stop());

  t.test('Check and Version through our client', async (t) => {
    const client = new GrpcClient(await connect(agent.address, 2000));
    t.teardown(() => client.close());
    const check = fromBinary(
      HealthCheckResponseSchema,
      await client.call('grpc.Health', 'Check', toBinary(CheckRequestSchema, create(CheckRequestSchema)), 2000),
    );
    t.equal(check.status, HealthCheckResponse_ServingStatus.SERVING);
    const v = fromBinary(VersionCheckResponseSchema, await client.call('grpc.Health', 'Version', new Uint8Array(0), 2000));
    t.equal(v.agentVersion, version);
    t.equal(v.grpcVersion, '0.0.1');
  });

  t.test('kata-agent-ctl connect prints each response as JSON', async (t) => {
    const r = await run(process.execPath, [
      ctlBin,
      'connect',
      '--server-address',
      agent.address,
      '-c',
      'Check',
      '-c',
      'Version',
      '-c',
      'GetGuestDetails json://{"mem_block_size":true}',
    ]);
    t.equal(r.code, 0, r.stderr);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    t.same(lines[0], { status: 'SERVING' });
    t.same(lines[1], { grpc_version: '0.0.1', agent_version: version });
    t.equal(lines[2].agent_details.version, version);
    // True exactly where libseccomp loads (Debian's libseccomp2 is installed with node's dependencies).
    t.equal(lines[2].agent_details.supports_seccomp, probeSeccomp().ok);
  });

  t.test('kata-agent-ctl: a failed call prints the status and exits non-zero', async (t) => {
    const r = await run(process.execPath, [ctlBin, 'connect', '--server-address', agent.address, '-c', 'CreateContainer container_id=bad/id']);
    t.equal(r.code, 1);
    t.match(r.stderr, /^CreateContainer: INVALID_ARGUMENT: invalid container id "bad\/id"/m);
    const bad = await run(process.execPath, [ctlBin, 'connect', '--server-address', agent.address, '-c', 'NoSuchRpc']);
    t.equal(bad.code, 2);
    t.match(bad.stderr, /unknown command "NoSuchRpc"/);
  });

  t.test('kata-agent-ctl --repeat and file:// arguments', async (t) => {
    const file = path.join(tempDir('kata-ctl-'), 'req.json');
    fs.writeFileSync(file, JSON.stringify({ mem_hotplug_probe: true }));
    const r = await run(process.execPath, [
      ctlBin,
      'connect',
      '--server-address',
      agent.address,
      '--repeat',
      '3',
      '-c',
      `GetGuestDetails file://${file}`,
      '-c',
      'Check',
    ]);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout.trim().split('\n').length, 6);
  });

  t.test('a generic gRPC client that knows only the wire facts', async (t) => {
    // Written here from the kata wire facts alone, independent of protos/ and our generated code.
    const dir = tempDir('kata-generic-');
    fs.writeFileSync(
      path.join(dir, 'facts.proto'),
      `syntax = "proto3";
package grpc;
message CheckRequest { string service = 1; }
message HealthCheckResponse { int32 status = 1; }
message VersionCheckResponse { string grpc_version = 1; string agent_version = 2; }
message CreateContainerRequest { string container_id = 1; string exec_id = 2; }
message Nothing {}
service Health { rpc Check(CheckRequest) returns (HealthCheckResponse); rpc Version(CheckRequest) returns (VersionCheckResponse); }
service AgentService { rpc CreateContainer(CreateContainerRequest) returns (Nothing); }
`,
    );
    const def = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(dir, 'facts.proto'), { keepCase: true })) as unknown as {
      grpc: { Health: grpc.ServiceClientConstructor; AgentService: grpc.ServiceClientConstructor };
    };
    const health = new def.grpc.Health(`unix://${agent.socketPath}`, grpc.credentials.createInsecure());
    const agentSvc = new def.grpc.AgentService(`unix://${agent.socketPath}`, grpc.credentials.createInsecure());
    t.teardown(() => {
      health.close();
      agentSvc.close();
    });
    const call = (c: InstanceType<grpc.ServiceClientConstructor>, m: string, req: object) =>
      new Promise<Record<string, unknown>>((resolve, reject) =>
        c[m](req, (err: grpc.ServiceError | null, res: Record<string, unknown>) => (err ? reject(err) : resolve(res))),
      );
    t.same(await call(health, 'Check', {}), { status: 1 }, 'SERVING = 1');
    t.equal((await call(health, 'Version', {})).agent_version, version);
    const err = await call(agentSvc, 'CreateContainer', { container_id: 'c1' }).catch((e) => e);
    t.equal(err.code, grpc.status.INVALID_ARGUMENT);
    t.equal(err.details, 'container c1: request has no OCI spec');
  });

  t.test('gRPC server reflection lists and describes the API', async (t) => {
    const reflProto = path.join(repoRoot, 'node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto');
    const def = grpc.loadPackageDefinition(protoLoader.loadSync(reflProto, { keepCase: true })) as unknown as {
      grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
    };
    const client = new def.grpc.reflection.v1.ServerReflection(`unix://${agent.socketPath}`, grpc.credentials.createInsecure());
    t.teardown(() => client.close());
    // The few fields of a ServerReflectionResponse this test reads (keepCase: the .proto's names).
    interface ReflectionAnswer {
      list_services_response: { service: { name: string }[] };
      file_descriptor_response: { file_descriptor_proto: Buffer[] };
    }
    const ask = (req: object) =>
      new Promise<ReflectionAnswer>((resolve, reject) => {
        const s = client.ServerReflectionInfo() as grpc.ClientDuplexStream<object, ReflectionAnswer>;
        s.on('data', (d: ReflectionAnswer) => {
          resolve(d);
          s.end();
        });
        s.on('error', reject);
        s.write(req);
      });
    const list = await ask({ list_services: '' });
    const names = list.list_services_response.service.map((s) => s.name);
    t.ok(names.includes('grpc.AgentService'), 'AgentService listed');
    t.ok(names.includes('grpc.Health'), 'Health listed');
    const file = await ask({ file_containing_symbol: 'grpc.AgentService' });
    const protos = file.file_descriptor_response.file_descriptor_proto.map((b: Buffer) => fromBinary(FileDescriptorProtoSchema, b));
    const svc = protos.flatMap((p) => p.service).find((s) => s.name === 'AgentService');
    t.ok(svc, 'AgentService descriptor returned');
    t.equal(svc!.method.length, 45);
    t.ok(svc!.method.some((m) => m.name === 'CreateContainer' && m.inputType === '.grpc.CreateContainerRequest'));
  });

  t.test('malformed request bytes get INVALID_ARGUMENT and the agent keeps serving', async (t) => {
    const client = new GrpcClient(await connect(agent.address, 2000));
    t.teardown(() => client.close());
    const err = (await client.call('grpc.Health', 'Check', Buffer.from([0x0a, 0xff, 0xff, 0xff]), 2000).catch((e) => e)) as CallError;
    t.type(err, CallError);
    t.equal(err.code, Code.INVALID_ARGUMENT);
    t.match(err.details, /cannot decode grpc\.CheckRequest/);
    const ok = fromBinary(HealthCheckResponseSchema, await client.call('grpc.Health', 'Check', new Uint8Array(0), 2000));
    t.equal(ok.status, HealthCheckResponse_ServingStatus.SERVING);
  });

  t.test('garbage and a host that disconnects mid-call do not stop the agent', async (t) => {
    for (const bytes of [Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.alloc(64, 0xff), Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00')]) {
      await new Promise<void>((resolve) => {
        const s = net.connect(agent.socketPath, () => {
          s.write(bytes);
          setTimeout(() => s.destroy(), 50);
        });
        s.on('close', () => resolve());
        s.on('error', () => undefined);
      });
    }
    // Start a call and vanish before the answer.
    const sock = await connect(agent.address, 2000);
    const doomed = new GrpcClient(sock);
    const pending = doomed.call('grpc.AgentService', 'GetGuestDetails', new Uint8Array(0), 2000).catch((e) => e);
    sock.destroy();
    await pending;
    const client = new GrpcClient(await connect(agent.address, 2000));
    t.teardown(() => client.close());
    const ok = fromBinary(HealthCheckResponseSchema, await client.call('grpc.Health', 'Check', new Uint8Array(0), 2000));
    t.equal(ok.status, HealthCheckResponse_ServingStatus.SERVING);
    t.equal(agent.child.exitCode, null, 'agent still running');
  });

  t.test('one debug log line per RPC with method, duration and status', async (t) => {
    const lines = agent
      .logs()
      .split('\n')
      .filter((l) => l.includes('"msg":"rpc"'))
      .map((l) => JSON.parse(l));
    const refused = lines.find((l) => l.method === 'CreateContainer' && l.container_id === 'c1');
    t.ok(refused, 'CreateContainer logged');
    t.equal(refused.code, 'INVALID_ARGUMENT');
    t.equal(refused.level, 'debug');
    t.type(refused.duration_ms, 'number');
  });
});

t.test('abstract unix socket address', async (t) => {
  const name = `kata-agent-test-${process.pid}`;
  const agent = await startAgentProcess({ address: `unix://@${name}` });
  t.teardown(() => agent.stop());
  const r = await run(process.execPath, [ctlBin, 'connect', '--server-address', `unix://@${name}`, '-c', 'Check']);
  t.equal(r.code, 0, r.stderr);
  t.same(JSON.parse(r.stdout), { status: 'SERVING' });
});

t.test('start-up errors: one line, exit code 2', async (t) => {
  const dir = tempDir('kata-bad-');
  const agentBin = path.join(repoRoot, 'bin/kata-agent');
  const expectFail = async (args: string[], env: NodeJS.ProcessEnv, pattern: RegExp) => {
    const r = await run(process.execPath, [agentBin, ...args], { KATA_AGENT_SERVER_ADDR: '', ...env });
    t.equal(r.code, 2, `exit 2 for ${args.join(' ')} ${JSON.stringify(env)}`);
    t.equal(r.stderr.trim().split('\n').length, 1, 'exactly one line, no stack trace');
    t.match(r.stderr, pattern);
  };
  await expectFail(['--server-addr', 'bogus://x'], {}, /^kata-agent: --server-addr: server address "bogus:\/\/x": unknown scheme "bogus"/);
  await expectFail([], { KATA_AGENT_SERVER_ADDR: 'bogus://x' }, /KATA_AGENT_SERVER_ADDR: .*unknown scheme/);
  await expectFail(
    ['--config', path.join(dir, 'missing.toml'), '--server-addr', `unix://${dir}/a.sock`],
    {},
    /cannot read config file .*missing\.toml: ENOENT/,
  );
  await expectFail(['--server-addr', `unix://${dir}/no/such/dir/a.sock`], {}, /cannot listen on .*: directory .*\/no\/such\/dir does not exist/);
  const notSock = path.join(dir, 'plain-file');
  fs.writeFileSync(notSock, '');
  await expectFail(['--server-addr', `unix://${notSock}`], {}, /exists and is not a socket/);

  const first = await startAgentProcess();
  t.teardown(() => first.stop());
  await expectFail(['--server-addr', first.address], {}, /socket path in use by another process/);
});

t.test('a stale socket file from a dead agent is replaced', async (t) => {
  const dir = tempDir('kata-stale-');
  const sock = path.join(dir, 'a.sock');
  // An agent killed with SIGKILL leaves its socket file behind.
  await run(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  t.ok(fs.existsSync(sock), 'stale socket file exists');
  const agent = await startAgentProcess({ address: `unix://${sock}` });
  t.teardown(() => agent.stop());
  const r = await run(process.execPath, [ctlBin, 'connect', '--server-address', `unix://${sock}`, '-c', 'Check']);
  t.equal(r.code, 0, r.stderr);
});

t.test('vsock listener: binds VMADDR_CID_ANY, a busy port is a clear exit 2', async (t) => {
  const port = 30000 + (process.pid % 30000);
  let agent;
  try {
    agent = await startAgentProcess({ address: `vsock://-1:${port}` });
  } catch (err) {
    // Only a kernel without AF_VSOCK may refuse, and then with a message that says so.
    t.match(String(err), /EAFNOSUPPORT.*no vsock in this kernel/);
    return;
  }
  t.teardown(() => agent.stop());
  t.match(agent.logs(), new RegExp(`"address":"vsock://-1:${port}"`));
  const r = await run(process.execPath, [path.join(repoRoot, 'bin/kata-agent'), '--server-addr', `vsock://-1:${port}`]);
  t.equal(r.code, 2);
  t.equal(r.stderr.trim().split('\n').length, 1);
  t.match(r.stderr, new RegExp(`cannot listen on vsock://-1:${port}: bind\\(vsock cid=4294967295 port=${port}\\): EADDRINUSE`));
});

t.test('SIGTERM with a host connection still open: the agent exits and leaves no helper behind', async (t) => {
  const agent = await startAgentProcess();
  const client = new GrpcClient(await connect(agent.address, 2000));
  await client.call('grpc.Health', 'Check', new Uint8Array(0), 2000);
  const childrenOf = (pid: number) => {
    try {
      return fs
        .readdirSync(`/proc/${pid}/task`)
        .flatMap((tid) => fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/))
        .filter(Boolean)
        .map(Number);
    } catch {
      return [];
    }
  };
  const helpers = childrenOf(agent.pid);
  const exited = new Promise<number | null>((resolve) => agent.child.once('exit', (code) => resolve(code)));
  process.kill(agent.pid, 'SIGTERM');
  // The connection stays open on our side: shutdown must not wait for the host to hang up.
  t.equal(await exited, 0, 'agent exited cleanly');
  client.close();
  for (const pid of helpers) t.notOk(fs.existsSync(`/proc/${pid}`) && !fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z'), `helper ${pid} is gone`);
});
