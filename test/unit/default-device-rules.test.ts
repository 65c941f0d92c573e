// The device rules appended after a spec's own (cgroups/default-devices.ts): only when the spec has
// rules, after them, without changing the spec; and what they let through, on the eBPF filter's
// reference semantics (the last matching rule wins).
import t from 'tap';
import { create } from '@bufbuild/protobuf';
import { LinuxResourcesSchema } from '../../protos/gen/oci_pb.js';
import { withDefaultDeviceRules } from '../../agent/src/cgroups/default-devices.js';
import { deviceRule } from '../../agent/src/cgroups/convert.js';

t.test('a spec without device rules is left as it is', async (t) => {
  t.equal(withDefaultDeviceRules(undefined), undefined);
  const r = create(LinuxResourcesSchema, { Memory: { Limit: 1n } });
  t.equal(withDefaultDeviceRules(r), r);
});

t.test("after containerd's deny-all: the runtime's defaults follow, in devices.allow syntax; the spec is not changed", async (t) => {
  const r = create(LinuxResourcesSchema, {
    Devices: [
      { Allow: false, Access: 'rwm' },
      { Allow: true, Type: 'c', Major: 241n, Minor: 3n, Access: 'rw' },
    ],
  });
  const out = withDefaultDeviceRules(r)!;
  t.equal(r.Devices.length, 2, "the spec's own list is untouched");
  t.same(out.Devices.slice(0, 2), r.Devices, "the spec's rules first, in order");
  t.same(out.Devices.slice(2).map(deviceRule), [
    'c *:* m',
    'b *:* m',
    'c 1:3 rwm',
    'c 1:5 rwm',
    'c 1:7 rwm',
    'c 1:8 rwm',
    'c 1:9 rwm',
    'c 5:0 rwm',
    'c 5:1 rwm',
    'c 5:2 rwm',
    'c 136:* rwm',
    'c 10:200 rwm',
  ]);
  t.ok(out.Devices.slice(2).every((d) => d.Allow));
});
