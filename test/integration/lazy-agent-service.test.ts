// The agent service (agent.proto's descriptors and the container domains) is built on its first
// call, not at start: a health-checked agent must not have loaded it, the first AgentService call
// must build it once even when several arrive together, and it must then answer as usual.
// Root-only: building the domains prepares pid namespaces and starts a container-init helper.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { create, toBinary, fromBinary } from '@bufbuild/protobuf';
import { connect } from '../../agent-ctl/src/connect.js';
import { TtrpcClient } from '../../agent-ctl/src/ttrpc-client.js';
import { defaults } from '../../agent/src/config/config.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { startAgent } from '../../agent/src/main.js';
import { CheckRequestSchema, HealthCheckResponseSchema, HealthCheckResponse_ServingStatus } from '../../protos/gen/health_pb.js';
import { containerTestSkipReason } from '../support/busybox-rootfs.js';

const loaded = (suffix: string) => Object.keys(require.cache).some((k) => k.endsWith(suffix));

t.test('agent service is built on its first call', { skip: containerTestSkipReason() }, async (t) => {
  // Nothing this test file imports may load them itself, or the checks below prove nothing.
  t.notOk(loaded(`${path.sep}agent_pb.js`), 'agent_pb not loaded by the test itself');
  t.notOk(loaded(`${path.sep}domains.js`), 'domains not loaded by the test itself');

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-lazy-'));
  const config = { ...defaults, serverAddr: `unix://${dir}/agent.sock`, stateRoot: `${dir}/state`, logLevel: 'warn' as const };
  const agent = await startAgent(config, createLogger('warn'), { resolvConfTarget: `${dir}/resolv.conf`, helperPoolSize: 1 });
  const client = new TtrpcClient(await connect(config.serverAddr, 5000));
  t.teardown(async () => {
    client.close();
    await agent.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const check = fromBinary(
    HealthCheckResponseSchema,
    await client.call('grpc.Health', 'Check', toBinary(CheckRequestSchema, create(CheckRequestSchema)), 5000),
  );
  t.equal(check.status, HealthCheckResponse_ServingStatus.SERVING);
  t.notOk(loaded(`${path.sep}agent_pb.js`), 'Check answered without agent.proto descriptors');
  t.notOk(loaded(`${path.sep}domains.js`), 'Check answered without the container domains');

  // Three first calls at once: one build, three answers.
  const { GuestDetailsResponseSchema } = await import('../../protos/gen/agent_pb.js');
  const answers = await Promise.all([0, 1, 2].map(() => client.call('grpc.AgentService', 'GetGuestDetails', new Uint8Array(0), 30_000)));
  for (const a of answers)
    t.same(fromBinary(GuestDetailsResponseSchema, a).agentDetails?.storageHandlers, [
      '9p',
      'virtio-fs',
      'ephemeral',
      'local',
      'bind',
      'watchable-bind',
      'overlayfs',
    ]);
  t.ok(loaded(`${path.sep}domains.js`), 'domains built by the first AgentService call');
  const unknown = await client.call('grpc.AgentService', 'NoSuchMethod', new Uint8Array(0), 5000).then(
    () => 'OK',
    (err: { code: number }) => err.code,
  );
  t.equal(unknown, 12 /* UNIMPLEMENTED */, 'unknown method of the built service');
});
