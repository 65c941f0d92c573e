// Kernel uevents as the netlink socket delivers them: "ACTION@DEVPATH\0KEY=VALUE\0...". One
// datagram is one event, but the socket is read as a stream (linux/uv-handle.ts), and a stream
// may hand over several datagrams in one chunk, so the parser splits on the header token, which is
// the only one without '='.

export interface Uevent {
  /** "add", "remove", "change", "bind", "unbind", "move", "online", "offline". */
  action: string;
  /** Below /sys, from the event's DEVPATH: "/devices/pci0000:00/0000:00:02.0/0000:01:01.0/virtio3/block/vda". */
  devpath: string;
  subsystem: string;
  /** Below /dev ("vda", "sda", "vfio/12"); "" for an event that names no node. */
  devname: string;
  /** The driver lookup key ("virtio:d00000002v00001AF4"); "" if none. */
  modalias: string;
  major?: number;
  minor?: number;
  seqnum?: number;
  env: Record<string, string>;
}

function fromFields(fields: string[]): Uevent | undefined {
  const env: Record<string, string> = {};
  for (const f of fields) {
    const eq = f.indexOf('=');
    if (eq > 0) env[f.slice(0, eq)] = f.slice(eq + 1);
  }
  if (!env.ACTION || !env.DEVPATH) return undefined;
  const num = (k: string) => (env[k] !== undefined && /^\d+$/.test(env[k]) ? Number(env[k]) : undefined);
  return {
    action: env.ACTION,
    devpath: env.DEVPATH,
    subsystem: env.SUBSYSTEM ?? '',
    devname: env.DEVNAME ?? '',
    modalias: env.MODALIAS ?? '',
    major: num('MAJOR'),
    minor: num('MINOR'),
    seqnum: num('SEQNUM'),
    env,
  };
}

/**
 * The events in `data`: whole kernel events, one or more back to back. A header without the
 * ACTION and DEVPATH fields the kernel always sends (or udev's "libudev" messages, which go to
 * another group and never reach this socket) yields nothing.
 */
export function parseUevents(data: Uint8Array): Uevent[] {
  const out: Uevent[] = [];
  let fields: string[] | undefined;
  for (const token of Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8').split('\0')) {
    if (token === '') continue;
    if (!token.includes('=') && token.includes('@')) {
      if (fields) {
        const ev = fromFields(fields);
        if (ev) out.push(ev);
      }
      fields = [];
    } else fields?.push(token);
  }
  if (fields) {
    const ev = fromFields(fields);
    if (ev) out.push(ev);
  }
  return out;
}
