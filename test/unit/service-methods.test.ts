// protos/gen/service_methods.ts (read from the .proto files by scripts/gen-protos.mjs) must list
// exactly the RPCs of the generated descriptors, in order: gRPC routes by it before they load.
import t from 'tap';
import { AgentService } from '../../protos/gen/agent_pb.js';
import { Health } from '../../protos/gen/health_pb.js';
import { serviceMethods } from '../../protos/gen/service_methods.js';

t.test('service method names match the descriptors', async (t) => {
  for (const svc of [AgentService, Health])
    t.same(
      serviceMethods[svc.typeName],
      svc.methods.map((m) => m.name),
      svc.typeName,
    );
  t.same(Object.keys(serviceMethods).sort(), [AgentService.typeName, Health.typeName].sort(), 'no other services');
});
