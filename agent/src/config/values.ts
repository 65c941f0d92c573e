// Value syntaxes used by kata's kernel-cmdline options of both generations.

export function parseBool(v: string | undefined): boolean {
  // A bare `agent.devmode` (no "=") means true, as in both kata agents.
  if (v === undefined) return true;
  const s = v.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on', 'y', 't'].includes(s)) return true;
  if (['0', 'false', 'no', 'off', 'n', 'f'].includes(s)) return false;
  throw new Error(`"${v}" is not a boolean`);
}

export function parseUint(v: string | undefined): number {
  if (v === undefined || !/^\d+$/.test(v.trim())) throw new Error(`"${v ?? ''}" is not a non-negative integer`);
  const n = Number(v.trim());
  if (!Number.isSafeInteger(n)) throw new Error(`"${v}" is too large`);
  return n;
}

const durationUnits: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** 3.x takes integer seconds ("3"); 1.x took a Go duration ("3s", "1m30s", "500ms"). Returns ms. */
export function parseDurationMs(v: string | undefined): number {
  const s = (v ?? '').trim();
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * durationUnits[m[2]];
    consumed = re.lastIndex;
  }
  if (s === '' || consumed !== s.length) throw new Error(`"${v ?? ''}" is not a duration (seconds, or like 3s, 500ms)`);
  return total;
}
