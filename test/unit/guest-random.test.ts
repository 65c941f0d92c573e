// ReseedRandomDev through RecordingLibc only: the RNG of the machine running the tests is never fed.
import t from 'tap';
import { create } from '@bufbuild/protobuf';
import { ReseedRandomDevRequestSchema } from '../../protos/gen/agent_pb.js';
import { RANDOM_DEVICE, randPoolInfo, randomHandlers, reseedRandomDev } from '../../agent/src/guest/random.js';
import { AT_FDCWD, O_CLOEXEC, O_RDWR, RNDADDENTROPY, RNDRESEEDCRNG } from '../../agent/src/linux/libc.js';
import { RecordingLibc } from '../support/recording-libc.js';
import { createLogger } from '../../agent/src/log/logger.js';

const log = createLogger('error');
const req = (data: number[]) => create(ReseedRandomDevRequestSchema, { data: Uint8Array.from(data) });

t.test('struct rand_pool_info: bit count, byte count, then the bytes padded to u32 words', async (t) => {
  const b = randPoolInfo(Uint8Array.from([1, 2, 3, 4, 5]), 5);
  t.same([...b], [5, 0, 0, 0, 5, 0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 0]);
});

t.test("opens /dev/random, adds the bytes with kata's credit, forces a reseed, closes", async (t) => {
  const libc = new RecordingLibc();
  const h = randomHandlers({ libc, log, guest: true });
  t.same(await h.reseedRandomDev!(req([0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04]), {} as never), {});
  t.same(
    libc.calls.map((c) => c.name),
    ['openat', 'ioctlBuf', 'ioctlInt', 'close'],
  );
  t.same(libc.calls[0].args, [AT_FDCWD, RANDOM_DEVICE, O_RDWR | O_CLOEXEC, 0]);
  const [fd, request, buf] = libc.calls[1].args as [number, number, Buffer];
  t.equal(request, RNDADDENTROPY);
  t.equal(request, 0x40085203, "_IOW('R', 3, int[2])");
  t.equal(buf.readInt32LE(0), 8, 'entropy_count: one bit per byte, as kata credits');
  t.equal(buf.readInt32LE(4), 8, 'buf_size in bytes');
  t.same([...buf.subarray(8)], [0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04]);
  t.same(libc.calls[2].args, [fd, RNDRESEEDCRNG, 0]);
  t.same(libc.calls[3].args, [fd]);
});

t.test('no data: no call at all', async (t) => {
  const libc = new RecordingLibc();
  reseedRandomDev({ libc, log, guest: true }, req([]));
  t.same(libc.calls, []);
});

t.test('off the guest (another state root) nothing is done and the call is refused', async (t) => {
  const libc = new RecordingLibc();
  t.throws(() => reseedRandomDev({ libc, log, guest: false }, req([1, 2, 3])), { name: 'FailedPrecondition', message: /not the guest's agent/ });
  t.same(libc.calls, []);
});

t.test('a reseed refused before the CRNG is ready (ENODATA) is not an error; others are, and the fd is closed', async (t) => {
  const early = new RecordingLibc().fail('ioctlInt', 61 /* ENODATA */);
  reseedRandomDev({ libc: early, log, guest: true }, req([1]));
  t.equal(early.calls.at(-1)?.name, 'close');
  const refused = new RecordingLibc().fail('ioctlBuf', 1 /* EPERM */);
  t.throws(() => reseedRandomDev({ libc: refused, log, guest: true }, req([1])), { code: 'EPERM' });
  t.same(
    refused.calls.map((c) => c.name),
    ['openat', 'ioctlBuf', 'close'],
  );
});
