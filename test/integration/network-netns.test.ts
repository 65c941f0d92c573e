// Root-only: the network RPCs against a real kernel. bin/kata-agent runs inside a network namespace
// this test makes (`ip netns exec`: unshare(CLONE_NEWNET) would move only one thread of a Node
// process), holding a veth pair with fixed MACs; each RPC is checked against what `ip -j` then reports.
// TEST-NET addresses only (192.0.2.0/24, 2001:db8::/32). The veth's peer stays down, so no packet can
// leave the pod side of the pair.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { create, fromBinary, toBinary, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import t from 'tap';
import { connect } from '../../agent-ctl/src/connect.js';
import { CallError, GrpcClient, type RpcClient } from '../../agent-ctl/src/grpc-client.js';
import { TtrpcClient } from '../../agent-ctl/src/ttrpc-client.js';
import { AgentService } from '../../protos/gen/agent_pb.js';
import { IPFamily } from '../../protos/gen/types_pb.js';
import { agentBin } from '../support/agent-process.js';

type Methods = typeof AgentService.method;
const ns = `kata-net-test-${process.pid}`;
const podMac = '02:42:c0:00:02:0a';
const peerMac = '02:42:c0:00:02:0b';

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  if (spawnSync('ip', ['-V']).status !== 0) return 'needs iproute2 (`ip`)';
  return false;
}

function iptablesSkip(): string | false {
  return spawnSync('iptables-save', ['--version']).status === 0 && spawnSync('ip6tables-save', ['--version']).status === 0
    ? false
    : "needs Debian's iptables package (iptables-save/-restore)";
}

