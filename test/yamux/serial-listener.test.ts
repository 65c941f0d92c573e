// The virtio-serial listener without a VM. A fake sysfs tree names the port; the port itself is
// played by unix-socket pairs: while no host is attached, each open returns a socket whose peer has
// already hung up, so it reads EOF at once, which is how /dev/vportNpM behaves with QEMU's chardev
// disconnected. When a host is attached, the peer runs the host-side yamux client.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import t, { type Test } from 'tap';
import { GrpcClient } from '../../agent-ctl/src/grpc-client.js';
import { loadConfig } from '../../agent/src/config/config.js';
import { ConfigError } from '../../agent/src/config/errors.js';
import { healthHandlers } from '../../agent/src/health/handlers.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { AgentRpcService } from '../../agent/src/rpc/service.js';
import { chooseServerAddress, probeChannels } from '../../agent/src/transport/channel.js';
import { createListener } from '../../agent/src/transport/listener.js';
import { GrpcTransport } from '../../agent/src/transport/grpc-transport.js';
import { SerialListener, type SessionEnd, type SerialListenerOptions } from '../../agent/src/transport/serial-listener.js';
import { findVirtioPort } from '../../agent/src/transport/virtio-ports.js';
import { YamuxClient } from '../../agent/src/transport/yamux/client.js';
import type { YamuxSession } from '../../agent/src/transport/yamux/session.js';
import { CheckRequestSchema, HealthCheckResponse_ServingStatus, HealthCheckResponseSchema } from '../../protos/gen/health_pb.js';
import { once, socketPair } from './pair.js';

const log = createLogger('fatal');
const check = toBinary(CheckRequestSchema, create(CheckRequestSchema, {}));

function fakeSysfs(t: Test, ports: Record<string, string>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'serial-sysfs-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  for (const [dev, name] of Object.entries(ports)) addPort(root, dev, name);
  return root;
}

function addPort(root: string, dev: string, name: string): void {
  const dir = path.join(root, 'class', 'virtio-ports', dev);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'name'), `${name}\n`);
}

/** Stands in for /dev/vportNpM and QEMU's chardev behind it. */
class FakePort {
  readonly opened: string[] = [];
  readonly delays: number[] = [];
  /** The waits between one host attaching (or the start) and the next. */
  readonly waitsBeforeAttach: number[][] = [];
  private sinceAttach: number[] = [];
  /** Every event in order: 'open', 'sleep', 'eof-open' (opened with no host), 'host-open'. */
  readonly events: string[] = [];
  private attachAfter?: { sleeps: number; resolve: (host: net.Socket) => void };
  private failNext?: Error;

  readonly options = (): Partial<SerialListenerOptions> => ({
    devDir: '/fake-dev',
    openPort: (p) => this.open(p),
    sleep: (ms) => this.sleep(ms),
  });

  /** The host attaches once the listener has slept `sleeps` more times; resolves with its socket. */
  attach(sleeps: number): Promise<net.Socket> {
    return new Promise((resolve) => (this.attachAfter = { sleeps, resolve }));
  }

  failNextOpen(err: Error): void {
    this.failNext = err;
  }

  private async open(p: string): Promise<Duplex> {
    this.opened.push(p);
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = undefined;
      this.events.push('open-failed');
      throw e;
    }
    const pair = await socketPair();
    const a = this.attachAfter;
    if (a && a.sleeps <= 0) {
      this.attachAfter = undefined;
      this.events.push('host-open');
      this.waitsBeforeAttach.push(this.sinceAttach);
      this.sinceAttach = [];
      a.resolve(pair.client);
    } else {
      this.events.push('eof-open');
      pair.client.end(); // no host: the guest end reads EOF at once
    }
    return pair.server;
  }

  private sleep(ms: number): Promise<void> {
    this.delays.push(ms);
    this.sinceAttach.push(ms);
    this.events.push('sleep');
    if (this.attachAfter) this.attachAfter.sleeps--;
    return new Promise((resolve) => setImmediate(resolve));
  }
}

