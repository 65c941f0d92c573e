import type { HealthCheckResponse_ServingStatus } from '../../../protos/gen/health_pb.js';
import type { HealthHandlers } from '../rpc/service.js';
import { agentVersion, grpcProtocolVersion } from '../version.js';

// A type-only import keeps health_pb (and protobuf-es's descriptor registry) out of start-up.
const SERVING: HealthCheckResponse_ServingStatus.SERVING = 1;

export function healthHandlers(): HealthHandlers {
  return {
    // An agent that answers at all is serving: kata hosts use Check only as a liveness probe.
    check: () => ({ status: SERVING }),
    version: () => ({ grpcVersion: grpcProtocolVersion, agentVersion }),
  };
}
