import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { errnoName, SyscallError } from '../../agent/src/linux/errno.js';
import { libc } from '../../agent/src/linux/index.js';
import {
  AF_UNIX,
  AF_VSOCK,
  AT_FDCWD,
  AT_REMOVEDIR,
  AT_SYMLINK_NOFOLLOW,
  F_GETFD,
  F_OK,
  FD_CLOEXEC,
  MNT_DETACH,
  MSG_CMSG_CLOEXEC,
  MSG_DONTWAIT,
  O_CLOEXEC,
  O_PATH,
  RESOLVE_IN_ROOT,
  RESOLVE_NO_MAGICLINKS,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  SOCK_CLOEXEC,
  SOCK_SEQPACKET,
  SOCK_STREAM,
  VMADDR_CID_ANY,
} from '../../agent/src/linux/libc.js';
import { RecordingLibc } from '../support/recording-libc.js';
import { Code, toRpcError } from '../../agent/src/rpc/status.js';

t.test('errno names', async (t) => {
  t.equal(errnoName(2), 'ENOENT');
  t.equal(errnoName(22), 'EINVAL');
  t.equal(errnoName(13), 'EACCES');
});

t.test('a failed real call names the call, its argument and the errno', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-libc-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const missing = path.join(dir, 'not-mounted');
  // umount2 of a path that does not exist fails with ENOENT (EINVAL for an existing non-mountpoint).
  const err = t.throws(() => libc().umount2(missing, MNT_DETACH)) as SyscallError;
  t.type(err, SyscallError);
  t.equal(err.syscall, 'umount2');
  t.equal(err.code, 'ENOENT');
  t.equal(err.message, `umount2(${missing}): ENOENT (no such file or directory)`);
  const e2 = t.throws(() => libc().umount2(dir, MNT_DETACH)) as SyscallError;
  t.equal(e2.code, process.getuid?.() === 0 ? 'EINVAL' : 'EPERM');
  t.equal(toRpcError(err).code, Code.NOT_FOUND, 'ENOENT maps to NOT_FOUND');
  t.equal(toRpcError(e2).code, process.getuid?.() === 0 ? Code.INVALID_ARGUMENT : Code.PERMISSION_DENIED);
});

t.test('a successful real call', async (t) => {
  t.equal(libc().getpid(), process.pid);
});

t.test('the *at() calls and openat2 on a real directory', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-libc-at-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const l = libc();
  const root = l.openat(AT_FDCWD, dir, O_PATH | fs.constants.O_DIRECTORY | O_CLOEXEC, 0);
  t.teardown(() => l.close(root));
  l.mkdirat(root, 'sub', 0o750);
  t.equal(fs.statSync(`${dir}/sub`).mode & 0o777, 0o750 & ~process.umask());
  l.symlinkat('/sub', root, 'abs-link');
  t.equal(fs.readlinkSync(`${dir}/abs-link`), '/sub');
  // RESOLVE_IN_ROOT: the absolute link is taken inside `dir`, not on the host.
  const fd = l.openat2(root, 'abs-link', O_PATH | O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
  t.equal(fs.readlinkSync(`/proc/self/fd/${fd}`), `${dir}/sub`);
  l.close(fd);
  t.throws(() => l.openat(root, 'abs-link', O_PATH | fs.constants.O_NOFOLLOW | fs.constants.O_DIRECTORY, 0), { code: 'ENOTDIR', syscall: 'openat' });
  l.mknodat(root, 'fifo', 0o010644, 0, 0);
  t.ok(fs.lstatSync(`${dir}/fifo`).isFIFO());
  if (process.getuid?.() === 0) {
    l.fchownat(root, 'abs-link', 65534, 65534, AT_SYMLINK_NOFOLLOW);
    t.equal(fs.lstatSync(`${dir}/abs-link`).uid, 65534, 'the link itself, not its target');
  }
  l.unlinkat(root, 'fifo', 0);
  l.unlinkat(root, 'abs-link', 0);
  l.unlinkat(root, 'sub', AT_REMOVEDIR);
  t.same(fs.readdirSync(dir), []);
});

