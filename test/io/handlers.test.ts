import t from 'tap';
import { EmptySchema } from '@bufbuild/protobuf/wkt';
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape } from '@bufbuild/protobuf';
import {
  CloseStdinRequestSchema,
  ReadStreamRequestSchema,
  ReadStreamResponseSchema,
  TtyWinResizeRequestSchema,
  WriteStreamRequestSchema,
  WriteStreamResponseSchema,
} from '../../protos/gen/agent_pb.js';
import { ioHandlers } from '../../agent/src/io/handlers.js';
import { createProcessIO, type ProcessIO } from '../../agent/src/io/process-io.js';
import { libc } from '../../agent/src/linux/index.js';
import { createLogger } from '../../agent/src/log/logger.js';
import { dialect1x, dialect3x, type Dialect } from '../../agent/src/rpc/dialect.js';
import { AgentRpcService } from '../../agent/src/rpc/service.js';
import { Code, notFound } from '../../agent/src/rpc/status.js';
import { spawnWithIO } from './spawn-with-io.js';
import { readToEnd } from '../support/end-of-stream.js';

/** The registry stand-in: container "c1", exec ids as registered by each test. */
function setup() {
  const procs = new Map<string, ProcessIO>();
  const lookup = (cid: string, eid: string) => {
    const io = procs.get(`${cid}/${eid}`);
    if (!io) throw notFound(`process ${cid}/${eid} not found`);
    return io;
  };
  const service = new AgentRpcService(createLogger('silent'), [ioHandlers(lookup)], {});
  async function call<I extends DescMessage, O extends DescMessage>(
    method: string,
    input: I,
    output: O,
    req: MessageInitShape<I>,
    dialect: Dialect = dialect3x,
    signal = new AbortController().signal,
  ) {
    const entry = service.lookup('grpc.AgentService', method)!;
    const bytes = await service.dispatch(entry, toBinary(input, create(input, req)), { dialect, signal });
    return fromBinary(output, bytes);
  }
  const read = (execId: string, len = 32768, dialect: Dialect = dialect3x, method = 'ReadStdout') =>
    call(method, ReadStreamRequestSchema, ReadStreamResponseSchema, { containerId: 'c1', execId, len }, dialect);
  const write = (execId: string, data: Uint8Array, dialect: Dialect = dialect3x) =>
    call('WriteStdin', WriteStreamRequestSchema, WriteStreamResponseSchema, { containerId: 'c1', execId, data }, dialect);
  return { procs, call, read, write };
}

t.test('3.x: data, then an end-of-stream error (never an OK answer with empty data)', async (t) => {
  const { procs, read, write } = setup();
  const io = createProcessIO({ terminal: false, pipeSize: 0, libc: libc() });
  procs.set('c1/', io); // exec id "" is the init process
  spawnWithIO(t, io, 'read line; echo "out:$line"; echo "err:$line" >&2');
  t.equal((await write('', Buffer.from('hi\n'))).len, 3);
  t.equal(Buffer.from((await read('')).data).toString(), 'out:hi\n');
  await t.rejects(read(''), { code: Code.INTERNAL, message: 'EOF: stdout of process (init) of container c1 has ended', expected: true });
  t.equal(Buffer.from((await read('', 100, dialect3x, 'ReadStderr')).data).toString(), 'err:hi\n');
  await t.rejects(read('', 100, dialect3x, 'ReadStderr'), { code: Code.INTERNAL, message: 'EOF: stderr of process (init) of container c1 has ended' });
});

t.test('1.x: end of stream is the "EOF" error its hosts expect', async (t) => {
  const { procs, read } = setup();
  const io = createProcessIO({ terminal: false, pipeSize: 0, libc: libc() });
  procs.set('c1/e1', io);
  spawnWithIO(t, io, 'printf x');
  t.equal(Buffer.from((await read('e1', 10, dialect1x)).data).toString(), 'x');
  await t.rejects(read('e1', 10, dialect1x), { code: Code.UNKNOWN, message: 'EOF', expected: true });
});

