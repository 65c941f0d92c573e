// Stdio throughput: 100 MB through ProcessIO and the stdio handlers (in-process dispatch, so the
// protobuf encode/decode of every 32 KiB message is counted, the wire is not), against a plain
// `head | cat` pipe moving the same bytes in the same run.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { ReadStreamRequestSchema, ReadStreamResponseSchema, WriteStreamRequestSchema } from '../protos/gen/agent_pb.js';
import { ioHandlers } from '../agent/src/io/handlers.js';
import { createProcessIO, type ProcessIO } from '../agent/src/io/process-io.js';
import { libc } from '../agent/src/linux/index.js';
import { createLogger } from '../agent/src/log/logger.js';
import { dialect3x } from '../agent/src/rpc/dialect.js';
import { AgentRpcService } from '../agent/src/rpc/service.js';
import { notFound } from '../agent/src/rpc/status.js';
import { spawnOnIO } from '../test/io/spawn-with-io.js';
import type { BenchOptions, BenchRow, MeasureFn } from './types.js';

const MB = 1 << 20;
const TOTAL = 100 * MB;
// What the kata shim asks for per ReadStdout, and what it sends per WriteStdin.
const CHUNK = 32 * 1024;

const signal = new AbortController().signal;

function oneProcessService(io: ProcessIO): AgentRpcService {
  const lookup = (cid: string, eid: string) => {
    if (cid !== 'bench' || eid !== '') throw notFound(`process ${cid}/${eid}`);
    return io;
  };
  return new AgentRpcService(createLogger('silent'), [ioHandlers(lookup)], {});
}

function spawnOn(io: ProcessIO, script: string) {
  return once(spawnOnIO(io, 'sh', ['-c', script]), 'exit');
}

async function readStdoutMBps(terminal: boolean): Promise<number> {
  const io = createProcessIO({ terminal, pipeSize: 0, libc: libc() });
  const service = oneProcessService(io);
  const entry = service.lookup('grpc.AgentService', 'ReadStdout')!;
  const req = toBinary(ReadStreamRequestSchema, create(ReadStreamRequestSchema, { containerId: 'bench', len: CHUNK }));
  const start = process.hrtime.bigint();
  // A pty in its default mode would turn \n into \r\n; zeros pass through unchanged.
  const exited = spawnOn(io, `head -c ${TOTAL} /dev/zero`);
  let got = 0;
  for (;;) {
    let res;
    try {
      res = fromBinary(ReadStreamResponseSchema, await service.dispatch(entry, req, { dialect: dialect3x, signal }));
    } catch (err) {
      if ((err as { expected?: boolean }).expected) break; // the end-of-stream error
      throw err;
    }
    got += res.data.length;
  }
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  await exited;
  io.dispose();
  if (got !== TOTAL) throw new Error(`read ${got} bytes, expected ${TOTAL}`);
  return TOTAL / MB / secs;
}

async function writeStdinMBps(): Promise<number> {
  const io = createProcessIO({ terminal: false, pipeSize: 0, libc: libc() });
  const service = oneProcessService(io);
  const entry = service.lookup('grpc.AgentService', 'WriteStdin')!;
  const req = toBinary(WriteStreamRequestSchema, create(WriteStreamRequestSchema, { containerId: 'bench', data: new Uint8Array(CHUNK) }));
  const close = toBinary(WriteStreamRequestSchema, create(WriteStreamRequestSchema, { containerId: 'bench' }));
  const start = process.hrtime.bigint();
  const exited = spawnOn(io, 'cat >/dev/null');
  for (let sent = 0; sent < TOTAL; sent += CHUNK) await service.dispatch(entry, req, { dialect: dialect3x, signal });
  await service.dispatch(entry, close, { dialect: dialect3x, signal });
  const [code] = await exited;
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  io.dispose();
  if (code !== 0) throw new Error(`cat exited ${code}`);
  return TOTAL / MB / secs;
}

async function shellMBps(script: string): Promise<number> {
  const start = process.hrtime.bigint();
  const child = spawn('sh', ['-c', script], { stdio: 'ignore' });
  const [code] = await once(child, 'exit');
  if (code !== 0) throw new Error(`${script}: exited ${code}`);
  return TOTAL / MB / (Number(process.hrtime.bigint() - start) / 1e9);
}

/** Pipe peer: the same bytes from head to cat through one kernel pipe, timed the same way. */
const catPipeMBps = () => shellMBps(`head -c ${TOTAL} /dev/zero | cat >/dev/null`);

/**
 * pty peer: util-linux `script` copying a pty master to a pipe in C. A pty hands out ~4 KB per
 * read, so a pipe is the wrong yardstick for it.
 */
const scriptPtyMBps = () => shellMBps(`script -qec 'head -c ${TOTAL} /dev/zero' /dev/null </dev/null | cat >/dev/null`);

async function samples(n: number, f: () => Promise<number>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await f());
  return out;
}

export const measure: MeasureFn = async (opts: BenchOptions): Promise<BenchRow[]> => {
  const n = opts.quick ? 3 : 10;
  opts.progress(`stdio: head | cat and script peers, ${n} x 100 MB`);
  const peer = { name: 'head | cat pipe', samples: await samples(n, catPipeMBps) };
  const ptyPeer = { name: 'script (util-linux) over a pty', samples: await samples(n, scriptPtyMBps) };
  opts.progress(`stdio: ReadStdout over pipes, ${n} x 100 MB`);
  const readPipe = await samples(n, () => readStdoutMBps(false));
  opts.progress(`stdio: ReadStdout over a pty, ${n} x 100 MB`);
  const readPty = await samples(n, () => readStdoutMBps(true));
  opts.progress(`stdio: WriteStdin, ${n} x 100 MB`);
  const write = await samples(n, writeStdinMBps);
  const row = (measure: string, s: number[], p = peer): BenchRow => ({
    measure,
    unit: 'MB/s',
    higherIsBetter: true,
    ours: { name: 'ProcessIO + handlers', samples: s },
    peer: p,
  });
  return [
    row('ReadStdout 100 MB, 32 KiB reads (pipes)', readPipe),
    row('ReadStdout 100 MB, 32 KiB reads (pty)', readPty, ptyPeer),
    row('WriteStdin 100 MB, 32 KiB writes', write),
  ];
};
