// Generated descriptor modules and the protobuf-es runtime, required on first use. Evaluating any of
// them builds protobuf-es's descriptor registry (descriptor.proto's bootstrap, then every message of
// the file); for agent.proto and its imports that was ~750 ms of a ~2.2 s agent start under QEMU
// TCG (25 ms on the host), while answering Check needs none of it (health/wire.ts). The bundle
// evaluates a module reached only through require() when that require first runs.
import type * as Protobuf from '@bufbuild/protobuf';
import type * as AgentPb from '../../../protos/gen/agent_pb.js';
import type * as Compat1xPb from '../../../protos/gen/compat_1x_pb.js';
import type * as HealthPb from '../../../protos/gen/health_pb.js';

let runtime: typeof Protobuf | undefined;
let agent: typeof AgentPb | undefined;
let compat1x: typeof Compat1xPb | undefined;
let health: typeof HealthPb | undefined;

/* eslint-disable @typescript-eslint/no-require-imports -- each schema module loads on its first use */
export const protobufRuntime = (): typeof Protobuf => (runtime ??= require('@bufbuild/protobuf') as typeof Protobuf);
export const agentProtos = (): typeof AgentPb => (agent ??= require('../../../protos/gen/agent_pb.js') as typeof AgentPb);
export const compat1xProtos = (): typeof Compat1xPb => (compat1x ??= require('../../../protos/gen/compat_1x_pb.js') as typeof Compat1xPb);
export const healthProtos = (): typeof HealthPb => (health ??= require('../../../protos/gen/health_pb.js') as typeof HealthPb);