t.test('empty WriteStdin closes stdin (3.x); CloseStdin does the same', async (t) => {
  const { procs, read, write, call } = setup();
  for (const [eid, close] of [
    ['w', () => write('w', new Uint8Array(0))],
    ['c', () => call('CloseStdin', CloseStdinRequestSchema, EmptySchema, { containerId: 'c1', execId: 'c' })],
  ] as const) {
    const io = createProcessIO({ terminal: false, pipeSize: 0, libc: libc() });
    procs.set(`c1/${eid}`, io);
    spawnWithIO(t, io, 'cat >/dev/null; echo eof-seen');
    await close();
    t.equal(Buffer.from((await read(eid)).data).toString(), 'eof-seen\n', `${eid}: the process saw end of file`);
  }
});

t.test('TtyWinResize: resizes a pty; UNAVAILABLE "no tty" on pipes', async (t) => {
  const { procs, call, read, write } = setup();
  const tty = createProcessIO({ terminal: true, pipeSize: 0, libc: libc() });
  const pipes = createProcessIO({ terminal: false, pipeSize: 0, libc: libc() });
  procs.set('c1/tty', tty);
  procs.set('c1/pipes', pipes);
  spawnWithIO(t, tty, 'read x; stty size');
  spawnWithIO(t, pipes, 'true');
  await call('TtyWinResize', TtyWinResizeRequestSchema, EmptySchema, { containerId: 'c1', execId: 'tty', row: 50, column: 132 });
  await write('tty', Buffer.from('\n'));
  const out = (await readToEnd(() => read('tty'), 'ReadStdout tty')).toString();
  t.equal(out, '\r\n50 132\r\n');
  await t.rejects(
    call('TtyWinResize', TtyWinResizeRequestSchema, EmptySchema, { containerId: 'c1', execId: 'pipes', row: 50, column: 132 }),
    { code: Code.UNAVAILABLE, message: /^no tty \(process pipes of container c1\)$/ },
    'the error names the process and its container',
  );
});

t.test('unknown ids are NOT_FOUND on every stdio RPC; len 0 is INVALID_ARGUMENT', async (t) => {
  const { procs, call, read, write } = setup();
  await t.rejects(read('nope'), { code: Code.NOT_FOUND });
  await t.rejects(read('nope', 10, dialect3x, 'ReadStderr'), { code: Code.NOT_FOUND });
  await t.rejects(write('nope', Buffer.from('x')), { code: Code.NOT_FOUND });
  await t.rejects(call('CloseStdin', CloseStdinRequestSchema, EmptySchema, { containerId: 'c1', execId: 'nope' }), { code: Code.NOT_FOUND });
  await t.rejects(call('TtyWinResize', TtyWinResizeRequestSchema, EmptySchema, { containerId: 'c1', execId: 'nope' }), { code: Code.NOT_FOUND });
  const io = createProcessIO({ terminal: false, pipeSize: 0, libc: libc() });
  procs.set('c1/z', io);
  spawnWithIO(t, io, 'echo x');
  await t.rejects(read('z', 0), { code: Code.INVALID_ARGUMENT, message: /^len must be greater than 0 \(process z of container c1\)$/ });
  t.equal(Buffer.from((await read('z', 1)).data).toString(), 'x', 'the bad call took nothing');
});

t.test('a ReadStdout cancelled by the host leaves its bytes for the next call', async (t) => {
  const { procs, call, write } = setup();
  const io = createProcessIO({ terminal: false, pipeSize: 0, libc: libc() });
  procs.set('c1/a', io);
  spawnWithIO(t, io, 'read go; printf kept');
  const ac = new AbortController();
  const pending = call('ReadStdout', ReadStreamRequestSchema, ReadStreamResponseSchema, { containerId: 'c1', execId: 'a', len: 100 }, dialect3x, ac.signal);
  ac.abort();
  await t.rejects(pending, { code: Code.CANCELLED });
  await write('a', Buffer.from('\n'));
  const next = await call('ReadStdout', ReadStreamRequestSchema, ReadStreamResponseSchema, { containerId: 'c1', execId: 'a', len: 100 });
  t.equal(Buffer.from(next.data).toString(), 'kept');
});
