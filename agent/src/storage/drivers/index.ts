// The storage drivers, one module each. A new driver is a module exporting a DriverFactory and one
// line here; the registry (../storages.ts) finds it by the names it serves.
import { bindDriver } from './bind.js';
import { blockDriver } from './block.js';
import type { DriverFactory } from './common.js';
import { ephemeralDriver } from './ephemeral.js';
import { localDriver } from './local.js';
import { overlayfsDriver } from './overlayfs.js';
import { sharedFsDriver } from './shared-fs.js';
import { watchableBindDriver } from './watchable-bind.js';

export const driverFactories: readonly DriverFactory[] = [
  sharedFsDriver,
  ephemeralDriver,
  localDriver,
  bindDriver,
  watchableBindDriver,
  overlayfsDriver,
  blockDriver,
];
