// The network RPCs of grpc.AgentService. They need only the netlink socket (no cgroup driver), so a
// guest whose container domain failed to start can still be given its network.
import type { Libc } from '../linux/libc.js';
import type { AgentHandlers } from '../rpc/service.js';
import { invalidArgument } from '../errors.js';
import { iptablesHandlers, type IptablesDeps } from './iptables.js';
import { PodNetwork } from './pod-network.js';
import { RtnlClient } from './rtnl-client.js';
import { RtnlObjects } from './rtnl-objects.js';

export interface NetworkDomain {
  handlers: AgentHandlers;
  /** Closes the netlink socket (agent shutdown). */
  close(): void;
}

export function networkHandlers(libc: Libc, iptables: IptablesDeps = {}): NetworkDomain {
  const rtnl = new RtnlClient(libc);
  const net = new PodNetwork(new RtnlObjects(rtnl));
  return {
    close: () => rtnl.close(),
    handlers: {
      ...iptablesHandlers(iptables),
      updateInterface(req) {
        if (!req.interface) throw invalidArgument('UpdateInterface: the request has no interface');
        return net.updateInterface(req.interface);
      },
      updateRoutes(req) {
        if (!req.routes) throw invalidArgument('UpdateRoutes: the request has no routes');
        return { Routes: net.updateRoutes(req.routes.Routes) };
      },
      listInterfaces: () => ({ Interfaces: net.listInterfaces() }),
      listRoutes: () => ({ Routes: net.listRoutes() }),
      addARPNeighbors(req) {
        if (!req.neighbors) throw invalidArgument('AddARPNeighbors: the request has no neighbors');
        net.addArpNeighbors(req.neighbors.ARPNeighbors);
        return {};
      },
    },
  };
}