/** The machine's own v4 and v6 rules, counters dropped. */
function hostRules(): string {
  return ['iptables-save', 'ip6tables-save']
    .map((c) =>
      spawnSync(c, [], { encoding: 'utf8' })
        .stdout.replace(/\[\d+:\d+\]/g, '')
        .replace(/^#.*$/gm, ''),
    )
    .join('\n');
}

function ip(...args: string[]): string {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}
/** `ip -j` in the test's namespace, parsed. */
const ipj = <T = Record<string, unknown>[]>(...args: string[]): T => JSON.parse(ip('-n', ns, '-j', ...args) || '[]') as T;

interface Agent {
  call<K extends keyof Methods>(wire: 'ttrpc' | 'grpc', m: K, req: MessageInitShape<Methods[K]['input']>): Promise<MessageShape<Methods[K]['output']>>;
  /** "OK" or "CODE: message". */
  status<K extends keyof Methods>(m: K, req: MessageInitShape<Methods[K]['input']>): Promise<string>;
  stop(): Promise<void>;
}

async function startAgentInNetns(dir: string): Promise<Agent> {
  const address = `unix://${dir}/agent.sock`;
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, agentBin, '--state-root', `${dir}/state`], {
    env: { ...process.env, KATA_AGENT_SERVER_ADDR: address, KATA_AGENT_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await new Promise<void>((resolve, reject) => {
    const timer = setInterval(() => stderr.includes('"msg":"agent listening"') && (clearInterval(timer), resolve()), 20);
    child.once('exit', (code) => (clearInterval(timer), reject(new Error(`agent exited with ${code}: ${stderr}`))));
  });
  const clients: Partial<Record<'ttrpc' | 'grpc', RpcClient>> = {};
  const client = async (wire: 'ttrpc' | 'grpc') =>
    (clients[wire] ??= wire === 'ttrpc' ? new TtrpcClient(await connect(address, 5000)) : new GrpcClient(await connect(address, 5000)));
  const call: Agent['call'] = async (wire, method, req) => {
    const m = AgentService.method[method];
    const bytes = await (await client(wire)).call('grpc.AgentService', m.name, toBinary(m.input, create(m.input, req as never)), 20_000);
    return fromBinary(m.output, bytes) as never;
  };
  return {
    call,
    async status(method, req) {
      try {
        await call('ttrpc', method, req);
        return 'OK';
      } catch (err) {
        if (err instanceof CallError) return err.message;
        throw err;
      }
    },
    async stop() {
      for (const c of Object.values(clients)) c.close();
      // `ip netns exec` execs the agent: this pid is the agent's.
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGTERM');
      await exited;
    },
  };
}

t.test('network RPCs in a network namespace', { skip: skipReason() }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-net-test-'));
  ip('netns', 'add', ns);
  let agent: Agent | undefined;
  t.teardown(async () => {
    await agent?.stop();
    spawnSync('ip', ['netns', 'del', ns]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  ip('-n', ns, 'link', 'add', 'veth0', 'address', podMac, 'type', 'veth', 'peer', 'name', 'veth1', 'address', peerMac);
  agent = await startAgentInNetns(dir);
  const a = agent;

  await t.test('the kata 3.x sequence: UpdateInterface, UpdateRoutes, AddARPNeighbors (kata-pod-flow rows 2-4)', async (t) => {
    // As the 3.x runtime sends them for a CNI veth: the veth's MAC, mask "24", the host veth's flags.
    t.equal(
      await a.status('updateInterface', { interface: { name: 'eth0', hwAddr: '02:42:C0:00:02:99', mtu: 1500n, type: 'veth' } }),
      'INTERNAL: update interface: Link not found (hwAddr 02:42:C0:00:02:99)',
      'a NIC not (yet) there: the wording 3.x retries on',
    );
    const iface = await a.call('ttrpc', 'updateInterface', {
      interface: {
        device: '',
        name: 'eth0',
        IPAddresses: [{ family: IPFamily.v4, address: '192.0.2.10', mask: '24' }],
        mtu: 1480n,
        hwAddr: podMac.toUpperCase(),
        devicePath: '',
        type: 'veth',
        rawFlags: 0x1003,
      },
    });
    const [link] = ipj<{ ifname: string; mtu: number; address: string; flags: string[]; addr_info: { family: string; local: string; prefixlen: number }[] }[]>(
      'addr',
      'show',
      'dev',
      'eth0',
    );
    t.match(link, { ifname: 'eth0', mtu: 1480, address: podMac });
    t.ok(link.flags.includes('UP'), 'up');
    t.same(
      link.addr_info.filter((x) => x.family === 'inet').map((x) => `${x.local}/${x.prefixlen}`),
      ['192.0.2.10/24'],
    );
    t.match(iface, { name: 'eth0', mtu: 1480n, hwAddr: podMac, type: 'veth', IPAddresses: [{ family: IPFamily.v4, address: '192.0.2.10', mask: '24' }] });
    t.equal(iface.IPAddresses.length, link.addr_info.length, 'the reply lists what the kernel has');

    const routes = await a.call('ttrpc', 'updateRoutes', {
      routes: {
        Routes: [
          { dest: '', gateway: '192.0.2.1', device: 'eth0', source: '', scope: 0, family: IPFamily.v4, flags: 0, mtu: 0 },
          { dest: '192.0.2.0/24', gateway: '', device: 'eth0', source: '192.0.2.10', scope: 253, family: IPFamily.v4, flags: 0, mtu: 0 },
        ],
      },
    });
    const v4 = ipj<{ dst: string; gateway?: string; dev: string; prefsrc?: string; scope?: string; protocol?: string }[]>(
      '-4',
      'route',
      'show',
      'table',
      'main',
    );
    t.same(
      v4.map((r) => [r.dst, r.gateway ?? '', r.dev, r.prefsrc ?? '', r.scope ?? 'global', r.protocol ?? 'boot']),
      [
        ['default', '192.0.2.1', 'eth0', '', 'global', 'boot'],
        ['192.0.2.0/24', '', 'eth0', '192.0.2.10', 'link', 'boot'],
      ],
    );
    t.same(
      routes.Routes.filter((r) => r.family === IPFamily.v4).map((r) => [
        r.dest || 'default',
        r.gateway,
        r.device,
        r.source,
        r.scope === 253 ? 'link' : 'global',
      ]),
      v4.map((r) => [r.dst, r.gateway ?? '', r.dev, r.prefsrc ?? '', r.scope ?? 'global']),
      'the reply lists the routes now set',
    );

    await a.call('ttrpc', 'addARPNeighbors', {
      neighbors: {
        ARPNeighbors: [
          { toIPAddress: { family: IPFamily.v4, address: '169.254.1.1', mask: '' }, device: 'eth0', lladdr: 'ee:ee:ee:ee:ee:ee', state: 128, flags: 0 },
        ],
      },
    });
    const neigh = ipj<{ dst: string; dev: string; lladdr: string; state: string[] }[]>('neigh', 'show', 'dev', 'eth0');
    t.same(
      neigh.map((n) => [n.dst, n.lladdr, n.state]),
      [['169.254.1.1', 'ee:ee:ee:ee:ee:ee', ['PERMANENT']]],
    );
  });

  await t.test('IPv6, MTU and readdressing over gRPC (1.x); ListInterfaces and ListRoutes match ip', async (t) => {
    await a.call('grpc', 'updateInterface', {
      interface: {
        name: 'eth0',
        hwAddr: podMac,
        mtu: 1400n,
        IPAddresses: [
          { family: IPFamily.v4, address: '192.0.2.20', mask: '24' },
          { family: IPFamily.v6, address: '2001:db8::20', mask: '64' },
        ],
      },
    });
    // 1.x routes carry no family: the addresses give it.
    await a.call('grpc', 'updateRoutes', {
      routes: {
        Routes: [
          { dest: '', gateway: '2001:db8::1', device: 'eth0' },
          { dest: '2001:db8:1::/48', device: 'eth0', mtu: 1300 },
          { dest: '192.0.2.0/24', source: '192.0.2.20', scope: 253, device: 'eth0' },
          // Reachable only through the link route after it: the kernel refuses it unless that one is set first.
          { dest: '198.51.100.0/24', gateway: '203.0.113.1', device: 'eth0' },
          { dest: '203.0.113.0/24', scope: 253, device: 'eth0' },
        ],
      },
    });
    const addrs = ipj<{ ifname: string; mtu: number; address: string; addr_info: { local: string; prefixlen: number }[] }[]>('addr');
    const list = await a.call('grpc', 'listInterfaces', {});
    t.same(
      list.Interfaces.map((i) => [i.name, Number(i.mtu), i.hwAddr, i.IPAddresses.map((x) => `${x.address}/${x.mask}`).sort()]),
      addrs.map((l) => [l.ifname, l.mtu, l.address, l.addr_info.map((x) => `${x.local}/${x.prefixlen}`).sort()]),
    );
    t.same(
      addrs
        .find((l) => l.ifname === 'eth0')!
        .addr_info.map((x) => `${x.local}/${x.prefixlen}`)
        .sort(),
      ['192.0.2.20/24', '2001:db8::20/64'],
      'the old address is gone',
    );
    const v6 = ipj<{ dst: string; gateway?: string; dev: string; metrics?: { mtu: number }[] }[]>('-6', 'route', 'show', 'table', 'main');
    t.ok(
      v6.some((r) => r.dst === 'default' && r.gateway === '2001:db8::1' && r.dev === 'eth0'),
      'IPv6 default route',
    );
    t.ok(
      v6.some((r) => r.dst === '2001:db8:1::/48' && r.metrics?.[0]?.mtu === 1300),
      'route MTU',
    );
    t.ok(
      ipj<{ dst: string; gateway?: string }[]>('-4', 'route').some((r) => r.dst === '198.51.100.0/24' && r.gateway === '203.0.113.1'),
      'a gateway on a link route given after it',
    );
    const listed = (await a.call('grpc', 'listRoutes', {})).Routes;
    const shown = [...ipj<{ dst: string; gateway?: string; dev: string }[]>('-4', 'route', 'show', 'table', 'main'), ...v6];
    t.same(
      listed.map((r) => [r.dest || 'default', r.gateway, r.device]).sort(),
      shown.map((r) => [r.dst, r.gateway ?? '', r.dev]).sort(),
      'ListRoutes lists what ip shows for the main table',
    );
    t.match(
      listed.find((r) => r.dest === '2001:db8:1::/48'),
      { family: IPFamily.v6, mtu: 1300 },
    );
  });

  await t.test('bad input is INVALID_ARGUMENT and changes nothing', async (t) => {
    const before = ip('-n', ns, 'route', 'show', 'table', 'all');
    t.equal(
      await a.status('updateRoutes', {
        routes: {
          Routes: [
            { dest: '192.0.2.0/24', device: 'eth0', scope: 253 },
            { dest: '', gateway: '192.0.2.1', device: 'eth9' },
          ],
        },
      }),
      'INVALID_ARGUMENT: routes[1].device: unknown device "eth9"',
    );
    t.equal(
      await a.status('updateInterface', { interface: { name: 'eth0', hwAddr: podMac, IPAddresses: [{ address: '192.0.2.10', mask: '255.0.255.0' }] } }),
      'INVALID_ARGUMENT: interface.IPAddresses[0].mask: malformed mask "255.0.255.0" (a prefix length 0-32 expected)',
    );
    t.equal(
      await a.status('addARPNeighbors', {
        neighbors: { ARPNeighbors: [{ toIPAddress: { address: '169.254.1.2' }, device: 'eth0', lladdr: 'zz:ee:ee:ee:ee:ee' }] },
      }),
      'INVALID_ARGUMENT: neighbors[0].lladdr: malformed MAC address "zz:ee:ee:ee:ee:ee"',
    );
    t.equal(ip('-n', ns, 'route', 'show', 'table', 'all'), before);
    t.match(
      await a.status('updateRoutes', { routes: { Routes: [{ dest: '198.51.100.0/24', gateway: '203.0.113.1', device: 'eth0' }] } }),
      /^INTERNAL: RTM_NEWROUTE 198\.51\.100\.0\/24 via 203\.0\.113\.1 dev eth0 scope 0: ENETUNREACH/,
      'a kernel refusal names the route and the errno',
    );
  });

  await t.test('GetIPTables / SetIPTables: the pod namespace rules, v4 and v6, through iptables-save/-restore', { skip: iptablesSkip() }, async (t) => {
    const hostBefore = hostRules();
    const v4 = Buffer.from(
      [
        '*filter',
        ':INPUT ACCEPT [0:0]',
        ':FORWARD DROP [0:0]',
        ':OUTPUT ACCEPT [0:0]',
        '-A INPUT -s 192.0.2.0/24 -p tcp -m tcp --dport 8080 -j DROP',
        'COMMIT',
        '',
      ].join('\n'),
    );
    t.equal((await a.call('ttrpc', 'setIPTables', { isIpv6: false, data: v4 })).data.length, 0, 'iptables-restore prints nothing');
    const inNs = spawnSync('ip', ['netns', 'exec', ns, 'iptables-save', '-t', 'filter'], { encoding: 'utf8' }).stdout;
    t.match(inNs, /-A INPUT -s 192\.0\.2\.0\/24 -p tcp -m tcp --dport 8080 -j DROP/, 'the rule is in the namespace');
    t.match(inNs, /:FORWARD DROP/);
    const got = Buffer.from((await a.call('ttrpc', 'getIPTables', { isIpv6: false })).data).toString('utf8');
    t.match(got, /\*filter[\s\S]*-A INPUT -s 192\.0\.2\.0\/24 -p tcp -m tcp --dport 8080 -j DROP[\s\S]*COMMIT/, 'GetIPTables reads it back');

    const v6 = Buffer.from(['*filter', ':INPUT ACCEPT [0:0]', '-A INPUT -s 2001:db8::/32 -j DROP', 'COMMIT', ''].join('\n'));
    await a.call('ttrpc', 'setIPTables', { isIpv6: true, data: v6 });
    t.match(Buffer.from((await a.call('ttrpc', 'getIPTables', { isIpv6: true })).data).toString('utf8'), /-A INPUT -s 2001:db8::\/32 -j DROP/);
    t.notMatch(Buffer.from((await a.call('ttrpc', 'getIPTables', { isIpv6: false })).data).toString('utf8'), /2001:db8/, 'v4 and v6 tables apart');

    // A whole rule set replaces the table: the old INPUT rule goes.
    await a.call('ttrpc', 'setIPTables', { data: Buffer.from('*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n') });
    t.notMatch(Buffer.from((await a.call('ttrpc', 'getIPTables', {})).data).toString('utf8'), /--dport 8080/);

    const bad = await a.status('setIPTables', { data: Buffer.from('*filter\n-A INPUT -j NO_SUCH_TARGET\nCOMMIT\n') });
    t.match(bad, /^INVALID_ARGUMENT: SetIPTables: iptables-restore ended with status \d+: /, 'a rule set iptables-restore refuses, with its words');
    t.equal(await a.status('getIPTables', {}), 'OK', 'the agent keeps serving');
    t.equal(hostRules(), hostBefore, "the test machine's own rules are untouched");
  });

  await agent.stop();
  agent = undefined;
  spawnSync('ip', ['netns', 'del', ns]);
  t.notOk(ip('netns', 'list').includes(ns), 'the namespace is gone');
});
