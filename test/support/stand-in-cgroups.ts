// A small cgroup v1 manager used by the container tests only until the cgroups branch (the real
// driver, agent/src/cgroups/) is merged. It covers what the lifecycle tests touch: memory and pids
// limits, freezer, cpuacct/memory stats and OOM kills (polled from memory.oom_control).
import fs from 'node:fs';
import path from 'node:path';
import { create } from '@bufbuild/protobuf';
import { CgroupStatsSchema, type CgroupStats } from '../../protos/gen/agent_pb.js';
import type { LinuxResources } from '../../protos/gen/oci_pb.js';
import type { Cgroup, CgroupManager } from '../../agent/src/cgroups/cgroup.js';

const controllers = ['memory', 'freezer', 'pids', 'cpuacct', 'cpu'];
const root = '/sys/fs/cgroup';

function ownPaths(): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of fs.readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const [, ctrls, p] = line.split(':');
    if (!ctrls) continue;
    for (const c of ctrls.split(',')) m.set(c, p);
  }
  return m;
}

function readNum(file: string): bigint {
  try {
    return BigInt(fs.readFileSync(file, 'utf8').trim().split(/\s/)[0]);
  } catch {
    return 0n;
  }
}

class StandInCgroup implements Cgroup {
  private readonly dirs = new Map<string, string>();

  constructor(readonly relPath: string, own: Map<string, string>, resources: LinuxResources | undefined) {
    for (const c of controllers) {
      if (!fs.existsSync(path.join(root, c))) continue;
      const dir = path.join(root, c, own.get(c) ?? '/', relPath);
      fs.mkdirSync(dir, { recursive: true });
      this.dirs.set(c, dir);
    }
    if (resources) this.update(resources);
  }

  private file(c: string, f: string): string {
    return path.join(this.dirs.get(c)!, f);
  }

  addProcess(pid: number): void {
    for (const c of this.dirs.keys()) fs.writeFileSync(this.file(c, 'cgroup.procs'), String(pid));
  }

  update(r: LinuxResources): void {
    const limit = r.Memory?.Limit;
    if (limit !== undefined && limit !== 0n) {
      const swap = this.file('memory', 'memory.memsw.limit_in_bytes');
      fs.writeFileSync(this.file('memory', 'memory.limit_in_bytes'), String(limit));
      if (fs.existsSync(swap)) fs.writeFileSync(swap, String(limit));
    }
    const pids = r.Pids?.Limit;
    if (pids !== undefined && pids !== 0n) fs.writeFileSync(this.file('pids', 'pids.max'), pids < 0n ? 'max' : String(pids));
  }

  private async setFreezer(state: 'FROZEN' | 'THAWED'): Promise<void> {
    fs.writeFileSync(this.file('freezer', 'freezer.state'), state);
    while (this.state() !== state) await new Promise((r) => setTimeout(r, 5));
  }

  freeze(): Promise<void> {
    return this.setFreezer('FROZEN');
  }

  thaw(): Promise<void> {
    return this.setFreezer('THAWED');
  }

  state(): 'FROZEN' | 'THAWED' {
    return fs.readFileSync(this.file('freezer', 'freezer.state'), 'utf8').trim() === 'FROZEN' ? 'FROZEN' : 'THAWED';
  }

  pids(): number[] {
    return fs.readFileSync(this.file('memory', 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  }

  stats(): CgroupStats {
    return create(CgroupStatsSchema, {
      cpuStats: { cpuUsage: { totalUsage: readNum(this.file('cpuacct', 'cpuacct.usage')) } },
      memoryStats: {
        usage: {
          usage: readNum(this.file('memory', 'memory.usage_in_bytes')),
          limit: readNum(this.file('memory', 'memory.limit_in_bytes')),
          failcnt: readNum(this.file('memory', 'memory.failcnt')),
          maxUsage: readNum(this.file('memory', 'memory.max_usage_in_bytes')),
        },
      },
      pidsStats: { current: readNum(this.file('pids', 'pids.current')) },
    });
  }

  watchOom(onOom: () => void): () => void {
    const file = this.file('memory', 'memory.oom_control');
    const kills = () => Number(/oom_kill (\d+)/.exec(fs.readFileSync(file, 'utf8'))?.[1] ?? 0);
    let seen = kills();
    const timer = setInterval(() => {
      try {
        const n = kills();
        for (; seen < n; seen++) onOom();
      } catch {
        clearInterval(timer);
      }
    }, 50);
    return () => clearInterval(timer);
  }

  async destroy(): Promise<void> {
    for (const dir of [...this.dirs.values()].reverse()) {
      for (let i = 0; ; i++) {
        try {
          fs.rmdirSync(dir);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
          if (i > 100) throw err;
          await new Promise((r) => setTimeout(r, 10));
        }
      }
    }
  }
}

export function standInCgroupManager(): CgroupManager {
  const own = ownPaths();
  return { version: 'v1', create: (rel, res) => new StandInCgroup(rel, own, res) };
}
