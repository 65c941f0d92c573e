import t from 'tap';
import { formatAddress, parseAddress } from '../../agent/src/transport/address.js';
import { ConfigError } from '../../agent/src/config/errors.js';

t.test('unix paths and abstract names', async (t) => {
  t.same(parseAddress('unix:///run/kata.sock'), { kind: 'unix', path: '/run/kata.sock', abstract: false });
  t.same(parseAddress('unix://@/tmp/kata-agent.socket'), { kind: 'unix', path: '/tmp/kata-agent.socket', abstract: true });
});

t.test('vsock: -1 is VMADDR_CID_ANY', async (t) => {
  t.same(parseAddress('vsock://-1:1024'), { kind: 'vsock', cid: 0xffffffff, port: 1024 });
  t.same(parseAddress('vsock://3:1024'), { kind: 'vsock', cid: 3, port: 1024 });
  t.equal(formatAddress(parseAddress('vsock://-1:1024')), 'vsock://-1:1024');
});

t.test('bad addresses say what is wrong', async (t) => {
  t.throws(() => parseAddress('bogus://x'), new ConfigError('server address "bogus://x": unknown scheme "bogus" (use unix://, vsock:// or serial://)'));
  t.throws(() => parseAddress('vsock://x:1'), ConfigError);
  t.throws(() => parseAddress('vsock://1:99999999999'), /32 bits/);
  t.throws(() => parseAddress('unix://'), /no socket path/);
  t.throws(() => parseAddress('/tmp/x.sock'), /not of the form/);
});

t.test('serial://PORTNAME names a virtio-serial port', async (t) => {
  t.same(parseAddress('serial://agent.channel.0'), { kind: 'serial', name: 'agent.channel.0' });
  t.equal(formatAddress(parseAddress('serial://agent.channel.0')), 'serial://agent.channel.0');
  t.throws(() => parseAddress('serial://'), /serial:\/\/PORTNAME/);
  t.throws(() => parseAddress('serial:///dev/vport1p1'), /serial:\/\/PORTNAME/);
});
