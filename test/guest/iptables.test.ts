// Get/SetIPTables in the guest, as a 3.x host sends them (ttrpc): the image's iptables-nft with the
// kernel loading nf_tables and the rule's match modules on demand. The guest has no network device,
// so the rules filter nothing; the test reads them back.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { GetIPTablesRequestSchema, GetIPTablesResponseSchema, SetIPTablesRequestSchema, SetIPTablesResponseSchema } from '../../protos/gen/agent_pb.js';
import { GuestRpc } from '../support/guest-rpc.js';
import { guestSkip, mustRunButCannot } from '../support/guest-skip.js';
import { agentReady, bootGuest } from '../support/qemu.js';

if (mustRunButCannot) t.fail(`CI must run the in-VM tests: ${mustRunButCannot}`);
const agent = 'grpc.AgentService';

t.test('SetIPTables then GetIPTables, v4 and v6, in the guest', { skip: guestSkip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-guest-ipt-'));
  const sock = path.join(dir, 'agent.sock');
  const vm = await bootGuest({ mode: 'initrd', serialSocket: sock, consoleFile: path.join(dir, 'console.log') });
  t.teardown(async () => {
    await vm.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await vm.waitFor(agentReady, 300_000);
  const rpc = await GuestRpc.connect(sock, 10_000, { wire: 'ttrpc' });
  t.teardown(() => rpc.close());
  const get = async (isIpv6: boolean) =>
    Buffer.from((await rpc.call(agent, 'GetIPTables', GetIPTablesRequestSchema, { isIpv6 }, GetIPTablesResponseSchema)).data).toString('utf8');

  const v4 = ['*filter', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', '-A INPUT -s 192.0.2.0/24 -p tcp -m tcp --dport 8080 -j DROP', 'COMMIT', ''].join('\n');
  await rpc.call(agent, 'SetIPTables', SetIPTablesRequestSchema, { data: Buffer.from(v4) }, SetIPTablesResponseSchema);
  t.match(await get(false), /-A INPUT -s 192\.0\.2\.0\/24 -p tcp -m tcp --dport 8080 -j DROP/);

  const v6 = ['*filter', ':INPUT ACCEPT [0:0]', '-A INPUT -s 2001:db8::/32 -j DROP', 'COMMIT', ''].join('\n');
  await rpc.call(agent, 'SetIPTables', SetIPTablesRequestSchema, { isIpv6: true, data: Buffer.from(v6) }, SetIPTablesResponseSchema);
  t.match(await get(true), /-A INPUT -s 2001:db8::\/32 -j DROP/);
  t.notMatch(await get(false), /2001:db8/);

  await t.rejects(
    rpc.call(agent, 'SetIPTables', SetIPTablesRequestSchema, { data: Buffer.from('*filter\n-A INPUT -j NO_SUCH_TARGET\nCOMMIT\n') }, SetIPTablesResponseSchema),
    { code: 3, message: /^INVALID_ARGUMENT: SetIPTables: iptables-restore ended with status \d+: .*NO_SUCH_TARGET/s },
  );
});
