import fs from 'node:fs';
import { create, fromJson, ScalarType, type DescField, type DescMessage, type Message } from '@bufbuild/protobuf';
import { parseBool } from '../../agent/src/config/values.js';
import { splitCmdline } from '../../agent/src/config/words.js';

function fieldByName(schema: DescMessage, key: string): DescField | undefined {
  return schema.fields.find((f) => f.name === key || f.localName === key || f.jsonName === key);
}

function scalarJson(type: ScalarType, text: string): unknown {
  switch (type) {
    case ScalarType.BOOL:
      return parseBool(text);
    case ScalarType.STRING:
      return text;
    case ScalarType.BYTES:
      return Buffer.from(text).toString('base64');
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return Number(text);
    default:
      // 64-bit integers travel as JSON strings; protobuf-es range-checks them.
      return text;
  }
}

/** `k=v` with k a field name of the request; lists are comma separated, messages JSON. */
function fieldJson(schema: DescMessage, key: string, text: string): [string, unknown] {
  const f = fieldByName(schema, key);
  if (!f) throw new Error(`${schema.name} has no field "${key}" (fields: ${schema.fields.map((x) => x.name).join(', ')})`);
  if (f.fieldKind === 'scalar') return [f.name, scalarJson(f.scalar, text)];
  if (f.fieldKind === 'enum') return [f.name, /^\d+$/.test(text) ? Number(text) : text];
  if (f.fieldKind === 'list' && f.listKind === 'scalar') return [f.name, text.split(',').map((t) => scalarJson(f.scalar, t))];
  return [f.name, JSON.parse(text)];
}

/**
 * Builds a request from kata agent-ctl's argument forms: nothing (defaults), `json://{...}`,
 * `file:///path.json`, or `k=v k2="a b"` pairs.
 */
export function buildRequest(schema: DescMessage, args: string): Message {
  const text = args.trim();
  if (text === '') return create(schema);
  let json: unknown;
  if (text.startsWith('json://')) json = JSON.parse(text.slice('json://'.length));
  else if (text.startsWith('file://')) json = JSON.parse(fs.readFileSync(text.slice('file://'.length), 'utf8'));
  else {
    const obj: Record<string, unknown> = {};
    for (const word of splitCmdline(text)) {
      const eq = word.indexOf('=');
      if (eq <= 0) throw new Error(`argument "${word}" is not key=value, json://{...} or file:///path`);
      const [k, v] = fieldJson(schema, word.slice(0, eq), word.slice(eq + 1));
      obj[k] = v;
    }
    json = obj;
  }
  return fromJson(schema, json as never);
}
