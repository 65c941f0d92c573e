// containerd's own Go ttrpc client (what kata 3.x's Go shim links) calls the agent. It is built
// from Debian's golang-github-containerd-ttrpc-dev in GOPATH mode, so no module download is needed.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { repoRoot, startAgentProcess } from '../support/agent-process.js';

const GOPATH = '/usr/share/gocode';
const haveGo = spawnSync('go', ['version']).status === 0;
const haveTtrpc = fs.existsSync(path.join(GOPATH, 'src/github.com/containerd/ttrpc/client.go'));
const skip = !haveGo || !haveTtrpc ? 'needs the Debian packages golang-go and golang-github-containerd-ttrpc-dev' : false;

interface Result {
  name: string;
  code: number;
  message: string;
  payload: string;
}

t.test('containerd/ttrpc Go client calls the agent', { skip }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-go-ttrpc-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const bin = path.join(dir, 'client');
  const env = { ...process.env, GO111MODULE: 'off', GOPATH, GOCACHE: path.join(os.tmpdir(), 'kata-go-build-cache'), GOFLAGS: '' };
  const build = spawnSync('go', ['build', '-o', bin, './test/fixtures/go-ttrpc-client/'], { cwd: repoRoot, env, encoding: 'utf8' });
  t.equal(build.status, 0, `go build: ${build.stderr}`);
  if (build.status !== 0) return;

  const agent = await startAgentProcess({ env: { KATA_AGENT_LOG_LEVEL: 'info' } });
  t.teardown(() => agent.stop());
  const run = spawnSync(bin, [agent.socketPath], { encoding: 'utf8', timeout: 60_000 });
  t.equal(run.status, 0, run.stderr);
  const results = new Map((JSON.parse(run.stdout) as Result[]).map((r) => [r.name, r]));
  t.match(results.get('check'), { code: 0, payload: '0801' }, 'Check → HealthCheckResponse{status: SERVING}');
  t.match(results.get('version'), { code: 0, payload: /^0a05302e302e3112/ }, 'Version → grpc_version "0.0.1"');
  t.match(results.get('details'), { code: 0 }, 'GetGuestDetails answers');
  t.match(results.get('unknown'), { code: 12, message: /NoSuchMethod/ }, 'unknown method → UNIMPLEMENTED');
  t.match(results.get('bad-payload'), { code: 3, message: /WaitProcessRequest/ }, 'payload that is not the message → INVALID_ARGUMENT');
  const parallel = [...results.values()].filter((r) => r.name.startsWith('parallel-'));
  t.equal(parallel.length, 32);
  t.ok(
    parallel.every((r) => r.code === 0 && r.payload === '0801'),
    '32 pipelined Checks all answered',
  );
});
