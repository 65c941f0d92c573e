// A minimal QMP client for the in-VM tests: one command at a time (answers matched by order), and
// events kept so a test can wait for one (DEVICE_DELETED after device_del).
import net from 'node:net';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
}

export interface Qmp {
  cmd(execute: string, args?: object): Promise<unknown>;
  /** The first event named `name` (already received or still to come) for which `match` holds. */
  event(name: string, match?: (data: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<QmpEvent>;
  close(): void;
}

export async function qmp(sock: string): Promise<Qmp> {
  const s = net.connect(sock);
  await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
  let buf = '';
  const waiting: ((m: Record<string, unknown>) => void)[] = [];
  const events: QmpEvent[] = [];
  const eventWaiters: { name: string; match: (d: Record<string, unknown>) => boolean; resolve: (e: QmpEvent) => void }[] = [];
  s.on('data', (d) => {
    buf += d.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const m = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
      buf = buf.slice(nl + 1);
      if ('return' in m || 'error' in m || 'QMP' in m) waiting.shift()?.(m);
      else if (typeof m.event === 'string') {
        const e = m as unknown as QmpEvent;
        events.push(e);
        for (const w of [...eventWaiters]) {
          if (w.name === e.event && w.match(e.data ?? {})) {
            eventWaiters.splice(eventWaiters.indexOf(w), 1);
            w.resolve(e);
          }
        }
      }
    }
  });
  const next = () => new Promise<Record<string, unknown>>((r) => waiting.push(r));
  await next(); // greeting
  const cmd = async (execute: string, args?: object) => {
    const answer = next();
    s.write(JSON.stringify({ execute, arguments: args }) + '\n');
    const m = await answer;
    if ('error' in m) throw new Error(`QMP ${execute}: ${JSON.stringify(m.error)}`);
    return m.return;
  };
  await cmd('qmp_capabilities');
  const event = (name: string, match: (d: Record<string, unknown>) => boolean = () => true, timeoutMs = 60_000) => {
    const seen = events.find((e) => e.event === name && match(e.data ?? {}));
    if (seen) return Promise.resolve(seen);
    return new Promise<QmpEvent>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no QMP ${name} event within ${timeoutMs} ms`)), timeoutMs);
      eventWaiters.push({
        name,
        match,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
    });
  };
  return { cmd, event, close: () => s.destroy() };
}
