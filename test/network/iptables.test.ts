// Get/SetIPTables against stand-in programs in a temporary folder (never the machine's iptables):
// lookup, stdin, exit status and stderr, a program that hangs, and output past the bound.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { create } from '@bufbuild/protobuf';
import { GetIPTablesRequestSchema, SetIPTablesRequestSchema } from '../../protos/gen/agent_pb.js';
import { iptablesHandlers } from '../../agent/src/network/iptables.js';
import { toRpcError } from '../../agent/src/rpc/status.js';

function folder(t: { teardown(f: () => void): void }, programs: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iptables-unit-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const [name, body] of Object.entries(programs)) fs.writeFileSync(path.join(dir, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return dir;
}

async function failure(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    const e = toRpcError(err);
    return `${e.code}: ${e.message}`;
  }
  return 'OK';
}

const get = (isIpv6 = false) => create(GetIPTablesRequestSchema, { isIpv6 });
const set = (data: string, isIpv6 = false) => create(SetIPTablesRequestSchema, { isIpv6, data: Buffer.from(data) });

t.test('save output is the reply; restore gets the rules on stdin; v6 runs the ip6tables programs', async (t) => {
  const dir = folder(t, {
    'iptables-save': 'echo "*filter v4"',
    'ip6tables-save': 'echo "*filter v6"',
    'iptables-restore': `cat > "${'$'}(dirname "$0")/got4"`,
    'ip6tables-restore': `cat > "${'$'}(dirname "$0")/got6"; echo restored`,
  });
  const h = iptablesHandlers({ dirs: [path.join(dir, 'none'), dir] });
  t.equal(Buffer.from((await h.getIPTables(get())).data).toString(), '*filter v4\n');
  t.equal(Buffer.from((await h.getIPTables(get(true))).data).toString(), '*filter v6\n');
  t.equal((await h.setIPTables(set('*nat\nCOMMIT\n'))).data.length, 0);
  t.equal(fs.readFileSync(path.join(dir, 'got4'), 'utf8'), '*nat\nCOMMIT\n');
  t.equal(Buffer.from((await h.setIPTables(set('*raw\nCOMMIT\n', true))).data).toString(), 'restored\n');
  t.equal(fs.readFileSync(path.join(dir, 'got6'), 'utf8'), '*raw\nCOMMIT\n');
});

t.test('not installed: FAILED_PRECONDITION naming the program and where it was looked for', async (t) => {
  const dir = folder(t, {});
  const h = iptablesHandlers({ dirs: [dir] });
  t.equal(await failure(h.getIPTables(get(true))), `9: GetIPTables: ip6tables-save is not installed in the guest (looked in ${dir})`);
  t.equal(await failure(h.setIPTables(set('x'))), `9: SetIPTables: iptables-restore is not installed in the guest (looked in ${dir})`);
});

t.test("a refused rule set is INVALID_ARGUMENT with the tool's words; a failing save is INTERNAL", async (t) => {
  const dir = folder(t, {
    'iptables-restore': 'echo "iptables-restore: line 2 failed" >&2; exit 1',
    'iptables-save': 'echo "iptables-save v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied" >&2; exit 4',
  });
  const h = iptablesHandlers({ dirs: [dir] });
  t.equal(
    await failure(h.setIPTables(set('*filter\n-A NOPE\nCOMMIT\n'))),
    '3: SetIPTables: iptables-restore ended with status 1: iptables-restore: line 2 failed',
  );
  t.match(await failure(h.getIPTables(get())), /^13: GetIPTables: iptables-save ended with status 4: iptables-save v1\.8\.9 .*Permission denied$/);
});

t.test('a program that hangs is killed at the timeout: DEADLINE_EXCEEDED, and nothing is left running', async (t) => {
  const dir = folder(t, { 'iptables-save': `echo $$ > "${'$'}(dirname "$0")/pid"; exec sleep 60` });
  const h = iptablesHandlers({ dirs: [dir], timeoutMs: 300 });
  t.equal(await failure(h.getIPTables(get())), '4: GetIPTables: iptables-save did not finish within 300 ms');
  const pid = Number(fs.readFileSync(path.join(dir, 'pid'), 'utf8'));
  await new Promise((r) => setTimeout(r, 100));
  t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, 'the program is gone');
});

t.test('rules past the bound are refused before anything runs', async (t) => {
  const dir = folder(t, { 'iptables-restore': `touch "${'$'}(dirname "$0")/ran"` });
  const h = iptablesHandlers({ dirs: [dir] });
  t.match(await failure(h.setIPTables(set('x'.repeat((16 << 20) + 1)))), /^3: SetIPTables: 16777217 bytes of rules, more than 16777216$/);
  t.notOk(fs.existsSync(path.join(dir, 'ran')));
});
