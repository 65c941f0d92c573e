// A device's numbers as sysfs gives them: the "major:minor" line of its `dev` attribute.
import fs from 'node:fs';

/** The numbers in sysfs file `file` (…/dev), or undefined when it is missing or not "major:minor". */
export function readDevNumbers(file: string): { major: number; minor: number } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
  const m = /^(\d+):(\d+)$/.exec(text);
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
}
