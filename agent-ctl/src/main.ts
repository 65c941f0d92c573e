import util from 'node:util';
import { create, fromBinary, toBinary, toJson, type DescMethod } from '@bufbuild/protobuf';
import { CheckRequestSchema } from '../../protos/gen/health_pb.js';
import { parseDurationMs } from '../../agent/src/config/values.js';
import { serviceDescs } from '../../agent/src/rpc/service.js';
import { Code } from '../../agent/src/rpc/status.js';
import { connect } from './connect.js';
import { CallError, GrpcClient, type RpcClient } from './grpc-client.js';
import { buildRequest } from './request.js';
import { TtrpcClient } from './ttrpc-client.js';

const usage = `usage:
  kata-agent-ctl connect --server-address ADDR [--proto ttrpc|grpc|auto] [--hybrid-vsock [--hybrid-vsock-port N]]
                         [--timeout 5s] [--repeat N] [--ignore-errors] -c 'CMD [args]' [-c ...]
  kata-agent-ctl list
ADDR: unix:///path | unix://@abstract | vsock://CID:PORT | yamux:///path (kata 1.x: QEMU's chardev socket of agent.channel.0)
--proto: ttrpc (kata 2.x/3.x), grpc (kata 1.x), auto (default: ttrpc, else gRPC on a new connection; gRPC on yamux://)
--hybrid-vsock: ADDR is a Firecracker/Cloud Hypervisor unix socket; send "CONNECT N" first (port 1024)
args: k=v k2="a b" | json://{...} | file:///request.json`;

interface Command {
  method: DescMethod;
  args: string;
}

function allMethods(): DescMethod[] {
  return serviceDescs().flatMap((s) => s.methods);
}

function findMethod(name: string): DescMethod | undefined {
  const lower = name.toLowerCase();
  return allMethods().find((m) => m.name.toLowerCase() === lower);
}

function parseCommand(text: string): Command {
  const trimmed = text.trim();
  const sp = trimmed.search(/\s/);
  const name = sp < 0 ? trimmed : trimmed.slice(0, sp);
  const method = findMethod(name);
  if (!method) throw new Error(`unknown command "${name}" (see kata-agent-ctl list)`);
  return { method, args: sp < 0 ? '' : trimmed.slice(sp + 1) };
}

type Proto = 'ttrpc' | 'grpc' | 'auto';

export interface DialOptions {
  address?: string;
  proto: Proto;
  hybridVsock: boolean;
  hybridVsockPort: number;
  timeoutMs: number;
}

interface Options extends DialOptions {
  repeat: number;
  ignoreErrors: boolean;
  commands: string[];
}

const cliOptions = {
  'server-address': { type: 'string', short: 's' },
  proto: { type: 'string' },
  'hybrid-vsock': { type: 'boolean' },
  'hybrid-vsock-port': { type: 'string' },
  timeout: { type: 'string' },
  repeat: { type: 'string' },
  'ignore-errors': { type: 'boolean' },
  cmd: { type: 'string', short: 'c', multiple: true },
} as const;

