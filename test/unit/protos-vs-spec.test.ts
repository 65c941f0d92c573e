// Every message, field, number, label and type in our .proto files must match the wire facts in
// protos/spec/agent-api.tsv, in both directions: nothing missing, nothing invented.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ScalarType, type DescEnum, type DescField, type DescFile, type DescMessage, type DescService } from '@bufbuild/protobuf';
import { file_agent } from '../../protos/gen/agent_pb.js';
import { file_compat_1x } from '../../protos/gen/compat_1x_pb.js';
import { file_csi } from '../../protos/gen/csi_pb.js';
import { file_health } from '../../protos/gen/health_pb.js';
import { file_oci } from '../../protos/gen/oci_pb.js';
import { file_types } from '../../protos/gen/types_pb.js';

// The table is part of the repo, so a missing file fails the test instead of skipping it.
const specPath = path.resolve(__dirname, '../../..', 'protos/spec/agent-api.tsv');

interface Row {
  kind: string;
  file: string;
  pkg: string;
  msg: string;
  name: string;
  num: string;
  label: string;
  type: string;
  resp: string;
  since: string;
  note: string;
}

const ourFiles: DescFile[] = [file_agent, file_oci, file_types, file_health, file_csi];

function allMessages(files: DescFile[]): Map<string, DescMessage> {
  const out = new Map<string, DescMessage>();
  const add = (m: DescMessage) => {
    out.set(m.typeName, m);
    m.nestedMessages.forEach(add);
  };
  files.forEach((f) => f.messages.forEach(add));
  return out;
}

function allEnums(files: DescFile[]): Map<string, DescEnum> {
  const out = new Map<string, DescEnum>();
  const addMsg = (m: DescMessage) => {
    m.nestedEnums.forEach((e) => out.set(e.typeName, e));
    m.nestedMessages.forEach(addMsg);
  };
  files.forEach((f) => {
    f.enums.forEach((e) => out.set(e.typeName, e));
    f.messages.forEach(addMsg);
  });
  return out;
}

/** The field's type as the TSV spells it: "string", "grpc.Process", "map<string,uint64>". */
function typeOf(f: DescField): string {
  const named = (x: { typeName: string }) => x.typeName;
  switch (f.fieldKind) {
    case 'scalar':
      return ScalarType[f.scalar].toLowerCase();
    case 'enum':
      return named(f.enum);
    case 'message':
      return named(f.message);
    case 'list':
      return f.listKind === 'scalar' ? ScalarType[f.scalar].toLowerCase() : f.listKind === 'enum' ? named(f.enum) : named(f.message);
    case 'map': {
      const v = f.mapKind === 'scalar' ? ScalarType[f.scalar].toLowerCase() : f.mapKind === 'enum' ? named(f.enum) : named(f.message);
      return `map<${ScalarType[f.mapKey].toLowerCase()},${v}>`;
    }
  }
}

function labelOf(f: DescField): string {
  if (f.fieldKind === 'list') return 'repeated';
  if (f.fieldKind === 'map') return 'map';
  if (f.oneof && !f.proto.proto3Optional) return `oneof:${f.oneof.name}`;
  if (f.proto.proto3Optional) return 'optional';
  return 'singular';
}

t.test('proto files match the wire facts', async (t) => {
  const rows: Row[] = fs
    .readFileSync(specPath, 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => {
      const c = l.split('\t');
      return { kind: c[0], file: c[1], pkg: c[2], msg: c[3], name: c[4], num: c[5], label: c[6], type: c[7], resp: c[8], since: c[9], note: c[10] ?? '' };
    });
  const messages = allMessages(ourFiles);
  const compat = allMessages([file_compat_1x]);
  const enums = allEnums(ourFiles);
  const services = new Map<string, DescService>(ourFiles.flatMap((f) => f.services).map((s) => [s.typeName, s]));

  const isConflict1x = (r: Row) => r.since === '1.x-only' && r.note.startsWith('CONFLICT');
  const problems: string[] = [];
  const seen = new Set<string>();

  for (const r of rows) {
    if (r.kind === 'field') {
      const msgName = isConflict1x(r) ? `grpc.compat1x.${r.msg}` : `${r.pkg}.${r.msg}`;
      const m = (isConflict1x(r) ? compat : messages).get(msgName);
      if (!m) {
        problems.push(`message ${msgName} missing`);
        continue;
      }
      const f = m.fields.find((x) => x.name === r.name);
      if (!f) {
        problems.push(`${msgName}.${r.name} missing`);
        continue;
      }
      if (!isConflict1x(r)) seen.add(`${msgName}.${r.name}`);
      if (String(f.number) !== r.num) problems.push(`${msgName}.${r.name}: number ${f.number}, spec ${r.num}`);
      if (labelOf(f) !== r.label) problems.push(`${msgName}.${r.name}: label ${labelOf(f)}, spec ${r.label}`);
      // The compat package holds the 1.x view of the same messages, so its types name grpc.compat1x.X.
      const type = typeOf(f).replace(/^grpc\.compat1x\./, 'grpc.');
      if (type !== r.type) problems.push(`${msgName}.${r.name}: type ${type}, spec ${r.type}`);
    } else if (r.kind === 'enum') {
      const e = enums.get(`${r.pkg}.${r.msg}`);
      const v = e?.values.find((x) => x.name === r.name);
      if (!v) problems.push(`enum value ${r.pkg}.${r.msg}.${r.name} missing`);
      else if (String(v.number) !== r.num) problems.push(`enum value ${r.pkg}.${r.msg}.${r.name}: ${v.number}, spec ${r.num}`);
    } else if (r.kind === 'rpc') {
      const s = services.get(`${r.pkg}.${r.msg}`);
      const m = s?.methods.find((x) => x.name === r.name);
      if (!m) {
        problems.push(`rpc ${r.pkg}.${r.msg}/${r.name} missing`);
        continue;
      }
      seen.add(`rpc ${r.msg}/${r.name}`);
      if (m.input.typeName !== r.type) problems.push(`rpc ${r.name}: input ${m.input.typeName}, spec ${r.type}`);
      if (m.output.typeName !== r.resp) problems.push(`rpc ${r.name}: output ${m.output.typeName}, spec ${r.resp}`);
      if (m.methodKind !== 'unary') problems.push(`rpc ${r.name} must be unary`);
    }
  }
  // The other direction: nothing in our protos that the facts do not list.
  for (const m of messages.values())
    for (const f of m.fields) if (!seen.has(`${m.typeName}.${f.name}`)) problems.push(`${m.typeName}.${f.name} is not in the spec`);
  for (const s of services.values())
    for (const m of s.methods) if (!seen.has(`rpc ${s.name}/${m.name}`)) problems.push(`rpc ${s.name}/${m.name} is not in the spec`);

  t.same(problems, [], 'no differences');
  t.equal(rows.filter((r) => r.kind === 'rpc').length, 47, 'the spec lists 45 AgentService + 2 Health RPCs');
  t.equal(services.get('grpc.AgentService')?.methods.length, 45, 'AgentService has every RPC of both generations');
});

t.test('generated code is current with the .proto files', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const root = path.resolve(__dirname, '../../..');
  const r = spawnSync(process.execPath, [path.join(root, 'scripts/gen-protos.mjs'), '--check'], { encoding: 'utf8' });
  t.equal(r.status, 0, `npm run gen --check: ${r.stdout}${r.stderr}`);
});
