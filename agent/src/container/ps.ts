// ListProcesses (kata 1.x): "json" is the container's pids as a JSON array; "table" is `ps` output
// (with the host's args, "-ef" by default) cut down to the header and the container's pids.
import { execFileOwned } from '../process/spawn.js';
import { invalidArgument } from '../errors.js';

function runPs(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFileOwned('ps', args, { maxBuffer: 16 << 20 }, (err, out, stderr) => {
      if (err) reject(new Error(`ps ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve(out);
    });
  });
}

export async function listProcesses(pids: number[], format: string, args: string[]): Promise<Uint8Array> {
  if (format === 'json') return Buffer.from(JSON.stringify(pids));
  if (format !== 'table') throw invalidArgument(`ListProcesses format "${format}" is not "table" or "json"`);
  const out = await runPs(args.length > 0 ? args : ['-ef']);
  const lines = out.split('\n');
  const header = lines[0] ?? '';
  const pidCol = header.trim().split(/\s+/).indexOf('PID');
  if (pidCol < 0) throw new Error(`ps ${args.join(' ')}: no PID column in "${header}"`);
  const wanted = new Set(pids);
  const rows = lines.slice(1).filter((l) => l.trim() && wanted.has(Number(l.trim().split(/\s+/)[pidCol])));
  return Buffer.from([header, ...rows].join('\n') + '\n');
}
