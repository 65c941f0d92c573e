// SignalProcess with exec id "": kata 1.x means every process of the container, 3.x only its init.
// The rule is the dialect's; the handler only passes it on to the container manager.
import t from 'tap';
import { create } from '@bufbuild/protobuf';
import { SignalProcessRequestSchema } from '../../protos/gen/agent_pb.js';
import { containerHandlers } from '../../agent/src/container/handlers.js';
import type { ContainerManager } from '../../agent/src/container/manager.js';
import { dialect1x, dialect3x } from '../../agent/src/rpc/dialect.js';
import type { CallContext } from '../../agent/src/rpc/handlers.js';
import type { Sandbox } from '../../agent/src/sandbox/sandbox.js';

t.test('the dialect decides whether exec id "" signals the whole container', async (t) => {
  t.equal(dialect1x.signalAllForEmptyExecId, true, 'kata 1.x');
  t.equal(dialect3x.signalAllForEmptyExecId, false, 'kata 3.x');
  const calls: unknown[][] = [];
  const m = { signal: async (...args: unknown[]) => void calls.push(args) } as unknown as ContainerManager;
  const h = containerHandlers(m, {} as Sandbox);
  const req = create(SignalProcessRequestSchema, { containerId: 'c1', execId: '', signal: 15 });
  for (const dialect of [dialect1x, dialect3x]) await h.signalProcess!(req, { dialect } as CallContext);
  t.same(calls, [
    ['c1', '', 15, true],
    ['c1', '', 15, false],
  ]);
});
