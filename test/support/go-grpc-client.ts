// Builds and runs test/fixtures/go-grpc-client (the real grpc-go client, as a kata 1.x host) from
// Debian's Go packages in GOPATH mode, so no module download is needed.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { repoRoot } from './agent-process.js';

const GOPATH = '/usr/share/gocode';

/** Why the client cannot be built here, or undefined. */
export function goGrpcMissing(): string | undefined {
  if (spawnSync('go', ['version']).status !== 0) return 'no Go toolchain (apt-get install golang-go)';
  for (const [file, pkg] of [
    ['google.golang.org/grpc/clientconn.go', 'golang-google-grpc-dev'],
    ['github.com/hashicorp/yamux/session.go', 'golang-github-hashicorp-yamux-dev'],
  ]) {
    if (!fs.existsSync(path.join(GOPATH, 'src', file))) return `no ${path.join(GOPATH, 'src', file)} (apt-get install ${pkg})`;
  }
  return undefined;
}

/** Builds the client into `dir`; returns its path, or throws with go build's output. */
export function buildGoGrpcClient(dir: string): string {
  const bin = path.join(dir, 'go-grpc-client');
  const r = spawnSync('go', ['build', '-o', bin, './test/fixtures/go-grpc-client/'], {
    cwd: repoRoot,
    env: { ...process.env, GO111MODULE: 'off', GOPATH, GOCACHE: path.join(os.tmpdir(), 'kata-go-build-cache'), GOFLAGS: '' },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`go build test/fixtures/go-grpc-client: ${r.stderr}`);
  return bin;
}

/** What the client prints: each call's status, the `:authority` it sent, and its yamux pings. */
export interface GoGrpcReport {
  authorities: string[];
  calls: { name: string; code: number; message: string; payload: string }[];
  pingsOk: number;
  pingErrors: string[];
}

/** Runs the client (`unix SOCKET` or `yamux SOCKET`), killed after `timeoutMs` whatever happens. */
export function runGoGrpcClient(bin: string, args: string[], timeoutMs = 90_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const timer = setTimeout(() => process.kill(child.pid!, 'SIGKILL'), timeoutMs);
  return new Promise((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

/** Every call OK: Check SERVING, Version 0.0.1, GetGuestDetails answered. */
export function checkGoGrpcCalls(t: Test, r: GoGrpcReport): void {
  t.ok(r.calls.length >= 3, `${r.calls.length} calls made`);
  const failed = r.calls.filter((c) => c.code !== 0);
  t.same(failed, [], 'every call answered OK');
  for (const c of r.calls) {
    if (c.name.startsWith('check-')) t.equal(c.payload, '0801', `${c.name}: HealthCheckResponse{status: SERVING}`);
    if (c.name.startsWith('version-')) t.match(c.payload, /^0a05302e302e3112/, `${c.name}: grpc_version "0.0.1"`);
  }
  t.ok(
    r.calls.some((c) => c.name.startsWith('details-') && c.code === 0),
    'GetGuestDetails (AgentService) answered',
  );
}
