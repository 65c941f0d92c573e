// GetDiagnosticData "termination_log" against a temp shared directory with the real libc: what is read
// (at most 4096 bytes, as UTF-8), and each refusal with its status.
import { create } from '@bufbuild/protobuf';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import t from 'tap';
import { GetDiagnosticDataRequestSchema } from '../../protos/gen/agent_pb.js';
import { SpecSchema, type Spec } from '../../protos/gen/oci_pb.js';
import { diagnosticData, MAX_TERMINATION_MESSAGE, TERMINATION_PATH_ANNOTATION } from '../../agent/src/container/termination-message.js';
import { notFound } from '../../agent/src/errors.js';
import { libc } from '../../agent/src/linux/index.js';
import { Code, toRpcError } from '../../agent/src/rpc/status.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kata-termlog-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const shared = path.join(dir, 'shared', 'containers');
fs.mkdirSync(path.join(shared, 'c1'), { recursive: true });
fs.writeFileSync(path.join(dir, 'outside'), 'secret outside\n');

const specWith = (source: string | undefined, annotation: string | null = '/dev/termination-log'): Spec =>
  create(SpecSchema, {
    Annotations: annotation === null ? {} : { [TERMINATION_PATH_ANNOTATION]: annotation },
    Mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      ...(source === undefined ? [] : [{ destination: '/dev/termination-log', type: 'bind', source, options: ['rbind', 'rw'] }]),
    ],
  });

const specs = new Map<string, Spec>();
const deps = {
  libc: libc(),
  sharedDir: shared,
  specOf: (id: string) => {
    const s = specs.get(id);
    if (!s) throw notFound(`container ${id} not found`);
    return s;
  },
};
const ask = (containerId: string, logType = 'termination_log') => diagnosticData(deps, create(GetDiagnosticDataRequestSchema, { logType, containerId }));
/** The status the host would get: code name and message. */
const status = (containerId: string, logType?: string) => {
  try {
    return `OK ${JSON.stringify(ask(containerId, logType))}`;
  } catch (err) {
    const e = toRpcError(err);
    return `${Code[e.code]}: ${e.message}`;
  }
};

t.test('the file mounted at terminationMessagePath is read', async (t) => {
  const src = path.join(shared, 'c1', 'c1-0a1b-termination-log');
  fs.writeFileSync(src, 'exited: config missing\n');
  specs.set('c1', specWith(src));
  t.equal(ask('c1'), 'exited: config missing\n');
  // The last mount at the destination is what the container saw.
  const other = path.join(shared, 'c1', 'later');
  fs.writeFileSync(other, 'the later mount\n');
  const spec = specWith(src);
  spec.Mounts.push(create(SpecSchema, { Mounts: [{ destination: '/dev/termination-log/', type: 'bind', source: other }] }).Mounts[0]);
  specs.set('c1b', spec);
  t.equal(ask('c1b'), 'the later mount\n', 'a trailing slash on the destination matches too');
});

t.test('at most 4096 bytes, as UTF-8 with invalid bytes replaced', async (t) => {
  const src = path.join(shared, 'c1', 'big');
  fs.writeFileSync(src, Buffer.alloc(MAX_TERMINATION_MESSAGE + 1000, 'x'));
  specs.set('big', specWith(src));
  t.equal(ask('big'), 'x'.repeat(MAX_TERMINATION_MESSAGE));
  // "é" is 2 bytes: the one cut at byte 4096 becomes U+FFFD, like any invalid byte.
  fs.writeFileSync(src, Buffer.concat([Buffer.from('a'.repeat(MAX_TERMINATION_MESSAGE - 1)), Buffer.from('é'), Buffer.from('tail')]));
  t.equal(ask('big'), 'a'.repeat(MAX_TERMINATION_MESSAGE - 1) + '\ufffd');
  fs.writeFileSync(src, Buffer.from([0x6f, 0x6b, 0xff, 0x0a]));
  t.equal(ask('big'), 'ok\ufffd\n');
});

t.test('a file not written yet is an empty message', async (t) => {
  specs.set('nofile', specWith(path.join(shared, 'c1', 'never-written')));
  t.equal(status('nofile'), 'OK ""');
  specs.set('nodir', specWith(path.join(shared, 'no-such-dir', 'termination-log')));
  t.equal(status('nodir'), 'OK ""');
});

t.test('refusals name what is wrong, and nothing outside the shared directory is read', async (t) => {
  fs.symlinkSync(path.join(dir, 'outside'), path.join(shared, 'c1', 'link-out'));
  fs.symlinkSync(dir, path.join(shared, 'dirlink'));
  fs.mkdirSync(path.join(shared, 'c1', 'a-dir'));
  execFileSync('mkfifo', [path.join(shared, 'c1', 'fifo')]);
  const cases: [string, Spec, RegExp][] = [
    ['a symlink as the file', specWith(path.join(shared, 'c1', 'link-out')), /^FAILED_PRECONDITION: GetDiagnosticData cx: .*link-out.*ELOOP/],
    [
      'a symlink on the way',
      specWith(path.join(shared, 'dirlink', 'outside')),
      /^FAILED_PRECONDITION: GetDiagnosticData cx: .*dirlink\/outside: a symlink or a non-directory is in the way \(ENOTDIR\)/,
    ],
    ['a source outside the shared directory', specWith(path.join(dir, 'outside')), /^FAILED_PRECONDITION: .*is not below .*shared\/containers\//],
    ['a ".." that leads out', specWith(`${shared}/../../outside`), /^FAILED_PRECONDITION: .*is not below/],
    ['a prefix sibling', specWith(`${shared}-x/termination-log`), /^FAILED_PRECONDITION: .*is not below/],
    ['a directory', specWith(path.join(shared, 'c1', 'a-dir')), /^FAILED_PRECONDITION: .*a-dir is not a regular file/],
    ['a FIFO (and the call does not hang)', specWith(path.join(shared, 'c1', 'fifo')), /^FAILED_PRECONDITION: .*fifo is not a regular file/],
    [
      'no annotation',
      specWith(path.join(shared, 'c1', 'big'), null),
      /^FAILED_PRECONDITION: GetDiagnosticData cx: the container's spec has no io\.kubernetes\.container\.terminationMessagePath annotation/,
    ],
    [
      'no mount at the path',
      specWith(undefined),
      /^FAILED_PRECONDITION: GetDiagnosticData cx: no mount of the container is at its terminationMessagePath \/dev\/termination-log/,
    ],
  ];
  for (const [what, spec, want] of cases) {
    specs.set('cx', spec);
    t.match(status('cx'), want, what);
  }
  t.match(status('ghost'), /^NOT_FOUND: container ghost not found/, 'unknown container');
  t.match(status('c1', 'agent_log'), /^INVALID_ARGUMENT: GetDiagnosticData: log_type "agent_log" is not supported \(supported: "termination_log"\)/);
  t.match(status('c1', ''), /^INVALID_ARGUMENT: .*log_type ""/);
  t.match(status('../c1'), /^INVALID_ARGUMENT: /, 'a container id that is no id');
});
