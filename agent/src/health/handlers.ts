import { HealthCheckResponse_ServingStatus } from '../../../protos/gen/health_pb.js';
import type { HealthHandlers } from '../rpc/service.js';
import { agentVersion, grpcProtocolVersion } from '../version.js';

export function healthHandlers(): HealthHandlers {
  return {
    // An agent that answers at all is serving: kata hosts use Check only as a liveness probe.
    check: () => ({ status: HealthCheckResponse_ServingStatus.SERVING }),
    version: () => ({ grpcVersion: grpcProtocolVersion, agentVersion }),
  };
}
