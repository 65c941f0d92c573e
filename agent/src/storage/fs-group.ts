// A pod's fsGroup on a block volume (kata 3.x Storage.fs_group), what kubelet does on a node: every
// file and directory of the volume gets the group, group read/write, and directories setgid so new
// files inherit it. OnRootMismatch skips the walk when the volume's root has the group already (a
// volume reused by the next pod). Symlinks are re-grouped themselves, never followed: a link in
// the volume may point anywhere in the guest.
import path from 'node:path';
import type { StorageFs } from './storage-fs.js';

const GROUP_RW = 0o060;
const DIR_EXTRA = 0o2010; // setgid + group search

export function applyFsGroup(fs: StorageFs, root: string, gid: number, onRootMismatch: boolean): { changed: number } {
  if (onRootMismatch) {
    const st = fs.stat(root);
    if (st.gid === gid && (st.mode & 0o2000) !== 0) return { changed: 0 };
  }
  let changed = 0;
  const visit = (p: string) => {
    const st = fs.lstat(p);
    if (st.isSymbolicLink()) {
      fs.lchown(p, -1, gid);
      changed++;
      return;
    }
    fs.chown(p, -1, gid);
    const extra = st.isDirectory() ? GROUP_RW | DIR_EXTRA : GROUP_RW;
    if ((st.mode & extra) !== extra) fs.chmod(p, (st.mode & 0o7777) | extra);
    changed++;
    // lstat said directory and this is no symlink: a readdir cannot be redirected outside.
    if (st.isDirectory()) for (const name of fs.readdir(p)) visit(path.join(p, name));
  };
  visit(root);
  return { changed };
}
