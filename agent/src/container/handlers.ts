import type { AgentHandlers } from '../rpc/service.js';
import { invalidArgument } from '../errors.js';
import type { Sandbox } from '../sandbox/sandbox.js';
import type { ContainerManager } from './manager.js';
import { listProcesses } from './ps.js';

const SIGRTMAX = 64;

/** Container, process and sandbox lifecycle RPCs. Stdio RPCs live with the io domain. */
export function containerHandlers(m: ContainerManager, sandbox: Sandbox, onSandboxDestroyed: () => void = () => undefined): AgentHandlers {
  return {
    async createSandbox(req, ctx) {
      await sandbox.create(req, ctx.signal);
      m.expectContainers();
      return {};
    },
    async destroySandbox(_req, ctx) {
      await m.removeAll();
      sandbox.destroy();
      // Init mode powers off from here: only once the host has its answer (under TCG load a fixed
      // delay after the handler returned lost the reply).
      ctx.afterAnswer(onSandboxDestroyed);
      return {};
    },
    async createContainer(req, ctx) {
      await m.create(req, ctx.legacy.agentPidns ?? false, ctx.signal);
      return {};
    },
    async startContainer(req) {
      await m.start(req.containerId);
      return {};
    },
    async execProcess(req) {
      await m.exec(req);
      return {};
    },
    async signalProcess(req, ctx) {
      // Linux numbers signals 1–64 (SIGRTMAX); anything else would fail inside kill() as INTERNAL.
      if (!Number.isInteger(req.signal) || req.signal < 1 || req.signal > SIGRTMAX) {
        throw invalidArgument(
          `SignalProcess ${req.containerId}/${req.execId || '(init)'}: signal ${req.signal} is out of range: valid signals are 1–${SIGRTMAX}`,
        );
      }
      await m.signal(req.containerId, req.execId, req.signal, ctx.dialect.signalAllForEmptyExecId);
      return {};
    },
    async waitProcess(req) {
      return { status: await m.wait(req.containerId, req.execId) };
    },
    async removeContainer(req) {
      await m.remove(req.containerId, req.timeout);
      return {};
    },
    async listProcesses(req) {
      const c = m.get(req.containerId);
      return { processList: await listProcesses(c.cgroup.pids(), req.format, req.args) };
    },
    async pauseContainer(req) {
      await m.pause(req.containerId);
      return {};
    },
    async resumeContainer(req) {
      await m.resume(req.containerId);
      return {};
    },
    updateContainer(req) {
      m.update(req.containerId, req.resources);
      return {};
    },
    statsContainer(req) {
      return { cgroupStats: m.get(req.containerId).cgroup.stats(), networkStats: [] };
    },
    async getOOMEvent(_req, ctx) {
      return { containerId: await m.oomEvents.next(ctx.signal) };
    },
  };
}
