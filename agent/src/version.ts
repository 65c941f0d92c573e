import fs from 'node:fs';
import path from 'node:path';

/** Set by the bundle (rootfs-builder/bundle.mjs) so a booting guest does not read package.json. */
declare const __KATA_AGENT_VERSION__: string | undefined;

/** The agent version is package.json's, read once from the install (dist/agent/src → repo root). */
export const agentVersion: string =
  typeof __KATA_AGENT_VERSION__ === 'string'
    ? __KATA_AGENT_VERSION__
    : (() => {
        for (const rel of ['../../..', '../..', '..', '.']) {
          try {
            const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, rel, 'package.json'), 'utf8'));
            if (pkg.name === 'kata-agent-ts') return String(pkg.version);
          } catch {
            // try the next candidate: bundles (package.json beside agent.js) and the source tree sit at different depths
          }
        }
        return '0.0.0-unknown';
      })();

/** kata agents of both generations report this protocol version in Health.Version. */
export const grpcProtocolVersion = '0.0.1';