t.test('fstat, faccessat and write agree with what Node itself sees', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-libc-stat-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(`${dir}/file`, '');
  fs.symlinkSync('file', `${dir}/link`);
  const l = libc();
  for (const [name, flags, type] of [
    ['', fs.constants.O_DIRECTORY, S_IFDIR],
    ['file', 0, 0o100000],
    ['link', fs.constants.O_NOFOLLOW, S_IFLNK],
  ] as const) {
    const fd = l.openat(AT_FDCWD, `${dir}/${name}`, O_PATH | O_CLOEXEC | flags, 0);
    const st = l.fstat(fd);
    const node = fs.fstatSync(fd);
    l.close(fd);
    t.equal(st.mode & S_IFMT, type, `${name || 'dir'}: type bits (an O_PATH|O_NOFOLLOW fd of a link is the link)`);
    t.equal(st.mode, node.mode, `${name || 'dir'}: mode as Node reports it`);
    t.equal(st.dev, node.dev, `${name || 'dir'}: st_dev encoded as Node's`);
  }
  t.throws(() => l.fstat(-1), { code: 'EBADF', syscall: 'fstat' });
  l.faccessat(AT_FDCWD, `${dir}/file`, F_OK, 0);
  t.throws(() => l.faccessat(AT_FDCWD, `${dir}/missing`, F_OK, 0), { code: 'ENOENT', syscall: 'faccessat' });
  const fd = l.openat(AT_FDCWD, `${dir}/file`, fs.constants.O_WRONLY | O_CLOEXEC, 0);
  t.equal(l.write(fd, Buffer.from('4242\n')), 5);
  l.close(fd);
  t.equal(fs.readFileSync(`${dir}/file`, 'utf8'), '4242\n');
  t.throws(() => l.write(-1, Buffer.from('x')), { code: 'EBADF', syscall: 'write' });
});

t.test('AF_VSOCK socket, bind and listen on VMADDR_CID_ANY', async (t) => {
  let fd: number;
  try {
    fd = libc().socket(AF_VSOCK, SOCK_STREAM, 0);
  } catch (err) {
    t.equal((err as SyscallError).code, 'EAFNOSUPPORT', 'only a kernel without vsock may refuse');
    t.comment('this kernel has no AF_VSOCK (vsock module not loaded): bind/listen not exercised');
    return;
  }
  t.teardown(() => libc().close(fd));
  const port = 20000 + (process.pid % 20000);
  libc().bindVsock(fd, VMADDR_CID_ANY, port);
  libc().listen(fd, 8);
  const e = t.throws(() => libc().bindVsock(fd, VMADDR_CID_ANY, port)) as SyscallError;
  t.equal(e.code, 'EINVAL', 'binding a bound socket again fails with EINVAL');
  t.match(e.message, new RegExp(`^bind\\(vsock cid=${VMADDR_CID_ANY} port=${port}\\): EINVAL`));
});

t.test('an fd passed over a socketpair (SCM_RIGHTS) is the same open file, close-on-exec on arrival', async (t) => {
  const l = libc();
  const [a, b] = l.socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  const [r, w] = l.pipe2(O_CLOEXEC);
  t.teardown(() => [a, b, r].forEach((fd) => l.close(fd)));
  const empty = t.throws(() => l.recvFd(b, Buffer.alloc(1), MSG_DONTWAIT)) as SyscallError;
  t.equal(empty.code, 'EAGAIN', 'nothing queued: MSG_DONTWAIT does not wait');
  l.sendFd(a, w, Buffer.from('x'));
  l.close(w);
  const buf = Buffer.alloc(4);
  const got = l.recvFd(b, buf, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  t.equal(got.bytes, 1);
  t.equal(buf.toString('utf8', 0, 1), 'x');
  t.type(got.fd, 'number');
  const fd = got.fd!;
  t.equal(l.fcntl(fd, F_GETFD, 0) & FD_CLOEXEC, FD_CLOEXEC, 'MSG_CMSG_CLOEXEC marks it');
  fs.writeSync(fd, 'through the passed fd');
  l.close(fd);
  t.equal(fs.readFileSync(r, 'utf8'), 'through the passed fd', 'it writes into the pipe the sender had');
  fs.writeSync(a, 'no');
  t.same(l.recvFd(b, buf, MSG_DONTWAIT), { bytes: 2, fd: undefined }, 'a message without one');
});

t.test('the recording fake records calls and fails on request', async (t) => {
  const fake = new RecordingLibc({ getpid: () => 1 }).fail('mount', 16);
  t.equal(fake.getpid(), 1);
  fake.sethostname('h1');
  const err = t.throws(() => fake.mount('proc', '/proc', 'proc', 0, null)) as SyscallError;
  t.equal(err.code, 'EBUSY');
  t.same(
    fake.calls.map((c) => c.name),
    ['getpid', 'sethostname', 'mount'],
  );
  t.same(fake.calls[1].args, ['h1']);
  t.equal(toRpcError(err).code, Code.FAILED_PRECONDITION);
});
