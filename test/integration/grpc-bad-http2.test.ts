// Issue 18 item 1: an HTTP/2 connection that the server ends with a connection error (bad HPACK,
// malformed SETTINGS/HEADERS/DATA) must be closed by the agent, or each one keeps an fd open until
// the agent runs out (with RLIMIT_NOFILE 256, 300 of them made it unreachable on both wires).
import fs from 'node:fs';
import net from 'node:net';
import t from 'tap';
import { badOpenings, grpcUnary } from '../helpers/raw-http2.js';
import { ctlBin, run, startAgentProcess } from '../support/agent-process.js';

const fdCount = (pid: number) => fs.readdirSync(`/proc/${pid}/fd`).length;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `fn` holds, at most `ms`; returns whether it did. */
async function eventually(fn: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) if (fn()) return true;
  return fn();
}

/** Sends `bytes` and keeps the socket open; resolves true once the agent closes it, false after `ms`. */
function sendAndAwaitClose(path: string, bytes: Buffer, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(path);
    const timer = setTimeout(() => {
      c.destroy();
      resolve(false);
    }, ms);
    c.on('error', () => undefined);
    c.resume(); // read the server's SETTINGS and GOAWAY, or its close is never seen
    c.on('end', () => {
      clearTimeout(timer);
      c.destroy();
      resolve(true);
    });
    c.write(bytes);
  });
}

t.test('the agent closes every HTTP/2 connection it ends with an error, and its fd count comes back', async (t) => {
  const agent = await startAgentProcess({ env: { KATA_AGENT_LOG_LEVEL: 'info' } });
  t.teardown(() => agent.stop());
  const dial = () => net.connect(agent.socketPath);
  // Both wires once first, so what they load on first use is not counted as a leak.
  t.equal((await grpcUnary(dial, '/grpc.Health/Check', Buffer.alloc(0), 'localhost')).grpcStatus, '0');
  const ttrpcCheck = () => run(ctlBin, ['connect', '--server-address', agent.address, '--proto', 'ttrpc', '-c', 'Check']);
  t.equal((await ttrpcCheck()).code, 0);
  // The fds of those connections go once the agent has seen them close; wait until the count settles.
  let start = fdCount(agent.pid);
  for (let i = 0; i < 40; i++) {
    await sleep(50);
    const now = fdCount(agent.pid);
    if (now === start) break;
    start = now;
  }

  const openings = [...Array.from({ length: 100 }, () => badOpenings['bad HPACK block']), ...Object.values(badOpenings).flatMap((b) => [b, b, b])];
  const names = [...Array.from({ length: 100 }, () => 'bad HPACK block'), ...Object.keys(badOpenings).flatMap((n) => [n, n, n])];
  const closed: boolean[] = [];
  // Ten at a time: bounded, and enough at once that fds would pile up if they leaked.
  for (let i = 0; i < openings.length; i += 10) {
    closed.push(...(await Promise.all(openings.slice(i, i + 10).map((b) => sendAndAwaitClose(agent.socketPath, b, 5000)))));
  }
  const open = [...new Set(names.filter((_, i) => !closed[i]))];
  t.same(open, [], `the agent closed all ${openings.length} bad connections (left open: ${open.join(', ') || 'none'})`);
  t.ok(await eventually(() => fdCount(agent.pid) <= start, 10_000), `agent fds back to ${start} (now ${fdCount(agent.pid)})`);

  const check = await grpcUnary(dial, '/grpc.Health/Check', Buffer.alloc(0), 'localhost');
  t.equal(check.grpcStatus, '0', 'gRPC Check still answers');
  const ttrpc = await ttrpcCheck();
  t.equal(ttrpc.code, 0, `ttrpc Check still answers (${ttrpc.stderr.trim()})`);
});
