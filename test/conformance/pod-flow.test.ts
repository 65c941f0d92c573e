// Root-only conformance: one pod exactly as the kata 3.x shim (ttrpc) and the kata 1.x runtime (gRPC)
// drive it (test/support/kata-pod.ts), against the agent on a unix socket. The hypervisor's share is
// the one thing a host test cannot have: the libc seam turns the "kataShared" 9p/virtio-fs mount into
// a bind mount of a host directory (recording the exact call), so everything from the mount point on
// (the rootfs looked up in the share, the per-container binds) is the real path.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { libc as realLibc } from '../../agent/src/linux/index.js';
import type { Libc } from '../../agent/src/linux/libc.js';
import { MS_BIND } from '../../agent/src/linux/libc.js';
import { AgentHarness } from '../support/agent-harness.js';
import { buildBusyboxRootfs, containerTestSkipReason } from '../support/busybox-rootfs.js';
import { appId, hostShareFiles, podUid, runPod, sandboxId, sharedDir, type Generation } from '../support/kata-pod.js';
import { leftovers } from '../support/leftovers.js';

const skip = containerTestSkipReason();

interface ShareMount {
  source: string | null;
  target: string;
  fstype: string | null;
  flags: number;
  data: string | null;
}

/** The real libc, except that the pod share's mount binds `hostShare` instead. */
function withHostShare(hostShare: string, seen: ShareMount[]): Libc {
  const real = realLibc();
  return new Proxy(real, {
    get(target, prop, receiver) {
      if (prop !== 'mount') return Reflect.get(target, prop, receiver);
      return (source: string | null, dest: string, fstype: string | null, flags: number, data: string | null) => {
        if (source === 'kataShared' && (fstype === '9p' || fstype === 'virtiofs')) {
          seen.push({ source, target: dest, fstype, flags, data });
          return real.mount(hostShare, dest, null, MS_BIND, null);
        }
        return real.mount(source, dest, fstype, flags, data);
      };
    },
  });
}

/** The agent's own cgroup directory in the memory hierarchy (v1) or the unified one (v2). */
function ownCgroupDir(): string {
  const lines = fs.readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n');
  const mem = lines.find((l) => l.split(':')[1]?.split(',').includes('memory'));
  if (mem) return path.join('/sys/fs/cgroup/memory', mem.split(':')[2]);
  return path.join('/sys/fs/cgroup', lines.find((l) => l.startsWith('0::'))!.slice(3));
}

for (const [gen, wire] of [
  ['3.x', 'ttrpc'],
  ['1.x', 'grpc'],
] as [Generation, 'ttrpc' | 'grpc'][]) {
  t.test(`kata ${gen} pod over ${wire} on a unix socket`, { skip }, async (t) => {
    const seen: ShareMount[] = [];
    const hostShareRoot = fs.mkdtempSync('/tmp/kata-pod-share-');
    // The kata 1.x runtime's grpc-go sends its dial target as :authority, slashes and all.
    const h = await AgentHarness.start(
      { libc: withHostShare(hostShareRoot, seen) },
      wire,
      wire === 'grpc' ? `unix:////run/vc/sbs/${sandboxId}/kata.sock` : undefined,
    );
    t.teardown(async () => {
      await h.stop();
      fs.rmSync(hostShareRoot, { recursive: true, force: true });
    });
    // What the host put in the share before each CreateContainer: the rootfs and the CRI files.
    for (const cid of [sandboxId, appId]) buildBusyboxRootfs(path.join(hostShareRoot, cid));
    for (const [name, content] of Object.entries(hostShareFiles(appId))) fs.writeFileSync(path.join(hostShareRoot, name), content);

    // CAP_SYS_RESOURCE (bit 24) is what lowering oom_score_adj needs; without it kata's -998 cannot
    // be set here, so the pause container asks for 0 (the in-VM replay keeps -998).
    const capEff = BigInt('0x' + /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]);
    const paths = { stateRoot: h.stateRoot, pauseOomScoreAdj: (capEff >> 24n) & 1n ? -998 : 0 };
    if (paths.pauseOomScoreAdj === 0) t.comment('no CAP_SYS_RESOURCE here: the pause container asks for OOMScoreAdj 0 instead of -998');
    const appGroup = path.join(ownCgroupDir(), 'kubepods', 'besteffort', `pod${podUid}`, appId);
    let appGroupPids: number[] = [];
    const run = await runPod(
      gen,
      paths,
      (m, req, ms) => h.call(m, req, ms),
      () => h.check(),
      {
        appStarted: () => void (appGroupPids = fs.readFileSync(path.join(appGroup, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number)),
      },
    );
    t.comment(`RPC sequence: ${run.sequence.join(' → ')}`);

    t.same(
      seen,
      [
        gen === '3.x'
          ? { source: 'kataShared', target: `${sharedDir(paths)}/`, fstype: 'virtiofs', flags: 0, data: null }
          : {
              source: 'kataShared',
              target: `${sharedDir(paths)}/`,
              fstype: '9p',
              flags: seen[0]?.flags,
              data: 'trans=virtio,version=9p2000.L,cache=mmap,msize=8192',
            },
      ],
      'the share is mounted with the source, type and options the host sent',
    );
    if (gen === '1.x') t.ok((seen[0]?.flags ?? 0) & 4, 'nodev became MS_NODEV');
    t.equal(
      run.appStdout,
      'web-0 up: web-0 nameserver 192.0.2.53\nbye\n',
      'app output to its end: hostname and the bound resolv.conf, then its SIGTERM handler',
    );
    t.equal(run.appStderr, 'warming\n');
    t.same(run.probe, { stdout: 'web-0\n', status: 0 }, 'exec probe');
    t.match(run.tty.output, /\/dev\/pts\/\d+\r?\n/, 'tty names a pty of the container');
    t.notMatch(run.tty.output, /not a tty/);
    t.match(run.tty.output, /40 120\r?\n/, 'first resize');
    t.match(run.tty.output, /done-42/, 'stdin reached the shell');
    t.match(run.tty.output, /50 132\r?\n/, 'second resize');
    t.equal(run.tty.status, 3, 'exit status of the terminal exec');
    t.equal(run.appStatus, 0, 'the app exited through its handler');
    t.equal(run.pauseStatus, 0);
    t.ok(run.guestDetails.agentDetails?.storageHandlers.includes(gen === '3.x' ? 'virtio-fs' : '9p'), 'GetGuestDetails lists the share driver');
    t.ok(run.stats.cgroupStats?.memoryStats, 'StatsContainer answered with cgroup stats');
    t.ok(appGroupPids.length > 0, `the app ran in its Linux.CgroupsPath group (${appGroup})`);
    t.notOk(fs.existsSync(path.join(ownCgroupDir(), 'kubepods', 'besteffort', `pod${podUid}`)), 'the pod’s kubepods groups are gone');
    t.same(leftovers('none', h.dir).mounts, [], 'no mount left below the agent’s state');
  });
}
