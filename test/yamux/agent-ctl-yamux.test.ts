// agent-ctl's yamux:///path form, end to end: the CLI connects to a unix socket standing in for
// QEMU's chardev, opens one yamux stream, calls Check, and exits on its own.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { healthHandlers } from '../../agent/src/health/handlers.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { AgentRpcService } from '../../agent/src/rpc/service.js';
import { GrpcTransport } from '../../agent/src/transport/grpc-transport.js';
import { serveYamux } from '../../agent/src/transport/yamux/server.js';
import type { YamuxSession } from '../../agent/src/transport/yamux/session.js';

const ctl = path.resolve(__dirname, '../../../bin/kata-agent-ctl');

function runCtl(t: Test, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [ctl, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

t.test('kata-agent-ctl connect --server-address yamux:///path', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ctl-yamux-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const sock = path.join(dir, 'kata.sock');
  const log = createLogger('fatal');
  const grpc = new GrpcTransport(new AgentRpcService(log, [], healthHandlers()), log);
  t.teardown(() => grpc.close());
  const sessions: YamuxSession[] = [];
  const server = net.createServer((conn) => sessions.push(serveYamux(conn, (s) => grpc.serve(s))));
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  t.teardown(() => server.close());

  const r = await runCtl(t, ['connect', '--server-address', `yamux://${sock}`, '-c', 'Check', '-c', 'Version']);
  t.equal(r.code, 0, `exit status (stderr: ${r.stderr.trim()})`);
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  t.equal(lines[0].status, 'SERVING');
  t.type(lines[1].agent_version, 'string');
  t.equal(sessions.length, 1, 'one yamux session');
  t.equal(sessions[0].stats.streamsAccepted, 1, 'one stream for both calls');
  await sessions[0].closed;

  const bad = await runCtl(t, ['connect', '--server-address', 'serial://agent.channel.0', '-c', 'Check']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /guest's end of the channel; from the host use yamux:\/\/\/path/);
});
