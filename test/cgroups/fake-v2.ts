// A cgroup2 tree in a temp directory that behaves like the kernel's for what the v2 driver touches:
// mkdir creates the interface files of the controllers the parent delegates, "+ctrl" writes to
// cgroup.subtree_control add to it, cgroup.freeze is reflected in cgroup.events, rmdir removes the
// files with the directory.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { CgroupFs } from '../../agent/src/cgroups/files.js';

const ALL = ['cpuset', 'cpu', 'io', 'memory', 'hugetlb', 'pids'];

const controllerFiles: Record<string, Record<string, string>> = {
  cpu: { 'cpu.weight': '100', 'cpu.max': 'max 100000' },
  cpuset: { 'cpuset.cpus': '', 'cpuset.mems': '' },
  io: { 'io.weight': 'default 100', 'io.max': '', 'io.stat': '' },
  memory: {
    'memory.max': 'max',
    'memory.low': '0',
    'memory.swap.max': 'max',
    'memory.swap.current': '0',
    'memory.current': '0',
    'memory.events': 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n',
    'memory.stat': 'anon 0\nfile 0\n',
  },
  pids: { 'pids.max': 'max', 'pids.current': '0' },
  hugetlb: { 'hugetlb.2MB.max': 'max', 'hugetlb.2MB.current': '0', 'hugetlb.2MB.events': 'max 0\n', 'hugetlb.2MB.rsvd.current': '0' },
};

export interface FakeV2 {
  root: string;
  fs: Partial<CgroupFs>;
  /** Files the driver wrote, in order, relative to root. */
  writes: Array<[string, string]>;
  cleanup(): void;
}

export function fakeV2(controllers = ALL): FakeV2 {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-cgroup2-'));
  fs.writeFileSync(path.join(root, 'cgroup.controllers'), controllers.join(' ') + '\n');
  fs.writeFileSync(path.join(root, 'cgroup.subtree_control'), controllers.join(' ') + '\n');
  fs.writeFileSync(path.join(root, 'cgroup.procs'), '');
  const writes: Array<[string, string]> = [];
  const ops: Partial<CgroupFs> = {
    mkdir(dir) {
      fs.mkdirSync(dir);
      const delegated = fs
        .readFileSync(path.join(path.dirname(dir), 'cgroup.subtree_control'), 'utf8')
        .split(/\s+/)
        .filter(Boolean);
      const files: Record<string, string> = {
        'cgroup.controllers': delegated.join(' ') + '\n',
        'cgroup.subtree_control': '\n',
        'cgroup.procs': '',
        'cgroup.events': 'populated 0\nfrozen 0\n',
        'cgroup.freeze': '0\n',
        'cpu.stat': 'usage_usec 0\nuser_usec 0\nsystem_usec 0\n',
      };
      for (const c of delegated) Object.assign(files, controllerFiles[c]);
      for (const [f, v] of Object.entries(files)) fs.writeFileSync(path.join(dir, f), v);
    },
    rmdir(dir) {
      if (fs.readdirSync(dir, { withFileTypes: true }).some((e) => e.isDirectory())) {
        throw Object.assign(new Error(`EBUSY: ${dir}`), { code: 'EBUSY' });
      }
      fs.rmSync(dir, { recursive: true });
    },
    writeFile(file, value) {
      writes.push([path.relative(root, file), value]);
      if (!fs.existsSync(file)) throw Object.assign(new Error(`ENOENT: ${file}`), { code: 'ENOENT' });
      const base = path.basename(file);
      if (base === 'cgroup.subtree_control') {
        const cur = new Set(fs.readFileSync(file, 'utf8').split(/\s+/).filter(Boolean));
        const avail = fs.readFileSync(path.join(path.dirname(file), 'cgroup.controllers'), 'utf8').split(/\s+/);
        const c = value.slice(1);
        if (!avail.includes(c)) throw Object.assign(new Error(`ENOENT: ${c}`), { code: 'ENOENT' });
        if (value.startsWith('+')) cur.add(c);
        else cur.delete(c);
        fs.writeFileSync(file, [...cur].join(' ') + '\n');
      } else if (base === 'cgroup.freeze') {
        fs.writeFileSync(file, value + '\n');
        fs.writeFileSync(path.join(path.dirname(file), 'cgroup.events'), `populated 0\nfrozen ${value.trim()}\n`);
      } else if (base === 'cgroup.procs') {
        fs.appendFileSync(file, value + '\n');
      } else {
        fs.writeFileSync(file, value + '\n');
      }
    },
  };
  return { root, fs: ops, writes, cleanup: () => fs.rmSync(root, { recursive: true, force: true }) };
}
