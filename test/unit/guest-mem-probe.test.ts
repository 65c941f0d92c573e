// MemHotplugByProbe on a temp dir standing in for sysfs (never the host's /sys).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { create } from '@bufbuild/protobuf';
import { MemHotplugByProbeRequestSchema } from '../../protos/gen/agent_pb.js';
import { memHotplugByProbe, memProbeHandlers } from '../../agent/src/guest/mem-probe.js';
import { FailedPrecondition } from '../../agent/src/errors.js';
import { createLogger } from '../../agent/src/log/logger.js';

const log = createLogger('error');
const req = (addrs: bigint[]) => create(MemHotplugByProbeRequestSchema, { memHotplugProbeAddr: addrs });

function fakeSysfs(t: { teardown(f: () => unknown): void }, withProbe: boolean): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-sysfs-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.mkdirSync(`${root}/devices/system/memory`, { recursive: true });
  if (withProbe) fs.writeFileSync(`${root}/devices/system/memory/probe`, '');
  return root;
}

t.test('each address is written to memory/probe as 0x<hex>, one write each', async (t) => {
  const root = fakeSysfs(t, true);
  const probe = `${root}/devices/system/memory/probe`;
  const written: string[] = [];
  // Each write replaces the file's content: a watcher would only see the last, so record per write.
  const orig = fs.writeFileSync;
  t.teardown(() => void (fs.writeFileSync = orig));
  fs.writeFileSync = ((file: fs.PathOrFileDescriptor, data: string | NodeJS.ArrayBufferView, ...rest: never[]) => {
    if (file === probe) written.push(String(data));
    return orig(file, data, ...rest);
  }) as typeof fs.writeFileSync;
  const h = memProbeHandlers({ sysfs: root, log });
  t.same(await h.memHotplugByProbe!(req([0x100000000n, 0x1c0000000n, 0xffffffffffffffffn]), {} as never), {});
  t.same(written, ['0x100000000', '0x1c0000000', '0xffffffffffffffff']);
  t.equal(fs.readFileSync(probe, 'utf8'), '0xffffffffffffffff');
});

t.test('no probe file: FailedPrecondition naming it, and nothing is created', async (t) => {
  const root = fakeSysfs(t, false);
  const probe = `${root}/devices/system/memory/probe`;
  t.throws(() => memHotplugByProbe({ sysfs: root, log }, req([0x100000000n])), FailedPrecondition);
  t.throws(() => memHotplugByProbe({ sysfs: root, log }, req([0x100000000n])), { message: new RegExp(probe.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')) });
  t.notOk(fs.existsSync(probe));
});

t.test('off the guest (no sysfs) nothing is probed and the call is refused', async (t) => {
  t.throws(() => memHotplugByProbe({ sysfs: undefined, log }, req([0x100000000n])), { name: 'FailedPrecondition', message: /not the guest's agent/ });
});
