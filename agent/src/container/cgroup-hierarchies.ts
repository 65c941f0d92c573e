import fs from 'node:fs';

/** The agent's cgroup v1 hierarchies as mount options ("memory", "cpu,cpuacct"...); [] on a pure v2 host. */
export function v1Hierarchies(selfCgroup = '/proc/self/cgroup'): string[] {
  let text: string;
  try {
    text = fs.readFileSync(selfCgroup, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .map((l) => l.split(':')[1] ?? '')
    .filter((c) => c !== '' && !c.startsWith('name='));
}