function grpcAgent(t: Test): GrpcTransport {
  const grpc = new GrpcTransport(new AgentRpcService(log, [], healthHandlers()), log);
  t.teardown(() => grpc.close());
  return grpc;
}

async function checkThrough(host: net.Socket): Promise<{ status: number; client: YamuxClient }> {
  const client = new YamuxClient(host, { pingIntervalMs: 0 });
  const rpc = new GrpcClient(client.open());
  const res = fromBinary(HealthCheckResponseSchema, await rpc.call('grpc.Health', 'Check', check, 10_000));
  rpc.close();
  return { status: res.status, client };
}

t.test('finds the port by name in sysfs', async (t) => {
  const root = fakeSysfs(t, { vport0p0: 'org.qemu.guest_agent.0', vport1p1: 'agent.channel.0', vport1p2: 'other' });
  t.equal(findVirtioPort(root, 'agent.channel.0'), 'vport1p1');
  t.equal(findVirtioPort(root, 'nope'), undefined);
  t.equal(findVirtioPort(path.join(root, 'missing'), 'agent.channel.0'), undefined, 'no virtio-ports class at all');
});

t.test('no port after the discovery tries is a clear error; a late port is found', async (t) => {
  const root = fakeSysfs(t, {});
  const port = new FakePort();
  const l = new SerialListener({ ...port.options(), sysfsRoot: root, discoverTries: 3 });
  await t.rejects(
    l.listen(() => undefined),
    new ConfigError(
      `cannot listen on serial://agent.channel.0: no virtio-serial port named "agent.channel.0" under ${root}/class/virtio-ports after 3 looks ` +
        '(is virtio_console loaded and the VM started with a virtserialport of that name?)',
    ),
  );
  t.same(port.delays, [50, 50], 'looked every 50 ms, kata 1.x style');

  // The port shows up while the listener is still looking (module loaded late).
  const late = new SerialListener({
    ...port.options(),
    sysfsRoot: root,
    sleep: async (ms) => {
      if (port.delays.push(ms) === 4) addPort(root, 'vport3p1', 'agent.channel.0');
    },
  });
  await late.listen(() => undefined);
  t.equal(port.opened.at(-1), '/fake-dev/vport3p1');
  await late.close();
});

t.test('the first open failing stops start-up with the reason', async (t) => {
  const root = fakeSysfs(t, { vport1p1: 'agent.channel.0' });
  const port = new FakePort();
  port.failNextOpen(Object.assign(new Error('open(/fake-dev/vport1p1, O_RDWR|O_NONBLOCK): EBUSY (another process holds the port)'), { code: 'EBUSY' }));
  const l = new SerialListener({ ...port.options(), sysfsRoot: root });
  await t.rejects(
    l.listen(() => undefined),
    { name: 'ConfigError', message: /serial:\/\/agent\.channel\.0: open\(\/fake-dev\/vport1p1, O_RDWR\|O_NONBLOCK\): EBUSY/ },
  );
});

t.test('backs off while the host is away and serves it every time it comes back', async (t) => {
  const root = fakeSysfs(t, { vport0p1: 'other', vport1p1: 'agent.channel.0' });
  const port = new FakePort();
  const errors: Error[] = [];
  const ends: SessionEnd[] = [];
  const grpc = grpcAgent(t);
  const l = new SerialListener({ ...port.options(), sysfsRoot: root, onError: (e) => errors.push(e) });
  l.on('session-end', (e: SessionEnd) => ends.push(e));
  t.teardown(() => l.close());
  const backoff = [50, 100, 200, 400, 800, 1000, 1000];

  let host = port.attach(backoff.length);
  await l.listen((conn) => grpc.serve(conn));
  const cycles = 5;
  for (let i = 0; i < cycles; i++) {
    const { status, client } = await checkThrough(await host);
    t.equal(status, HealthCheckResponse_ServingStatus.SERVING, `session ${i + 1}: Check answered`);
    t.same(port.waitsBeforeAttach[i], backoff, `session ${i + 1}: waits doubled from 50 ms up to 1 s while the host was away`);
    host = port.attach(backoff.length);
    const ended = once<SessionEnd>(l, 'session-end');
    if (i % 2 === 0)
      client.close(); // host detaches cleanly (go-away, EOF)
    else client.session.destroy(); // host vanishes (QEMU chardev peer gone)
    t.equal((await ended).live, true);
  }
  await host;
  t.same(new Set(port.opened), new Set(['/fake-dev/vport1p1']), 'only the agent.channel.0 device was opened');
  // Never spinning: every open follows a wait, except the one right after a session the host used.
  let spins = 0;
  port.events.forEach((e, i) => {
    if (i === 0 || !e.endsWith('open')) return;
    const prev = port.events[i - 1];
    if (prev !== 'sleep' && !(prev === 'host-open')) spins++;
  });
  t.equal(spins, 0, `no open without a wait in ${port.events.length} events`);
  t.equal(ends.filter((e) => e.live).length, cycles, 'one live session per host visit');
  t.equal(errors.length, 0, `no errors reported for hosts coming and going: ${errors.map((e) => e.message).join('; ')}`);
});

