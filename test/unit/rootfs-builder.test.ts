import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import t from 'tap';
import { listTree, makeCpio } from '../../rootfs-builder/src/archive.js';
import { stage1Init } from '../../rootfs-builder/src/stage1.js';
import { extractVmlinux, isElf } from '../../rootfs-builder/src/vmlinux.js';

const fakeElf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]), crypto.randomBytes(5000)]);
const setupCode = crypto.randomBytes(3000);
const trailer = crypto.randomBytes(700);

t.test('vmlinux: finds a gzip payload inside a bzImage-like file', async (t) => {
  const image = Buffer.concat([setupCode, zlib.gzipSync(fakeElf), trailer]);
  const { elf, format } = extractVmlinux(image);
  t.equal(format, 'gzip');
  t.ok(elf.equals(fakeElf), 'exact ELF bytes');
});

t.test("vmlinux: xz payload (the Debian kernel's format)", { skip: spawnSync('which', ['xz']).status !== 0 && 'xz not installed' }, async (t) => {
  const xz = spawnSync('xz', ['-c', '--check=crc32'], { input: fakeElf }).stdout;
  const { elf, format } = extractVmlinux(Buffer.concat([setupCode, xz, trailer]));
  t.equal(format, 'xz');
  t.ok(elf.equals(fakeElf));
});

t.test('vmlinux: an image without a kernel is a clear error; an ELF passes through', async (t) => {
  t.throws(() => extractVmlinux(crypto.randomBytes(4096)), /no compressed ELF kernel found/);
  t.ok(isElf(fakeElf));
  t.equal(extractVmlinux(fakeElf).format, 'none');
});

t.test('cpio: sorted, root-owned, same bytes from the same tree', { skip: spawnSync('which', ['cpio']).status !== 0 && 'cpio not installed' }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cpio-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const tree = path.join(dir, 'tree');
  fs.mkdirSync(path.join(tree, 'b', 'c'), { recursive: true });
  fs.writeFileSync(path.join(tree, 'b', 'c', 'f'), 'hello');
  fs.writeFileSync(path.join(tree, 'a'), 'x');
  fs.symlinkSync('/a', path.join(tree, 'b', 'link'));
  t.same(listTree(tree), ['.', 'a', 'b', 'b/c', 'b/c/f', 'b/link']);
  makeCpio(tree, path.join(dir, '1.cpio'));
  makeCpio(tree, path.join(dir, '2.cpio'));
  t.ok(fs.readFileSync(path.join(dir, '1.cpio')).equals(fs.readFileSync(path.join(dir, '2.cpio'))), 'reproducible');
  const listing = spawnSync('cpio', ['-itv', '--quiet'], { input: fs.readFileSync(path.join(dir, '1.cpio')) }).stdout.toString();
  t.match(listing, /root\s+root.*b\/c\/f/, 'owned by root whatever the builder is');
  t.match(listing, /b\/link -> \/a/);
});

t.test('stage-1 init loads modules in the given order and honours root=, rw and init=', async (t) => {
  const script = stage1Init(['virtio', 'virtio_blk', 'ext4']);
  t.match(script, /for m in virtio virtio_blk ext4; do/);
  t.match(script, /root=\/dev\/\*\) root=\$\{w#root=\}/);
  t.match(script, /exec busybox switch_root \/sysroot "\$init"/);
  t.match(script, /poweroff -f/, 'a root that cannot be mounted powers off instead of hanging');
});

t.test('bundle: KATA_REPRODUCIBLE=1 gives the same bytes twice and ships no V8 code cache', async (t) => {
  const repo = path.resolve(__dirname, '..', '..', '..');
  const dirs = [0, 1].map(() => fs.mkdtempSync(path.join(os.tmpdir(), 'kata-bundle-')));
  t.teardown(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  const digests = dirs.map((d) => {
    const r = spawnSync(process.execPath, [path.join(repo, 'rootfs-builder', 'bundle.mjs'), d], {
      env: { ...process.env, KATA_REPRODUCIBLE: '1' },
      encoding: 'utf8',
    });
    t.equal(r.status, 0, `bundle.mjs exit status (${r.stderr.trim().split('\n').pop()})`);
    const files = (fs.readdirSync(d, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(d, f)).isFile()).sort();
    return files.map(
      (f) =>
        `${f} ${crypto
          .createHash('sha256')
          .update(fs.readFileSync(path.join(d, f)))
          .digest('hex')}`,
    );
  });
  t.ok(
    digests[0].some((l) => l.startsWith('agent.js ')),
    'agent.js is in the bundle',
  );
  t.notOk(
    digests[0].some((l) => l.split(' ')[0].endsWith('.cache')),
    'no .cache file',
  );
  t.same(digests[1], digests[0], 'identical files and bytes');
});
