// The real Libc binds nothing until a call needs it, and binds each C function once. This file must
// stay the only user of the real Libc in its process (tap runs each test file in its own node), so
// that "nothing bound yet" is true when it starts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { SyscallError } from '../../agent/src/linux/errno.js';
import { libc } from '../../agent/src/linux/index.js';
import { bindAll, boundSoFar, loadKoffi } from '../../agent/src/linux/koffi-libc.js';
import { lazyTable, lazyValue } from '../../agent/src/linux/lazy-table.js';
import { F_GETFD, FD_CLOEXEC, MNT_DETACH } from '../../agent/src/linux/libc.js';

/** Files of the koffi package (JS loader or native addon) that node has loaded so far. */
const koffiModulesLoaded = () => Object.keys(require.cache).filter((p) => /[\\/]node_modules[\\/](koffi|@koromix)[\\/]/.test(p));

t.test('lazyTable builds an entry on first read only, and keeps it', async (t) => {
  const builds: string[] = [];
  const table = lazyTable({ a: 1, b: 2 }, (spec, name) => {
    builds.push(name);
    return { name, twice: spec * 2 };
  });
  t.same(Object.keys(table), ['a', 'b'], 'keys are listed without building anything');
  t.same(builds, []);
  const first = table.a;
  t.same(first, { name: 'a', twice: 2 });
  t.equal(table.a, first, 'a second read returns the same value');
  t.same(builds, ['a'], 'b was never read, so never built');
  t.equal(table.b.twice, 4);
  t.same(builds, ['a', 'b']);
});

t.test('lazyTable keeps nothing from a build that threw', async (t) => {
  let attempts = 0;
  const table = lazyTable({ x: 'spec' }, () => {
    attempts++;
    if (attempts === 1) throw new Error('first build fails');
    return attempts;
  });
  t.throws(() => table.x, /first build fails/);
  t.equal(table.x, 2, 'the next read builds again');
  t.equal(table.x, 2);
  t.equal(attempts, 2);
});

t.test('lazyValue makes its value once', async (t) => {
  let made = 0;
  const v = lazyValue(() => ({ n: ++made }));
  t.equal(made, 0);
  t.equal(v(), v());
  t.equal(made, 1);
});

t.test('the real Libc loads koffi and defines functions only when called', async (t) => {
  t.same(koffiModulesLoaded(), [], 'importing koffi-libc loaded no part of koffi');
  t.same(boundSoFar(), { koffi: false, library: false, functions: [] });

  const c = libc();
  t.same(boundSoFar(), { koffi: false, library: false, functions: [] }, 'creating the libc object binds nothing');
  t.same(koffiModulesLoaded(), []);

  t.equal(c.getpid(), process.pid);
  t.same(boundSoFar(), { koffi: 'addon', library: true, functions: ['getpid'] }, 'the first call binds its own function only');
  const loaded = koffiModulesLoaded();
  t.ok(
    loaded.some((p) => p.endsWith('koffi.node')),
    'the native addon is loaded',
  );
  t.same(
    loaded.filter((p) => /[\\/]node_modules[\\/]koffi[\\/]/.test(p)),
    [],
    "koffi's probing entry point was not needed (glibc addon loaded directly)",
  );

  t.equal(c.getpid(), process.pid);
  t.same(boundSoFar().functions, ['getpid'], 'a second call reuses the first definition');

  // A failing call still names the call, its argument and the errno, as before.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-libc-lazy-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const missing = path.join(dir, 'absent');
  const err = t.throws(() => c.umount2(missing, MNT_DETACH)) as SyscallError;
  t.type(err, SyscallError);
  t.equal(err.message, `umount2(${missing}): ENOENT (no such file or directory)`);
  t.throws(() => c.umount2(missing, MNT_DETACH), { code: 'ENOENT' });
  t.same(boundSoFar().functions, ['getpid', 'umount2']);

  // A variadic prototype works when defined late, and is also defined once.
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  t.teardown(() => fs.closeSync(fd));
  t.equal(c.fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC, 'libuv opens every fd with O_CLOEXEC');
  c.fcntl(fd, F_GETFD);
  t.same(boundSoFar().functions, ['getpid', 'umount2', 'fcntl']);
});

t.test("without the per-platform package koffi's own entry point loads it", async (t) => {
  const { k, via } = loadKoffi('@koromix/koffi-no-such-platform');
  t.equal(via, 'entry');
  t.equal(typeof k.load, 'function');
  t.equal(k.load('libc.so.6').func('int getpid()')(), process.pid);
});

t.test('every prototype in the table is accepted by koffi', async (t) => {
  // Before binding became lazy, a bad prototype failed every process at load; now it would fail only
  // when first called, so check them all here.
  const before = boundSoFar().functions;
  const names = bindAll();
  t.ok(names.length >= 38, `${names.length} functions`);
  const after = boundSoFar().functions;
  t.same([...after].sort(), [...names].sort(), 'each function defined exactly once, counting earlier calls');
  t.same(after.slice(0, before.length), before);
  t.same(bindAll(), names);
  t.same(boundSoFar().functions, after, 'binding again defines nothing new');
});