t.test('garbage from the host drops the session; the listener goes on and the next host is served', async (t) => {
  const root = fakeSysfs(t, { vport1p1: 'agent.channel.0' });
  const port = new FakePort();
  const errors: Error[] = [];
  const grpc = grpcAgent(t);
  const l = new SerialListener({ ...port.options(), sysfsRoot: root, onError: (e) => errors.push(e) });
  t.teardown(() => l.close());
  const first = port.attach(0);
  await l.listen((conn) => grpc.serve(conn));
  const bad = await first;
  const ended = once<SessionEnd>(l, 'session-end');
  const next = port.attach(2);
  bad.write('Linux version 6.1.0 (console noise on the wrong port)\n');
  const end = await ended;
  t.match(end.reason?.message, /yamux protocol error: version 76/);
  t.equal(end.live, false, 'garbage is not a live session, so the listener backs off');
  t.match(errors[0]?.message, /serial:\/\/agent\.channel\.0: session dropped: yamux protocol error/);
  const { status, client } = await checkThrough(await next);
  t.equal(status, HealthCheckResponse_ServingStatus.SERVING, 'next host served');
  client.close();
});

t.test('an open failing later is reported and retried with back-off', async (t) => {
  const root = fakeSysfs(t, { vport1p1: 'agent.channel.0' });
  const port = new FakePort();
  const errors: Error[] = [];
  const grpc = grpcAgent(t);
  const l = new SerialListener({ ...port.options(), sysfsRoot: root, onError: (e) => errors.push(e) });
  t.teardown(() => l.close());
  await l.listen((conn) => grpc.serve(conn)); // first open: no host, EOF
  port.failNextOpen(Object.assign(new Error('open(/fake-dev/vport1p1): EIO'), { code: 'EIO' }));
  const { status, client } = await checkThrough(await port.attach(3));
  t.equal(status, HealthCheckResponse_ServingStatus.SERVING);
  t.match(
    errors.map((e) => e.message),
    [/EIO/],
  );
  t.same(port.events.slice(0, 4), ['eof-open', 'sleep', 'open-failed', 'sleep']);
  client.close();
});

t.test('close() ends the session and the loop', async (t) => {
  const root = fakeSysfs(t, { vport1p1: 'agent.channel.0' });
  const port = new FakePort();
  const grpc = grpcAgent(t);
  const l = new SerialListener({ ...port.options(), sysfsRoot: root });
  const host = port.attach(0);
  await l.listen((conn) => grpc.serve(conn));
  const { client } = await checkThrough(await host);
  await l.close();
  await client.closed; // EOF, or EPIPE if the host was still writing: either way the host knows
  t.equal(client.session.isClosed, true, 'host session ended');
  const opens = port.opened.length;
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(port.opened.length, opens, 'no reopen after close');
});

