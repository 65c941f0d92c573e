// Our yamux against hashicorp/yamux itself (the library in kata 1.x's agent and proxy), both ways:
// a Go host drives our server, and our client drives a Go server. Needs Debian's golang-go and
// golang-github-hashicorp-yamux-dev (CI installs them); without them the tests skip and say so.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { connectYamuxUnix } from '../../agent/src/transport/yamux/client.js';
import { INITIAL_WINDOW } from '../../agent/src/transport/yamux/frame.js';
import { serveYamux } from '../../agent/src/transport/yamux/server.js';
import type { YamuxSession } from '../../agent/src/transport/yamux/session.js';
import { readAll } from './pair.js';

const source = path.resolve(__dirname, '../../../test/yamux/interop/main.go');
const gopath = '/usr/share/gocode';
const yamuxSrc = path.join(gopath, 'src/github.com/hashicorp/yamux/session.go');

function missing(): string | undefined {
  if (spawnSync('go', ['version']).status !== 0) return 'no Go toolchain (apt-get install golang-go)';
  if (!fs.existsSync(yamuxSrc)) return `no ${yamuxSrc} (apt-get install golang-github-hashicorp-yamux-dev)`;
  return undefined;
}

const skip = missing();
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'yamux-interop-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
const bin = path.join(work, 'interop');

function build(): void {
  const r = spawnSync('go', ['build', '-o', bin, source], {
    env: { ...process.env, GO111MODULE: 'off', GOPATH: gopath, GOCACHE: path.join(os.tmpdir(), 'kata-agent-ts-gocache'), GOFLAGS: '' },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`go build ${source}: ${r.stderr}`);
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], onLine?: (line: string) => void): { done: Promise<Run>; pid: number } {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => {
    const before = stdout.length;
    stdout += c.toString();
    if (onLine) stdout.slice(before).split('\n').filter(Boolean).forEach(onLine);
  });
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  // Whatever happens in the test, the Go process does not outlive it.
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
  });
  return { pid: child.pid!, done: new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr }))) };
}

t.test('hashicorp/yamux interop', { skip }, async (t) => {
  build();

  t.test('a hashicorp client (the kata 1.x host) drives our server', async (t) => {
    const sock = path.join(work, 'ts-server.sock');
    const sessions: YamuxSession[] = [];
    const server = net.createServer((conn) => {
      sessions.push(serveYamux(conn, (s) => s.pipe(s))); // echo, FIN answered with FIN
    });
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    t.teardown(() => server.close());
    const r = await run(['client', sock]).done;
    t.equal(r.code, 0, `Go client exit status (stderr: ${r.stderr.trim()})`);
    t.match(r.stdout, /ping ok true/, 'our server answered hashicorp pings');
    t.match(r.stdout, /echo ok 21 streams/, '20 small streams and one of 8 MB echoed intact');
    t.match(r.stdout, /open streams at end 0/, 'every stream closed cleanly by FIN both ways');
    const s = sessions[0];
    await s.closed;
    t.equal(s.stats.streamsAccepted, 21);
    t.equal(s.stats.pingsAnswered, 2);
    // 8 MB through a 256 KiB window needs at least 31 grants.
    t.ok(s.stats.windowUpdatesOut >= (8 << 20) / INITIAL_WINDOW - 1, `we granted window as we read (${s.stats.windowUpdatesOut} updates)`);
  });

  t.test('our client drives a hashicorp server', async (t) => {
    const sock = path.join(work, 'go-server.sock');
    let ready!: () => void;
    const listening = new Promise<void>((resolve) => (ready = resolve));
    const go = run(['server', sock], (line) => line === 'listening' && ready());
    await listening;
    const client = await connectYamuxUnix(sock, 5000, { pingIntervalMs: 0 });
    t.ok((await client.ping(5000)) >= 0, 'hashicorp answered our ping');
    const sizes = [...Array.from({ length: 20 }, (_, i) => 1000 + i * 5000), 8 << 20];
    const results = await Promise.all(
      sizes.map(async (n) => {
        const data = crypto.randomBytes(n);
        const s = client.open();
        s.end(data);
        return (await readAll(s)).equals(data);
      }),
    );
    t.equal(results.filter(Boolean).length, sizes.length, '21 streams echoed intact, one of 8 MB');
    client.close();
    const r = await go.done;
    t.equal(r.code, 0, `Go server exit status (stderr: ${r.stderr.trim()})`);
    t.match(r.stdout, /served 21 streams/);
  });
});
