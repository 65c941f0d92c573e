import { fromBinary, toBinary, toJson, type DescMethod } from '@bufbuild/protobuf';
import { parseDurationMs } from '../../agent/src/config/values.js';
import { services } from '../../agent/src/rpc/service.js';
import { Code } from '../../agent/src/rpc/status.js';
import { connect } from './connect.js';
import { CallError, GrpcClient, type RpcClient } from './grpc-client.js';
import { buildRequest } from './request.js';

const usage = `usage:
  kata-agent-ctl connect --server-address ADDR [--proto grpc] [--timeout 5s] [--repeat N] [--ignore-errors] -c 'CMD [args]' [-c ...]
  kata-agent-ctl list
ADDR: unix:///path | unix://@abstract | vsock://CID:PORT | yamux:///path (kata 1.x: QEMU's chardev socket of agent.channel.0)
args: k=v k2="a b" | json://{...} | file:///request.json`;

interface Command {
  method: DescMethod;
  args: string;
}

function allMethods(): DescMethod[] {
  return services.flatMap((s) => s.methods);
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

interface Options {
  address?: string;
  proto: string;
  timeoutMs: number;
  repeat: number;
  ignoreErrors: boolean;
  commands: string[];
}

function parseArgs(argv: string[]): Options {
  const o: Options = { proto: 'grpc', timeoutMs: 5000, repeat: 1, ignoreErrors: false, commands: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--server-address' || a === '-s') o.address = value();
    else if (a === '--proto') o.proto = value();
    else if (a === '--timeout') o.timeoutMs = parseDurationMs(value());
    else if (a === '--repeat') o.repeat = Number(value());
    else if (a === '--ignore-errors') o.ignoreErrors = true;
    else if (a === '-c' || a === '--cmd') o.commands.push(value());
    else throw new Error(`unknown argument "${a}"`);
  }
  if (!o.address) throw new Error('--server-address is required');
  if (!Number.isInteger(o.repeat) || o.repeat < 1) throw new Error('--repeat takes a whole number ≥ 1');
  if (o.commands.length === 0) throw new Error('give at least one -c COMMAND');
  return o;
}

async function openClient(o: Options): Promise<RpcClient> {
  if (o.proto !== 'grpc') throw new Error(`--proto ${o.proto} is not supported (grpc)`);
  return new GrpcClient(await connect(o.address!, o.timeoutMs));
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
      process.exitCode = await run(parseArgs(rest));
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
