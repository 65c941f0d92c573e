// overlayfs storages (kata 3.x driver "overlayfs"): an overlay mount whose layers the host names in
// the mount options (lowerdir=…, upperdir=…, workdir=…), e.g. a container rootfs stacked from layers
// the host shared. Two kata extras:
// - option io.katacontainers.fs-opt.overlay-rw: the host names only read-only layers and the agent
//   makes the writable one itself, in guest memory under <state root>/overlay/<cid>/, so the
//   container's writes never go back to the host; they go with the storage.
// - driver option io.katacontainers.volume.overlayfs.create_directory=DIR: a directory to make before
//   the mount (an upper/work pair on a volume mounted just before, which starts empty).
// Every path is checked to be absolute without "..": they come from the host and this runs as root.
import path from 'node:path';
import type { Storage } from '../../../../protos/gen/agent_pb.js';
import { parseMountOptions } from '../../mount/options.js';
import { invalidArgument, Unimplemented } from '../../errors.js';
import { about, mountDir, removeDir, unmount, type DriverEnv, type StorageDriver, type Undo } from './common.js';

export const OVERLAY_RW = 'io.katacontainers.fs-opt.overlay-rw';
export const OVERLAY_CREATE_DIR = 'io.katacontainers.volume.overlayfs.create_directory=';
/** An ext4 upper layer on a block device kata mounts first: needs the device, not served here. */
const OVERLAY_BLK_OPTIONS = ['io.katacontainers.rootfs.overlayfs.mount_blk_point=', 'io.katacontainers.rootfs.overlayfs.mount_blk_src='];
/** Where overlay-rw's upper and work directories go, below the state root (kata's CONTAINER_BASE/overlay). */
const OVERLAY_RW_DIR = 'overlay';

/** Options whose values are paths (lowerdir+/datadir+ are the kernel's one-layer-per-option forms). */
const PATH_OPTIONS = ['lowerdir', 'lowerdir+', 'datadir+', 'upperdir', 'workdir'];

function checkPath(what: string, name: string, p: string): void {
  if (!p.startsWith('/') || p.split('/').includes('..')) throw invalidArgument(`${what}: ${name} "${p}" must be an absolute path without ".."`);
}

/**
 * lowerdir's layers: colon-separated, where "\:" is a colon inside a path (the kernel's escape). An
 * empty entry ("a::b", data-only layers on newer kernels) is the kernel's to judge.
 */
function layers(value: string): string[] {
  return value
    .split(/(?<!\\):/)
    .filter((l) => l !== '')
    .map((l) => l.replace(/\\:/g, ':'));
}

/** The overlay mount of `s`; `containerId` names overlay-rw's writable layer. */
export function mountOverlayfs(env: DriverEnv, s: Storage, containerId: string): Undo {
  const what = `storage overlayfs ${s.mountPoint}`;
  for (const o of s.driverOptions) {
    const blk = OVERLAY_BLK_OPTIONS.find((p) => o.startsWith(p));
    if (blk) throw new Unimplemented(`${what}: driver option ${blk.slice(0, -1)} (an upper layer on a block device) is not supported`);
  }
  if (s.fstype !== '' && s.fstype !== 'overlay') throw invalidArgument(`${what}: fstype "${s.fstype}" is not overlay`);
  const rw = s.options.includes(OVERLAY_RW);
  const options = s.options.filter((o) => o !== OVERLAY_RW);

  // Every path the mount will use, by option, checked before anything is made.
  const paths: [string, string][] = [];
  for (const o of options) {
    const eq = o.indexOf('=');
    const name = eq < 0 ? o : o.slice(0, eq);
    if (!PATH_OPTIONS.includes(name)) continue;
    const value = o.slice(eq + 1);
    if (eq < 0 || value === '') throw invalidArgument(`${what}: option ${name} has no path`);
    for (const p of name === 'lowerdir' ? layers(value) : [value]) {
      checkPath(what, name, p);
      paths.push([name, p]);
    }
  }
  const named = (n: string) => paths.some(([k]) => k === n);
  if (!named('lowerdir') && !named('lowerdir+')) throw invalidArgument(`${what}: no lowerdir in the options`);
  if (rw && (named('upperdir') || named('workdir'))) throw invalidArgument(`${what}: ${OVERLAY_RW} with an upperdir or workdir of its own`);
  if (named('upperdir') !== named('workdir')) throw invalidArgument(`${what}: upperdir and workdir go together`);
  if (rw && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(containerId)) {
    throw invalidArgument(`${what}: ${OVERLAY_RW} needs the container it is for (a CreateContainer storage), got "${containerId}"`);
  }
  const toCreate = s.driverOptions.filter((o) => o.startsWith(OVERLAY_CREATE_DIR)).map((o) => o.slice(OVERLAY_CREATE_DIR.length));
  for (const d of toCreate) checkPath(what, OVERLAY_CREATE_DIR.slice(0, -1), d);

  try {
    env.ensureFilesystem('overlay');
  } catch (err) {
    throw about(what, err);
  }
  for (const d of toCreate) {
    try {
      env.fs.mkdirs(d);
    } catch (err) {
      throw about(`${what}: ${OVERLAY_CREATE_DIR.slice(0, -1)} ${d}`, err);
    }
  }
  // The kernel's answer to a missing layer is a bare ENOENT: name the one that is missing instead.
  for (const [name, p] of paths) if (!env.fs.exists(p)) throw invalidArgument(`${what}: ${name} ${p} does not exist`);

  const rwDir = rw ? path.join(env.stateRoot, OVERLAY_RW_DIR, containerId) : undefined;
  let createdMountPoint = false;
  const cleanUp = () => {
    if (createdMountPoint) removeDir(env.fs, s.mountPoint);
    // The container's own writes: nobody reads them once the overlay is gone.
    if (rwDir) env.fs.remove(rwDir);
  };
  let data = parseMountOptions(options);
  try {
    if (rwDir) {
      env.fs.mkdirs(path.join(rwDir, 'upper'));
      env.fs.mkdirs(path.join(rwDir, 'work'));
      data = parseMountOptions([...options, `upperdir=${rwDir}/upper`, `workdir=${rwDir}/work`]);
    }
    createdMountPoint = mountDir(env.fs, s.mountPoint);
    env.libc.mount(s.source || 'overlay', s.mountPoint, 'overlay', data.flags, data.data || null);
  } catch (err) {
    cleanUp();
    throw about(what, err);
  }
  return () => {
    unmount(env, s.mountPoint);
    cleanUp();
  };
}

export const overlayfsDriver = (env: DriverEnv): StorageDriver => ({
  names: ['overlayfs'],
  setUp: (s, { containerId }) => mountOverlayfs(env, s, containerId),
});
