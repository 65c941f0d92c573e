// The accelerator probe's success pattern against the real kernel: under TCG (which runs guest code
// everywhere) our vmlinux must reach the no-root panic the probe waits for, or a good KVM would be
// refused for a pattern that never matches. The failure modes are in test/unit/accel-probe.test.ts.
import t from 'tap';
import { guestSkip, mustRunButCannot } from '../support/guest-skip.js';
import { assetsIn, probeAccelerator } from '../support/qemu.js';

if (mustRunButCannot) t.fail(`CI must run the in-VM tests: ${mustRunButCannot}`);

t.test('our kernel, no initrd, no root: the probe sees guest code run (TCG)', { skip: guestSkip }, async (t) => {
  // Generous: under TCG on a loaded 2-core machine the kernel's init takes seconds; the probe's own
  // 10 s bound is for KVM, where the same boot takes well under one.
  const r = await probeAccelerator('tcg', assetsIn().kernel, 120_000);
  t.ok(r.ok, r.why);
  t.match(r.why, /ran to its no-root panic/);
});
