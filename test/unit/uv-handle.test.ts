// linux/uv-handle.ts is the one user of the deprecated process.binding('pipe_wrap'): every vsock
// connection, pty master and process pipe of the agent is wrapped through it. These tests fail with
// a message naming the binding when a Node upgrade removes it or changes what the module relies on.
import t from 'tap';
import { libc } from '../../agent/src/linux/index.js';
import { AF_UNIX, O_CLOEXEC, SOCK_CLOEXEC, SOCK_STREAM } from '../../agent/src/linux/libc.js';
import { checkPipeWrap, socketFromFd } from '../../agent/src/linux/uv-handle.js';

t.test("this Node's process.binding('pipe_wrap') has the shape uv-handle.ts relies on", async (t) => {
  let binding: unknown;
  try {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- process.binding is not in @types/node's Process type
    binding = (process as any).binding('pipe_wrap');
  } catch (err) {
    t.fail(`process.binding('pipe_wrap') is gone in Node ${process.version}: ${(err as Error).message}; linux/uv-handle.ts needs another way to wrap fds`);
    return;
  }
  t.doesNotThrow(() => checkPipeWrap(binding), `Node ${process.version}: process.binding('pipe_wrap') changed shape; see linux/uv-handle.ts`);
});

t.test('a binding without what is needed is refused with a message that names it', async (t) => {
  t.throws(() => checkPipeWrap(undefined), {
    message: /process\.binding\('pipe_wrap'\) of Node v[\d.]+ is not what linux\/uv-handle\.ts needs \(no Pipe constructor, no constants\.SOCKET\)/,
  });
  class NoListen {
    open() {}
    close() {}
    readStart() {}
  }
  t.throws(() => checkPipeWrap({ Pipe: NoListen, constants: { SOCKET: 0 } }), { message: /\(no Pipe\.prototype\.listen\(\)\)/ });
  t.throws(() => checkPipeWrap({ Pipe: NoListen, constants: {} }), { message: /no Pipe\.prototype\.listen\(\), no constants\.SOCKET/ });
});

t.test('a socketpair wrapped by socketFromFd carries bytes both ways and closes its fd', async (t) => {
  const [a, b] = libc().socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sa = socketFromFd(a);
  const sb = socketFromFd(b);
  const got = new Promise<string>((resolve) => sb.once('data', (d: Buffer) => resolve(d.toString())));
  sa.write('ping');
  t.equal(await got, 'ping');
  const back = new Promise<string>((resolve) => sa.once('data', (d: Buffer) => resolve(d.toString())));
  sb.write('pong');
  t.equal(await back, 'pong');
  await new Promise<void>((resolve) => {
    sa.once('close', () => resolve());
    sa.destroy();
  });
  sb.destroy();
  t.throws(() => libc().fcntl(a, 1), { code: 'EBADF' }, 'the socket owned the fd: closing it closed the fd');
});

t.test('a pipe: the write end wrapped write-only, the read end read-only', async (t) => {
  const [r, w] = libc().pipe2(O_CLOEXEC);
  const reader = socketFromFd(r, { writable: false });
  const writer = socketFromFd(w, { readable: false });
  const chunks: Buffer[] = [];
  reader.on('data', (d: Buffer) => chunks.push(d));
  const ended = new Promise<void>((resolve) => reader.once('end', () => resolve()));
  writer.end('through a pipe');
  await ended;
  t.equal(Buffer.concat(chunks).toString(), 'through a pipe');
  reader.destroy();
});
