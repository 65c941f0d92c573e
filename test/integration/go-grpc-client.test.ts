// The real grpc-go client (Debian's golang-google-grpc-dev; kata 1.x's host side is grpc-go) calls
// the agent the way a kata 1.x host does: with `:authority` holding slashes, on a unix socket and
// inside a hashicorp/yamux stream on the serial channel while the session pings every second.
// Built in GOPATH mode from /usr/share/gocode, so no module download is needed.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Duplex } from 'node:stream';
import t from 'tap';
import { defaults } from '../../agent/src/config/config.js';
import type { AgentDomains } from '../../agent/src/domains.js';
import { startDomains } from '../../agent/src/domains.js';
import { healthHandlers } from '../../agent/src/health/handlers.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { AgentRpcService } from '../../agent/src/rpc/service.js';
import { GrpcTransport } from '../../agent/src/transport/grpc-transport.js';
import { SerialListener } from '../../agent/src/transport/serial-listener.js';
import { routeConnection } from '../../agent/src/transport/wire-router.js';
import type { YamuxSession } from '../../agent/src/transport/yamux/session.js';
import { startAgentProcess } from '../support/agent-process.js';
import { buildGoGrpcClient, checkGoGrpcCalls, goGrpcMissing, runGoGrpcClient, type GoGrpcReport } from '../support/go-grpc-client.js';

const skip = goGrpcMissing() ?? false;
// .ci/run installs all of them, so in CI (CI=true) a missing piece is a failure as well as a skip.
if (skip && process.env.CI) t.fail(`the grpc-go interop test must run in CI: ${skip}`);

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'grpc-go-client-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));

t.test('grpc-go calls the agent with a kata 1.x :authority', { skip }, async (t) => {
  const bin = buildGoGrpcClient(work);

  // grpc-js (the default) and our own HTTP/2 server (KATA_AGENT_GRPC_SERVER=own).
  for (const server of ['grpc-js', 'own'] as const) {
    t.test(`on the agent process unix socket (${server})`, async (t) => {
      const agent = await startAgentProcess({ env: { KATA_AGENT_LOG_LEVEL: 'info', KATA_AGENT_GRPC_SERVER: server === 'own' ? 'own' : '' } });
      t.teardown(() => agent.stop());
      const r = await runGoGrpcClient(bin, ['unix', agent.socketPath]);
      t.equal(r.code, 0, `client exit status (stderr: ${r.stderr.trim()})`);
      const report = JSON.parse(r.stdout) as GoGrpcReport;
      // What grpc-go really put on the wire, decoded by x/net's own HPACK decoder.
      t.ok(report.authorities.length >= 3, 'the client saw its own request headers');
      t.ok(
        report.authorities.every((a) => a === `unix://${agent.socketPath}` && a.includes('/')),
        `:authority sent: ${report.authorities[0]}`,
      );
      checkGoGrpcCalls(t, report);
    });
  }

  t.test('in a hashicorp/yamux stream on the serial channel, pinged every second', async (t) => {
    const log = createLogger('fatal');
    const stateDir = path.join(work, 'state');
    const resolvConf = path.join(work, 'resolv.conf');
    fs.writeFileSync(resolvConf, '# host\n');
    let domains: Promise<AgentDomains> | undefined;
    const service = new AgentRpcService(
      log,
      async () => {
        domains = startDomains({ ...defaults, stateRoot: stateDir }, log, { resolvConfTarget: resolvConf, helperPoolSize: 1 });
        return (await domains).handlers;
      },
      healthHandlers(),
    );
    const grpc = new GrpcTransport(service, log);
    // The virtio-serial port is played by a unix socket: each host that connects is one port session.
    const sysfs = path.join(work, 'sysfs');
    fs.mkdirSync(path.join(sysfs, 'class/virtio-ports/vport1p1'), { recursive: true });
    fs.writeFileSync(path.join(sysfs, 'class/virtio-ports/vport1p1/name'), 'agent.channel.0\n');
    const waiting: ((d: Duplex) => void)[] = [];
    const arrived: Duplex[] = [];
    const sock = path.join(work, 'serial.sock');
    const server = net.createServer((c) => (waiting.length ? waiting.shift()!(c) : arrived.push(c)));
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    const listener = new SerialListener({
      sysfsRoot: sysfs,
      devDir: '/grpc-test-dev',
      openPort: () => arrived.shift() ?? new Promise<Duplex>((resolve) => waiting.push(resolve)),
    });
    const sessions: YamuxSession[] = [];
    listener.on('session', (s: YamuxSession) => sessions.push(s));
    const listening = listener.listen((conn) => routeConnection(conn, { grpc: (c) => grpc.serve(c) }));
    t.teardown(async () => {
      const closed = listener.close();
      // A port that reads EOF at once: what the loop gets if it was waiting for the next host.
      for (const w of waiting.splice(0))
        w(
          new Duplex({
            read() {
              this.push(null);
            },
            write(_c, _e, cb) {
              cb();
            },
          }),
        );
      await closed;
      server.close();
      grpc.close();
      await (await domains?.catch(() => undefined))?.shutdown();
    });

    const r = await runGoGrpcClient(bin, ['yamux', sock]);
    await listening;
    t.equal(r.code, 0, `client exit status (stderr: ${r.stderr.trim()})`);
    const report = JSON.parse(r.stdout) as GoGrpcReport;
    t.ok(
      report.authorities.length >= 3 && report.authorities.every((a) => a === 'unix:////run/vc/sbs/go-grpc-yamux/kata.sock'),
      `:authority sent: ${report.authorities[0]}`,
    );
    checkGoGrpcCalls(t, report);
    t.same(report.pingErrors, [], 'no ping failed');
    t.ok(report.pingsOk >= 3, `${report.pingsOk} pings answered while the calls ran`);
    t.ok(sessions.length >= 1 && sessions[0].stats.pingsAnswered >= 3, `the agent's session answered ${sessions[0]?.stats.pingsAnswered} pings`);
  });
});
