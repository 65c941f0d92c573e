import t from 'tap';
import { errorOfKind, InvalidArgument, NotFound, withContext } from '../../agent/src/errors.js';
import { SyscallError } from '../../agent/src/linux/errno.js';
import { Code, RpcError, toRpcError } from '../../agent/src/rpc/status.js';

const around = (m: string) => `${m} (process e1 of container c1)`;

t.test('withContext keeps the kind of a domain error and rewrites its message', async (t) => {
  const cause = new NotFound('no such exec');
  const e = withContext(cause, around);
  t.ok(e instanceof NotFound);
  t.equal((e as Error).message, 'no such exec (process e1 of container c1)');
  t.equal((e as Error).cause, cause);
  t.match(toRpcError(e), { code: Code.NOT_FOUND, message: 'no such exec (process e1 of container c1)' });
});

t.test('withContext keeps the errno name of a system error, so its status does not change', async (t) => {
  const sys = new SyscallError('mount', 2, 'x');
  const e = withContext(sys, (m) => `storage blk /a: ${m}`) as NodeJS.ErrnoException;
  t.equal(e.code, 'ENOENT');
  t.equal(toRpcError(e).code, Code.NOT_FOUND);
  t.match(e.message, /^storage blk \/a: mount\(x\): ENOENT/);
  const plain = withContext(new Error('boom'), around) as NodeJS.ErrnoException;
  t.equal(plain.code, undefined);
  t.equal(toRpcError(plain).code, Code.INTERNAL);
  t.equal(toRpcError(withContext('odd', around)).message, 'odd (process e1 of container c1)');
});

t.test('a wire status (the dialect end of stream) passes through untouched', async (t) => {
  const eof = new RpcError(Code.UNKNOWN, 'EOF', true);
  t.equal(withContext(eof, around), eof);
});

t.test('errorOfKind rebuilds a kind sent as data; no kind is an internal failure', async (t) => {
  t.ok(errorOfKind('InvalidArgument', 'cwd') instanceof InvalidArgument);
  t.equal(toRpcError(errorOfKind('NotFound', 'exe')).code, Code.NOT_FOUND);
  t.equal(toRpcError(errorOfKind(undefined, 'setns')).code, Code.INTERNAL);
});
