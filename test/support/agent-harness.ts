// Starts an agent in this process on a unix socket with a temp state root and talks to it the way a
// host does: gRPC over the socket, one typed call per RPC.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { create, fromBinary, toBinary, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import { AgentService } from '../../protos/gen/agent_pb.js';
import { Health, HealthCheckResponse_ServingStatus } from '../../protos/gen/health_pb.js';
import { CallError, GrpcClient, type RpcClient } from '../../agent-ctl/src/grpc-client.js';
import { readToEnd } from './end-of-stream.js';
import { TtrpcClient } from '../../agent-ctl/src/ttrpc-client.js';
import { connect } from '../../agent-ctl/src/connect.js';
import { defaults } from '../../agent/src/config/config.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { startAgent, type DomainDeps, type RunningAgent } from '../../agent/src/main.js';

type Methods = typeof AgentService.method;

export class AgentHarness {
  private constructor(
    readonly dir: string,
    readonly stateRoot: string,
    readonly resolvConf: string,
    readonly agent: RunningAgent,
    private readonly client: RpcClient,
  ) {}

  /** `wire`: gRPC is how kata 1.x hosts talk, ttrpc how 2.x/3.x hosts do. */
  /** `authority`: the gRPC `:authority` to send (a kata 1.x host sends its dial target). */
  static async start(deps: DomainDeps = {}, wire: 'grpc' | 'ttrpc' = 'grpc', authority?: string): Promise<AgentHarness> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-agent-test-'));
    const stateRoot = path.join(dir, 'state');
    const resolvConf = path.join(dir, 'resolv.conf');
    fs.writeFileSync(resolvConf, '# host\n');
    const config = { ...defaults, serverAddr: `unix://${dir}/agent.sock`, stateRoot, logLevel: 'warn' as const };
    const agent = await startAgent(config, createLogger('warn'), { resolvConfTarget: resolvConf, helperPoolSize: 1, ...deps });
    const sock = await connect(config.serverAddr, 5000);
    return new AgentHarness(dir, stateRoot, resolvConf, agent, wire === 'grpc' ? new GrpcClient(sock, authority) : new TtrpcClient(sock));
  }

  async call<K extends keyof Methods>(method: K, req: MessageInitShape<Methods[K]['input']>, timeoutMs = 60_000): Promise<MessageShape<Methods[K]['output']>> {
    const m = AgentService.method[method];
    const bytes = await this.client.call('grpc.AgentService', m.name, toBinary(m.input, create(m.input, req as never)), timeoutMs);
    return fromBinary(m.output, bytes) as MessageShape<Methods[K]['output']>;
  }

  /** grpc.Health Check, as a host's first call and heartbeat; throws unless SERVING. */
  async check(): Promise<void> {
    const m = Health.method.check;
    const res = fromBinary(m.output, await this.client.call('grpc.Health', m.name, toBinary(m.input, create(m.input, {})), 30_000));
    if (res.status !== HealthCheckResponse_ServingStatus.SERVING) throw new Error(`Check answered ${res.status}`);
  }

  /** A call with a request already encoded (e.g. a kata 1.x message shape). */
  callRaw(method: string, request: Uint8Array, timeoutMs = 60_000): Promise<Uint8Array> {
    return this.client.call('grpc.AgentService', method, request, timeoutMs);
  }

  /** The status code a call fails with (or "OK"). */
  async code<K extends keyof Methods>(method: K, req: MessageInitShape<Methods[K]['input']>): Promise<string> {
    try {
      await this.call(method, req);
      return 'OK';
    } catch (err) {
      if (err instanceof CallError) return codeName(err.code) + ': ' + err.details;
      throw err;
    }
  }

  /** Reads a stream until its end-of-stream error (either generation's); an empty OK answer fails. */
  async readAll(stream: 'readStdout' | 'readStderr', containerId: string, execId = ''): Promise<string> {
    const out = await readToEnd(() => this.call(stream, { containerId, execId, len: 32 * 1024 }), `${stream} ${containerId}/${execId}`);
    return out.toString();
  }

  async stop(): Promise<void> {
    this.client.close();
    await this.agent.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

import { Code } from '../../agent/src/rpc/status.js';
function codeName(c: number): string {
  return Code[c] ?? String(c);
}
