// RPCs this agent does not serve on purpose, each with the reason a host operator reads in the
// UNIMPLEMENTED status (README, "RPCs not served"). Anything else without a handler is work not
// done yet and says so.
export const notServedReasons: Record<string, string> = {
  StartTracing:
    "StartTracing is not served by this agent: kata 1.x's agent tracing (OpenTelemetry spans sent over vsock to kata's trace forwarder) is not part of it; with agent.log=debug every call is logged with method, ids, duration and status instead",
  StopTracing: 'StopTracing is not served by this agent: it has no tracing to stop (see StartTracing)',
  MemAgentMemcgSet:
    "MemAgentMemcgSet is not served by this agent: kata's mem-agent (PSI-driven memcg reclaim) is not part of it, and a setting it cannot act on is refused rather than ignored",
  MemAgentCompactSet:
    "MemAgentCompactSet is not served by this agent: kata's mem-agent (PSI-driven memory compaction) is not part of it, and a setting it cannot act on is refused rather than ignored",
  SetPolicy:
    'SetPolicy is not served by this agent: it has no policy engine, so a policy sent would not be enforced; it is refused rather than accepted and ignored',
};

export function notServedMessage(method: string): string {
  return notServedReasons[method] ?? `${method} is not implemented yet`;
}