function parseCli(argv: string[]): Options {
  let v: ReturnType<typeof util.parseArgs<{ options: typeof cliOptions; strict: true }>>['values'];
  try {
    v = util.parseArgs({ args: argv, options: cliOptions, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new Error(`${(err as Error).message.split('. ')[0]} (see kata-agent-ctl --help)`, { cause: err });
  }
  const o: Options = {
    proto: 'auto',
    hybridVsock: v['hybrid-vsock'] ?? false,
    hybridVsockPort: 1024,
    timeoutMs: 5000,
    repeat: 1,
    ignoreErrors: v['ignore-errors'] ?? false,
    commands: v.cmd ?? [],
  };
  o.address = v['server-address'];
  if (v.proto !== undefined) {
    if (v.proto !== 'ttrpc' && v.proto !== 'grpc' && v.proto !== 'auto') throw new Error(`--proto takes ttrpc, grpc or auto, not "${v.proto}"`);
    o.proto = v.proto;
  }
  if (v['hybrid-vsock-port'] !== undefined) {
    o.hybridVsockPort = Number(v['hybrid-vsock-port']);
    if (!Number.isInteger(o.hybridVsockPort) || o.hybridVsockPort < 0 || o.hybridVsockPort > 0xffffffff)
      throw new Error('--hybrid-vsock-port takes a port number (u32)');
  }
  if (v.timeout !== undefined) o.timeoutMs = parseDurationMs(v.timeout);
  if (v.repeat !== undefined) o.repeat = Number(v.repeat);
  if (!o.address) throw new Error('--server-address is required');
  if (!Number.isInteger(o.repeat) || o.repeat < 1) throw new Error('--repeat takes a whole number ≥ 1');
  if (o.commands.length === 0) throw new Error('give at least one -c COMMAND');
  return o;
}

function dial(o: DialOptions) {
  return connect(o.address!, { timeoutMs: o.timeoutMs, hybridVsockPort: o.hybridVsock ? o.hybridVsockPort : undefined });
}

/**
 * auto tries ttrpc first: kata 3.x hosts speak it, and a gRPC server shown ttrpc bytes rejects them at
 * once (they are not the HTTP/2 preface) and closes. The other order would stall a pure ttrpc server,
 * which reads the preface "PRI " as a 1.3 GB frame length. A ttrpc answer of any status settles it.
 */
export async function openClient(o: DialOptions): Promise<RpcClient> {
  const opts = o;
  // A yamux channel is kata 1.x's virtio-serial link, which only ever carries gRPC.
  const isYamux = o.address?.startsWith('yamux://') ?? false;
  if (o.proto === 'grpc' || (o.proto === 'auto' && isYamux)) return new GrpcClient(await dial(opts));
  const ttrpc = new TtrpcClient(await dial(opts));
  if (o.proto === 'ttrpc') return ttrpc;
  try {
    await ttrpc.call('grpc.Health', 'Check', toBinary(CheckRequestSchema, create(CheckRequestSchema)), o.timeoutMs);
    return ttrpc;
  } catch (err) {
    if (err instanceof CallError && err.code !== Code.UNAVAILABLE && err.code !== Code.DEADLINE_EXCEEDED) return ttrpc;
    ttrpc.close();
    // A fresh connection: the first one is spent (and, through a VMM, its CONNECT too).
    return new GrpcClient(await dial(opts));
  }
}

async function run(o: Options): Promise<number> {
  const commands = o.commands.map(parseCommand);
  const client = await openClient(o);
  let failed = 0;
  try {
    for (let r = 0; r < o.repeat; r++) {
      for (const c of commands) {
        const req = buildRequest(c.method.input, c.args);
        try {
          const bytes = await client.call(c.method.parent.typeName, c.method.name, toBinary(c.method.input, req), o.timeoutMs);
          const res = fromBinary(c.method.output, bytes);
          process.stdout.write(JSON.stringify(toJson(c.method.output, res, { alwaysEmitImplicit: true, useProtoFieldName: true })) + '\n');
        } catch (err) {
          failed++;
          const e = err instanceof CallError ? `${Code[err.code] ?? err.code}: ${err.details}` : (err as Error).message;
          process.stderr.write(`${c.method.name}: ${e}\n`);
          if (!o.ignoreErrors) return 1;
        }
      }
    }
  } finally {
    client.close();
  }
  return failed ? 1 : 0;
}

export async function main(argv: string[]): Promise<void> {
  const [sub, ...rest] = argv;
  try {
    if (sub === 'list') {
      for (const m of allMethods()) process.stdout.write(`${m.name}\n`);
      return;
    }
    if (sub === 'connect') {
      process.exitCode = await run(parseCli(rest));
      return;
    }
    if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
      process.stdout.write(usage + '\n');
      process.exitCode = sub === undefined ? 2 : 0;
      return;
    }
    throw new Error(`unknown subcommand "${sub}"`);
  } catch (err) {
    process.stderr.write(`kata-agent-ctl: ${(err as Error).message}\n`);
    process.exitCode = 2;
  }
}
