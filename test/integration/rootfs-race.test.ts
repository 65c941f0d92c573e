// Root-only: a rootfs whose directory is swapped for a symlink to a host directory while containers
// are created from it (a running container sharing the rootfs can do that). Between the agent's
// check of a mount destination and the helper's use of it, the swap used to send mkdir, mknod and
// mount out of the root. Nothing may appear in the outside directory, and no mount may land there.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { AgentHarness } from '../support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { addMount, busyboxSpec } from '../support/oci-spec.js';
import { leftovers } from '../support/leftovers.js';

const skip = containerTestSkipReason();
const tag = `safety-race${process.pid}`;
const CONTAINERS = 40;

/**
 * Exchanges two paths atomically (renameat2 RENAME_EXCHANGE) in a loop, so the rootfs entry is
 * always either the real directory or the symlink, never missing. Test fixture only: the agent has
 * no use for renameat2, so it is called through koffi here rather than through the agent's libc.
 */
const swapper = `
const koffi = require(process.argv[1]);
const lib = koffi.load('libc.so.6');
const renameat2 = lib.func('int renameat2(int, const char *, int, const char *, unsigned int)');
const [a, b] = [process.argv[2], process.argv[3]];
const deadline = Date.now() + 60000;
let n = 0;
while (Date.now() < deadline) {
  if (renameat2(-100, a, -100, b, 2) !== 0) { console.error('renameat2 failed', koffi.errno()); process.exit(1); }
  if (++n % 1000 === 0 && process.ppid === 1) break;
}
`;

/** mountinfo lines of this process's children (the agent runs in-process: its helpers). */
function helperMounts(): string[] {
  const out: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== process.pid) continue;
      out.push(...fs.readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n'));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function walkAll(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    out.push(p);
    if (e.isDirectory()) out.push(...walkAll(p));
  }
  return out;
}

t.test('a directory swapped for a symlink during CreateContainer never leads outside the rootfs', { skip }, async (t) => {
  const h = await AgentHarness.start();
  const rootfs = buildBusyboxRootfs(`${h.dir}/bb`);
  const outside = `${h.dir}/outside`;
  fs.mkdirSync(outside);
  fs.mkdirSync(`${rootfs}/d`);
  // A bind source inside the rootfs, reached through the swapped directory: with the swap it would
  // be the host's outside/secret, bound into the container.
  fs.writeFileSync(`${rootfs}/d/secret`, 'rootfs\n');
  fs.writeFileSync(`${outside}/secret`, 'host\n');
  fs.symlinkSync(outside, `${rootfs}/d.swap`);
  const child = spawn(process.execPath, ['-e', swapper, require.resolve('koffi'), `${rootfs}/d`, `${rootfs}/d.swap`], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const childExit = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
    await childExit;
    await h.stop();
  });

  const outsideTail = `${path.basename(h.dir)}/outside`;
  const boundFromOutside: string[] = [];
  const results: Record<string, number> = {};
  const failures = new Set<string>();
  for (let i = 0; i < CONTAINERS; i++) {
    const spec = busyboxSpec(rootfs, ['true']);
    addMount(spec, { destination: '/d/x/y', type: 'tmpfs', source: 'tmpfs', options: ['size=64k'] });
    addMount(spec, { destination: '/d/f/file', type: 'bind', source: '/etc/hostname', options: ['bind', 'ro'] });
    addMount(spec, { destination: '/srcbind', type: 'bind', source: `${rootfs}/d/secret`, options: ['bind', 'ro'] });
    spec.Linux!.Devices = [{ Path: '/d/dev/null', Type: 'c', Major: 1n, Minor: 3n, FileMode: 0o666, UID: 0, GID: 0 }];
    const id = `${tag}-${i}`;
    const code = await h.code('createContainer', { containerId: id, OCI: spec });
    // The created init waits in its own mount namespace: no mount there may show a piece of the
    // outside directory (mountinfo's 4th field: the mounted path within its filesystem). Mount
    // points may well be named .../outside/...: a symlink seen by the agent is taken inside the root.
    if (code === 'OK') for (const line of helperMounts()) if (line.split(' ')[3]?.includes(outsideTail)) boundFromOutside.push(line);
    const key = code.split(':')[0];
    results[key] = (results[key] ?? 0) + 1;
    if (code !== 'OK') failures.add(code.replace(id, '<id>'));
    if (code === 'OK') await h.call('removeContainer', { containerId: id });
  }
  process.kill(child.pid!, 'SIGKILL');
  await childExit;
  t.comment(`CreateContainer results with the swap running: ${JSON.stringify(results)}`);
  for (const f of failures) t.comment(f);

  t.same(walkAll(outside), [`${outside}/secret`], 'nothing was created in the directory outside the rootfs');
  t.same(boundFromOutside, [], 'no container got a mount of something outside the rootfs');
  const mounts = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(outside));
  t.same(mounts, [], 'no mount outside the rootfs');
  t.ok((results.OK ?? 0) > 0, 'creates still succeed while the directory is a directory');
  t.same(leftovers(tag, h.dir).cgroups, [], 'no cgroup left');
});