t.test('the real opener on a FIFO: garbage drops the session and the port is reopened', async (t) => {
  const dev = fs.mkdtempSync(path.join(os.tmpdir(), 'serial-dev-'));
  t.teardown(() => fs.rmSync(dev, { recursive: true, force: true }));
  const fifo = path.join(dev, 'vport7p1');
  const mk = spawnSync('mkfifo', [fifo]);
  t.equal(mk.status, 0, `mkfifo ${fifo} ${mk.stderr}`);
  if (mk.status !== 0) return;
  const root = fakeSysfs(t, { vport7p1: 'agent.channel.0' });
  const sessions: YamuxSession[] = [];
  const l = new SerialListener({ sysfsRoot: root, devDir: dev, sleep: () => new Promise((r) => setImmediate(r)) });
  l.on('session', (s: YamuxSession) => sessions.push(s));
  const ended = once<SessionEnd>(l, 'session-end');
  const reopened = new Promise<void>((resolve) => l.on('session', () => sessions.length === 2 && resolve()));
  await l.listen(() => t.fail('no stream expected'));
  const w = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  fs.writeSync(w, 'not yamux\n');
  fs.closeSync(w);
  t.match((await ended).reason?.message, /yamux protocol error/);
  await reopened;
  await l.close();
  t.equal(sessions.length >= 2, true, 'the device was opened again after the bad session');
});

t.test('channel choice: explicit address, agent.use_vsock, then what the guest offers', async (t) => {
  const vsockDefault = 'vsock://-1:1024';
  const none = () => ({ vsock: false, serial: false });
  const serialOnly = () => ({ vsock: false, serial: true });
  const both = () => ({ vsock: true, serial: true });
  t.equal(chooseServerAddress({ serverAddr: 'unix:///run/a.sock', useVsock: false }, serialOnly), 'unix:///run/a.sock', 'explicit address wins');
  t.equal(chooseServerAddress({ serverAddr: vsockDefault, useVsock: true }, serialOnly), vsockDefault, 'use_vsock=true');
  t.equal(chooseServerAddress({ serverAddr: vsockDefault, useVsock: false }, both), 'serial://agent.channel.0', 'use_vsock=false');
  t.equal(chooseServerAddress({ serverAddr: vsockDefault }, both), vsockDefault, 'vsock first when both exist');
  t.equal(chooseServerAddress({ serverAddr: vsockDefault }, serialOnly), 'serial://agent.channel.0', 'serial when only it exists');
  t.equal(chooseServerAddress({ serverAddr: vsockDefault }, none), vsockDefault, 'neither: the default, whose listen error explains');
  t.equal(createListener('serial://agent.channel.0').address, 'serial://agent.channel.0', 'createListener builds a SerialListener');

  // The same decisions from real configuration sources.
  const load = (cmdline: string, env: NodeJS.ProcessEnv = {}) => loadConfig({ argv: [], env, cmdline, readFile: () => '' }).config;
  t.equal(chooseServerAddress(load('quiet agent.use_vsock=false'), both), 'serial://agent.channel.0', 'agent.use_vsock=false on the kernel cmdline');
  t.equal(
    chooseServerAddress(load('agent.use_vsock=false', { KATA_AGENT_SERVER_ADDR: 'vsock://-1:2000' }), both),
    'vsock://-1:2000',
    'env address beats use_vsock',
  );
  t.equal(chooseServerAddress(load('agent.server_addr=serial://agent.channel.0'), both), 'serial://agent.channel.0', 'agent.server_addr=serial://...');
  t.equal(chooseServerAddress(load(''), serialOnly), 'serial://agent.channel.0', 'nothing set, only the port exists');

  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'serial-root-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  t.same(probeChannels(root), { vsock: false, serial: false });
  addPort(path.join(root, 'sys'), 'vport2p1', 'agent.channel.0');
  fs.mkdirSync(path.join(root, 'dev'));
  fs.writeFileSync(path.join(root, 'dev', 'vsock'), '');
  const drv = path.join(root, 'sys', 'bus', 'virtio', 'drivers', 'vmw_vsock_virtio_transport');
  fs.mkdirSync(drv, { recursive: true });
  fs.writeFileSync(path.join(drv, 'bind'), '');
  t.same(probeChannels(root), { vsock: false, serial: true }, '/dev/vsock without a bound virtio vsock device is not vsock');
  fs.symlinkSync('../../../../devices/virtio3', path.join(drv, 'virtio3'));
  t.same(probeChannels(root), { vsock: true, serial: true });
});
