// kata 1.x hosts (grpc-go 1.11) send their whole dial target as `:authority`, slashes and all. Node's
// HTTP/2 server resets such a request with PROTOCOL_ERROR unless the agent fixes the header first.
import net from 'node:net';
import t from 'tap';
import { grpcUnary } from '../helpers/raw-http2.js';
import { startAgentProcess } from '../support/agent-process.js';

t.test('a request whose :authority holds "/" is answered on the agent unix socket', async (t) => {
  const agent = await startAgentProcess({ env: { KATA_AGENT_LOG_LEVEL: 'info' } });
  t.teardown(() => agent.stop());
  const dial = () => net.connect(agent.socketPath);
  for (const authority of ['unix:////run/vc/sbs/grpc-authority/kata.sock', `unix://${agent.socketPath}`, 'localhost']) {
    const check = await grpcUnary(dial, '/grpc.Health/Check', Buffer.alloc(0), authority);
    t.same({ rst: check.rstCode, status: check.status, grpc: check.grpcStatus }, { rst: 0, status: 200, grpc: '0' }, `Check with :authority ${authority}`);
    t.equal(check.payload.toString('hex'), '0801', 'HealthCheckResponse{status: SERVING}');
  }
  // An AgentService call too: the rewritten header block carries every other header intact.
  const details = await grpcUnary(
    dial,
    '/grpc.AgentService/GetGuestDetails',
    Buffer.from([0x08, 0x01]),
    'unix:////run/vc/sbs/grpc-authority/kata.sock',
    60_000,
  );
  t.equal(details.grpcStatus, '0', 'GetGuestDetails answers');
});
