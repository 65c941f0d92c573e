// Our HPACK decoder (the mirror of a host encoder's table that Http2HostConn needs) against the
// RFC 7541 examples and against what nghttp2's encoder, under Node's http2 client, really sends.
import http2 from 'node:http2';
import net from 'node:net';
import t from 'tap';
import { EOS, huffmanDecode, huffmanLength } from '../../agent/src/transport/hpack-huffman.js';
import { HpackDecoder, encodeLiteralBlock, type HeaderField } from '../../agent/src/transport/hpack.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const asPairs = (fields: HeaderField[]) => fields.map((f) => [f.name.toString(), f.value.toString()]);

t.test('the Huffman code is a complete prefix code of 257 symbols', async (t) => {
  let kraft = 0;
  for (let s = 0; s <= EOS; s++) kraft += 2 ** -huffmanLength(s);
  t.equal(kraft, 1, 'the code lengths fill the code space exactly (RFC 7541 Appendix B is complete)');
  t.equal(huffmanLength(EOS), 30);
  t.equal(huffmanLength('e'.charCodeAt(0)), 5);
});

t.test('RFC 7541 C.4 Huffman strings', async (t) => {
  t.equal(huffmanDecode(hex('f1e3 c2e5 f23a 6ba0 ab90 f4ff')).toString(), 'www.example.com');
  t.equal(huffmanDecode(hex('a8eb 1064 9cbf')).toString(), 'no-cache');
  t.equal(huffmanDecode(hex('25a8 49e9 5ba9 7d7f')).toString(), 'custom-key');
  t.equal(huffmanDecode(hex('25a8 49e9 5bb8 e8b4 bf')).toString(), 'custom-value');
  t.throws(() => huffmanDecode(hex('00')), /padding/, "'0' then three 0 bits: padding that is not EOS's prefix");
  t.throws(() => huffmanDecode(hex('ff ff ff ff')), /EOS/, 'EOS inside a string');
});

t.test('RFC 7541 C.3: three requests sharing one dynamic table', async (t) => {
  const d = new HpackDecoder();
  t.same(asPairs(d.decode(hex('8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d'))), [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
  ]);
  t.same(asPairs(d.decode(hex('8286 84be 5808 6e6f 2d63 6163 6865'))), [
    [':method', 'GET'],
    [':scheme', 'http'],
    [':path', '/'],
    [':authority', 'www.example.com'],
    ['cache-control', 'no-cache'],
  ]);
  t.same(asPairs(d.decode(hex('8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65'))), [
    [':method', 'GET'],
    [':scheme', 'https'],
    [':path', '/index.html'],
    [':authority', 'www.example.com'],
    ['custom-key', 'custom-value'],
  ]);
  t.equal(d.tableLength, 3);
});

t.test('malformed blocks are HpackErrors', async (t) => {
  t.throws(() => new HpackDecoder().decode(hex('ffffffff')), { name: 'HpackError' }, 'the issue-18 block: an integer cut short');
  t.throws(() => new HpackDecoder().decode(hex('be')), /index 62/, 'a dynamic index into an empty table');
  t.throws(() => new HpackDecoder().decode(hex('80')), /index 0/);
  t.throws(() => new HpackDecoder().decode(hex('3fe926')), /above the 4096/, 'table size update to 5000');
  t.throws(() => new HpackDecoder().decode(hex('82 20')), /after a header field/);
  t.throws(() => new HpackDecoder().decode(hex('0f ff ff ff ff ff 01')), /integer larger/);
  t.throws(() => new HpackDecoder().decode(hex('44 0a 61')), /runs past the block/);
  // One 1 KB entry, then a thousand one-byte references to it: refused, not decoded to 1 MB.
  const d = new HpackDecoder(4096, 64 << 10);
  const big = Buffer.concat([hex('40 01 78 7f e9 06'), Buffer.alloc(1000, 0x61)]);
  t.equal(d.decode(big).length, 1);
  t.throws(() => d.decode(Buffer.alloc(1000, 0xbe)), /header list larger/);
});

t.test('literal blocks decode to the same fields and leave the table alone', async (t) => {
  const fields: HeaderField[] = [
    { name: Buffer.from(':authority'), value: Buffer.from('unix:%2F%2Frun'), sensitive: false },
    { name: Buffer.from('www-authenticate'), value: Buffer.from('x'.repeat(300)), sensitive: true },
    { name: Buffer.from('x-'.repeat(100)), value: Buffer.from(''), sensitive: false },
  ];
  const d = new HpackDecoder();
  const block = encodeLiteralBlock(fields);
  t.same(d.decode(block), fields);
  t.equal(d.tableLength, 0);
});

t.test("nghttp2's encoder (Node's http2 client), Huffman and dynamic table included", async (t) => {
  const captured: Buffer[] = [];
  const server = net.createServer((sock) => {
    sock.write(Buffer.from('000000040000000000', 'hex')); // our empty SETTINGS
    sock.on('data', (c: Buffer) => captured.push(c));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const session = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`);
  session.on('error', () => undefined);
  const printable = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('');
  const sent: Record<string, string>[] = [];
  for (let i = 0; i < 20; i++) {
    const h = {
      ':method': 'POST',
      ':path': `/grpc.AgentService/Call${i % 3}`,
      ':authority': 'unix:////run/vc/sbs/hpack/kata.sock',
      'content-type': 'application/grpc',
      'x-repeated': 'the same value every time',
      'x-printable': printable.slice(i) + printable.slice(0, i),
      'x-secret': `s${i}`,
      ...(i === 7 ? { 'x-large': 'L'.repeat(40_000) } : {}),
    };
    sent.push(h);
    session.request({ ...h, [http2.sensitiveHeaders]: ['x-secret'] }).on('error', () => undefined);
  }
  // Header blocks of the frames after the 24-byte preface, CONTINUATIONs joined; read as they arrive.
  const d = new HpackDecoder();
  const got: HeaderField[][] = [];
  let block: Buffer[] = [];
  let at = 24;
  for (const end = Date.now() + 10_000; got.length < sent.length && Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    const bytes = Buffer.concat(captured);
    while (at + 9 <= bytes.length && at + 9 + bytes.readUIntBE(at, 3) <= bytes.length) {
      const len = bytes.readUIntBE(at, 3);
      const type = bytes[at + 3];
      const flags = bytes[at + 4];
      const payload = bytes.subarray(at + 9, at + 9 + len);
      at += 9 + len;
      if (type !== 1 && type !== 9) continue;
      t.equal(flags & 0x28, 0, 'no padding or priority from this client');
      block.push(payload);
      if (flags & 0x4) {
        got.push(d.decode(Buffer.concat(block)));
        block = [];
      }
    }
  }
  session.destroy();
  t.equal(got.length, sent.length, 'every request decoded');
  t.ok(d.tableLength > 0, 'the client indexed fields, so later blocks used the table');
  t.notOk(Buffer.concat(captured).includes('same value every time'), 'the client Huffman-coded the values');
  got.forEach((fields, i) => {
    const m = Object.fromEntries(fields.map((f) => [f.name.toString(), f.value.toString()]));
    for (const [k, v] of Object.entries(sent[i])) t.equal(m[k], v, `request ${i} ${k}`);
    t.ok(fields.find((f) => f.name.toString() === 'x-secret')?.sensitive, `request ${i}: x-secret came never-indexed`);
  });
});
