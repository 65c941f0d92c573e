// Limits both gRPC servers (grpc-transport.ts on grpc-js, grpc-h2-server.ts on our own HTTP/2) announce.

/**
 * Calls (HTTP/2 streams) one connection may have open, announced in SETTINGS so a client such as
 * grpc-go queues further calls on its side. The same figure and reasons as ttrpc's cap
 * (MAX_IN_FLIGHT in ttrpc-transport.ts). Without it, HTTP/2 flow control alone let a client that
 * never reads leave about 6000 Checks open on one connection (agent RSS 45 → 128 MB, measured)
 * before Node stopped reading it.
 */
export const MAX_CONCURRENT_CALLS = 256;

/** kata 1.x hosts (grpc-go) cap messages at 4 MiB; accept what they may send, refuse more. */
export const MAX_MESSAGE = 4 << 20;
