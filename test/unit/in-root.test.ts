// The fd-based resolver of mount/in-root.ts on the recording libc, with a scripted tree: each
// component is opened relative to its parent's fd with O_NOFOLLOW, missing ones are made relative to
// that fd, a symlink on the way is refused, and every intermediate fd is closed. No root needed.
import fs from 'node:fs';
import t from 'tap';
import { SyscallError } from '../../agent/src/linux/errno.js';
import { AT_REMOVEDIR, O_PATH } from '../../agent/src/linux/libc.js';
import { RecordingLibc } from '../support/recording-libc.js';
import { inParent, openInRoot, removeCreated, type Created } from '../../agent/src/mount/in-root.js';

const ENOENT = 2;
const ENOTDIR = 20;
const ENOTEMPTY = 39;
const ROOT_FD = 10;

/** A tree of 'dir' and 'link' entries by path ("" is the root), and the fds open on it. */
function fakeTree(entries: Record<string, 'dir' | 'link'>) {
  const tree = new Map<string, 'dir' | 'link'>([['', 'dir'], ...Object.entries(entries)]);
  const fds = new Map<number, string>([[ROOT_FD, '']]);
  let next = 20;
  const join = (dir: number, name: string) => {
    const base = fds.get(dir);
    if (base === undefined) throw new SyscallError('openat', 9, `bad fd ${dir}`);
    return name === '.' ? base : base === '' ? name : `${base}/${name}`;
  };
  const libc = new RecordingLibc({
    openat: (dir, name, flags) => {
      const p = join(dir, name);
      const kind = tree.get(p);
      if (kind === undefined) throw new SyscallError('openat', ENOENT, p);
      // O_NOFOLLOW|O_DIRECTORY on a symlink: the kernel's ENOTDIR.
      if (kind === 'link' && flags & fs.constants.O_DIRECTORY) throw new SyscallError('openat', ENOTDIR, p);
      fds.set(next, p);
      return next++;
    },
    mkdirat: (dir, name) => void tree.set(join(dir, name), 'dir'),
    close: (fd) => void fds.delete(fd),
    unlinkat: (dir, name) => {
      const p = join(dir, name);
      if ([...tree.keys()].some((k) => k.startsWith(`${p}/`))) throw new SyscallError('unlinkat', ENOTEMPTY, p);
      tree.delete(p);
    },
  });
  return { libc, tree, fds };
}

const root = { fd: ROOT_FD, name: '/rootfs' };

t.test('missing components are made relative to their parent fd, never by path', async (t) => {
  const { libc, tree, fds } = fakeTree({ a: 'dir' });
  const created: Created = [];
  const fd = openInRoot(libc, root, '/a/b/c', 'dir', 'dir', created);
  t.equal(fds.get(fd), 'a/b/c');
  t.same([...tree.keys()].sort(), ['', 'a', 'a/b', 'a/b/c']);
  const opens = libc.calls.filter((c) => c.name === 'openat');
  for (const c of opens) {
    t.notOk(String(c.args[1]).includes('/'), `one component per openat: ${String(c.args[1])}`);
    t.ok((c.args[2] as number) & O_PATH && (c.args[2] as number) & fs.constants.O_NOFOLLOW, 'O_PATH|O_NOFOLLOW');
  }
  const mkdirs = libc.calls.filter((c) => c.name === 'mkdirat').map((c) => c.args[1]);
  t.same(mkdirs, ['b', 'c']);
  t.same(created, [], "nothing recorded without the root filesystem's st_dev");
  t.same([...fds.keys()].sort(), [ROOT_FD, fd].sort(), 'every intermediate fd was closed');
});

t.test('a symlink on the way is refused, naming the path; nothing is made beyond it', async (t) => {
  const { libc, tree, fds } = fakeTree({ a: 'dir', 'a/d': 'link' });
  t.throws(() => openInRoot(libc, root, '/a/d/x/y', 'dir', 'dir'), { code: 'ENOTDIR', message: /\/rootfs\/a\/d/ });
  t.same([...tree.keys()].sort(), ['', 'a', 'a/d']);
  t.same([...fds.keys()], [ROOT_FD], 'no fd leaked');
});

t.test('".." in a planned path is refused before any call', async (t) => {
  const { libc } = fakeTree({});
  t.throws(() => openInRoot(libc, root, '/a/../../etc', 'dir', 'dir'), { code: 'ELOOP' });
  t.same(libc.calls, []);
});

t.test('inParent hands the parent fd and the last name to *at() calls', async (t) => {
  const { libc, fds } = fakeTree({ dev: 'dir' });
  const seen = inParent(libc, root, '/dev/ptmx', false, (dir, name) => [fds.get(dir), name]);
  t.same(seen, ['dev', 'ptmx']);
  t.same([...fds.keys()], [ROOT_FD]);
});

t.test('removeCreated goes newest first and keeps what is no longer empty', async (t) => {
  const { libc, tree } = fakeTree({ a: 'dir', 'a/b': 'dir', 'a/b/c': 'dir', 'a/b/other': 'dir' });
  const left = removeCreated(libc, root, [
    { path: 'a/b', kind: 'dir' },
    { path: 'a/b/c', kind: 'dir' },
  ]);
  const unlinks = libc.calls.filter((c) => c.name === 'unlinkat').map((c) => [c.args[1], c.args[2]]);
  t.same(unlinks, [
    ['c', AT_REMOVEDIR],
    ['b', AT_REMOVEDIR],
  ]);
  t.notOk(tree.has('a/b/c'));
  t.ok(tree.has('a/b'), 'a/b holds something else and stays');
  t.match(left, [/^a\/b: .*ENOTEMPTY/]);
});
