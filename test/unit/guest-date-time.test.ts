// SetGuestDateTime through RecordingLibc only: no test may ever set the clock of the machine it runs on.
import t from 'tap';
import { create } from '@bufbuild/protobuf';
import { SetGuestDateTimeRequestSchema } from '../../protos/gen/agent_pb.js';
import { guestDateTimeHandlers, setGuestDateTime } from '../../agent/src/guest/date-time.js';
import { InvalidArgument } from '../../agent/src/errors.js';
import { RecordingLibc } from '../support/recording-libc.js';
import { createLogger } from '../../agent/src/log/logger.js';

const log = createLogger('error');
const req = (Sec: bigint, Usec: bigint) => create(SetGuestDateTimeRequestSchema, { Sec, Usec });

t.test('sets the clock to sec and usec as given', async (t) => {
  const libc = new RecordingLibc();
  const h = guestDateTimeHandlers({ libc, log, guest: true });
  t.same(await h.setGuestDateTime!(req(1764770000n, 999999n), {} as never), {});
  t.same(libc.calls, [{ name: 'settimeofday', args: [1764770000n, 999999n] }]);
});

t.test('usec outside [0, 1e6) and a negative sec are InvalidArgument, and nothing is set', async (t) => {
  const libc = new RecordingLibc();
  for (const [sec, usec] of [
    [1n, -1n],
    [1n, 1_000_000n],
    [1n, 5_000_000n],
    [-1n, 0n],
  ]) {
    t.throws(() => setGuestDateTime({ libc, log, guest: true }, req(sec, usec)), InvalidArgument, `${sec}.${usec}`);
  }
  t.throws(() => setGuestDateTime({ libc, log, guest: true }, req(1n, 1_000_000n)), /usec 1000000/);
  t.same(libc.calls, []);
});

t.test('off the guest (another state root) the clock is left alone and the call refused', async (t) => {
  const libc = new RecordingLibc();
  t.throws(() => setGuestDateTime({ libc, log, guest: false }, req(1764770000n, 0n)), { name: 'FailedPrecondition', message: /not the guest's agent/ });
  t.same(libc.calls, []);
});

t.test('a refusal by the kernel reaches the caller', async (t) => {
  const libc = new RecordingLibc().fail('settimeofday', 1 /* EPERM */);
  t.throws(() => setGuestDateTime({ libc, log, guest: true }, req(1n, 0n)), { code: 'EPERM' });
});
