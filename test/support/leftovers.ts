import fs from 'node:fs';
import path from 'node:path';

function walk(dir: string, match: (name: string) => boolean, out: string[] = [], depth = 0): string[] {
  if (depth > 6) return out;
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    const p = path.join(dir, e.name);
    if (match(e.name)) out.push(p);
    walk(p, match, out, depth + 1);
  }
  return out;
}

/** What a test run with container ids starting with `tag` and files under `dir` left behind. */
export function leftovers(tag: string, dir: string) {
  const mounts = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(dir));
  const cgroups = walk('/sys/fs/cgroup', (n) => n.startsWith(`kata-${tag}`));
  const processes: string[] = [];
  const zombies: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue;
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[1]) !== process.pid) continue;
    if (fields[0] === 'Z') zombies.push(pid);
    else processes.push(`${pid} ${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))}`);
  }
  return { mounts, cgroups, processes, zombies };
}
