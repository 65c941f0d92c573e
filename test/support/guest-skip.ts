import { guestSkipReason } from './qemu.js';

/**
 * Skip reason for the in-VM tests: QEMU or the image missing on a developer's machine. In CI
 * (CI=true) nothing is skipped: .ci/run installs QEMU and builds the image, so a missing piece is a
 * failure there, reported by `mustRun`.
 */
export const guestSkip: string | false = (!process.env.CI && guestSkipReason()) || false;

/** The reason the guest tests cannot run in CI, or undefined. */
export const mustRunButCannot: string | undefined = process.env.CI ? guestSkipReason() : undefined;
