// Root-only (chown): CopyFile through the agent socket as a 3.x host sends it (ttrpc) with shared_fs =
// none, against a temp state root: what may not leave the shared directory is refused with nothing
// written outside, a large file in chunks appears whole or not at all, directories and symlinks, and
// the mode and owner asked for.
import crypto from 'node:crypto';
import fs from 'node:fs';
import t from 'tap';
import { AgentHarness } from '../support/agent-harness.js';

const skip = process.getuid?.() === 0 ? false : 'needs root (chown)';
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

t.test('CopyFile', { skip }, async (t) => {
  const h = await AgentHarness.start({}, 'ttrpc');
  t.teardown(() => h.stop());
  const shared = `${h.stateRoot}/shared/containers`;
  const outside = `${h.dir}/outside`;
  fs.mkdirSync(outside, { recursive: true });
  fs.writeFileSync(`${outside}/victim`, 'original\n');
  const outsideEntries = () => fs.readdirSync(outside).sort();

  const file = (p: string, data: Buffer | string, extra: { fileMode?: number; uid?: number; gid?: number; dirMode?: number } = {}) => ({
    path: p,
    fileSize: BigInt(Buffer.byteLength(data)),
    fileMode: S_IFREG | 0o644,
    dirMode: 0o755,
    uid: 0,
    gid: 0,
    offset: 0n,
    data: Buffer.from(data),
    ...extra,
  });

  await t.test('escapes are refused, naming the path, and nothing is written outside', async (t) => {
    // A symlink the host itself made earlier, pointing out of the shared directory.
    t.equal(await h.code('copyFile', { path: `${shared}/pod/evil`, fileMode: S_IFLNK | 0o777, dirMode: 0o755, data: Buffer.from(outside) }), 'OK');
    t.equal(fs.readlinkSync(`${shared}/pod/evil`), outside, 'the link itself may point anywhere');
    fs.symlinkSync('../../../outside', `${shared}/pod/rel-evil`);

    const cases: [string, string][] = [
      ['".." back out', `${shared}/pod/../../../outside/dotdot`],
      ['".." that stays inside is refused too', `${shared}/pod/../pod/dotdot-inside`],
      ['an absolute path outside', `${outside}/absolute`],
      ['a sibling that only shares the prefix', `${shared}-x/prefix`],
      ['the shared directory itself', shared],
      ['a relative path', 'pod/relative'],
      ['through the absolute symlink', `${shared}/pod/evil/through-link`],
      ['through the relative symlink', `${shared}/pod/rel-evil/through-rel-link`],
      ['a directory below the symlink', `${shared}/pod/evil/sub/deeper`],
    ];
    for (const [what, p] of cases) {
      const code = await h.code('copyFile', file(p, 'escape\n'));
      t.match(code, /^INVALID_ARGUMENT: CopyFile /, what);
      t.ok(code.includes(p) || code.includes(JSON.stringify(p)), `${what}: the message names the path (${code})`);
    }
    const viaLink = await h.code('copyFile', file(`${shared}/pod/evil/through-link`, 'x'));
    t.match(viaLink, /ELOOP|ENOTDIR/, 'the errno is named');
    t.same(outsideEntries(), ['victim'], 'nothing was created outside');
    t.equal(fs.readFileSync(`${outside}/victim`, 'utf8'), 'original\n');
    t.notOk(fs.existsSync(`${h.stateRoot}/shared/containers-x`), 'no prefix sibling made');

    // A symlink as the last component is replaced, never written through.
    fs.symlinkSync(`${outside}/victim`, `${shared}/pod/last-link`);
    t.equal(await h.code('copyFile', file(`${shared}/pod/last-link`, 'replaced\n')), 'OK');
    t.ok(fs.lstatSync(`${shared}/pod/last-link`).isFile(), 'the link became a regular file');
    t.equal(fs.readFileSync(`${outside}/victim`, 'utf8'), 'original\n', 'its old target is untouched');
    // And one at the temp name is refused rather than followed.
    fs.symlinkSync(`${outside}/victim`, `${shared}/pod/.planted.tmp`);
    t.match(await h.code('copyFile', file(`${shared}/pod/planted`, 'x')), /^INVALID_ARGUMENT: .*ELOOP/);
    t.equal(fs.readFileSync(`${outside}/victim`, 'utf8'), 'original\n');
    t.same(outsideEntries(), ['victim']);
  });

  await t.test('a 3 MiB file in 64 KiB chunks appears under its name only whole', async (t) => {
    const data = crypto.randomBytes(3 * 1024 * 1024);
    const chunk = 64 * 1024;
    const target = `${shared}/sandbox-1/c1-abc-config/big.bin`;
    for (let off = 0; off < data.length; off += chunk) {
      await h.call('copyFile', {
        path: target,
        fileSize: BigInt(data.length),
        fileMode: S_IFREG | 0o640,
        dirMode: 0o750,
        uid: 1000,
        gid: 2000,
        offset: BigInt(off),
        data: data.subarray(off, off + chunk),
      });
      if (off + chunk < data.length && fs.existsSync(target)) {
        t.fail(`present after the chunk at ${off}`);
        return;
      }
    }
    t.ok(fs.readFileSync(target).equals(data), 'byte for byte');
    const st = fs.statSync(target);
    t.equal(st.mode & 0o7777, 0o640, 'mode');
    t.equal(st.uid, 1000, 'uid');
    t.equal(st.gid, 2000, 'gid');
    t.same(fs.readdirSync(`${shared}/sandbox-1/c1-abc-config`), ['big.bin'], 'no temp file left');
    t.equal(fs.statSync(`${shared}/sandbox-1`).mode & 0o7777, 0o750, 'parents made with dir_mode');
    t.equal(fs.statSync(`${shared}/sandbox-1/c1-abc-config`).mode & 0o7777, 0o750);

    // Sent again: the old one stays readable whole until the new one replaces it.
    const next = crypto.randomBytes(200 * 1024);
    await h.call('copyFile', { ...file(target, next.subarray(0, chunk)), fileSize: BigInt(next.length) });
    t.ok(fs.readFileSync(target).equals(data), 'the previous version until the last chunk');
    for (let off = chunk; off < next.length; off += chunk)
      await h.call('copyFile', { ...file(target, next.subarray(off, off + chunk)), fileSize: BigInt(next.length), offset: BigInt(off) });
    t.ok(fs.readFileSync(target).equals(next), 'then the new one');
  });

  await t.test('an empty file; a chunk past file_size is refused', async (t) => {
    await h.call('copyFile', file(`${shared}/pod/empty`, ''));
    t.equal(fs.readFileSync(`${shared}/pod/empty`, 'utf8'), '');
    t.match(await h.code('copyFile', { ...file(`${shared}/pod/over`, 'abcdef'), fileSize: 3n }), /^INVALID_ARGUMENT: CopyFile .*\/pod\/over/);
    t.notOk(fs.existsSync(`${shared}/pod/over`));
  });

  await t.test('a directory entry and a symlink entry, with their owners and mode', async (t) => {
    const dir = `${shared}/c2-secret/..2026_12_03`;
    await h.call('copyFile', { path: dir, fileMode: S_IFDIR | 0o710, dirMode: 0o755, uid: 1234, gid: 5678 });
    const st = fs.lstatSync(dir);
    t.ok(st.isDirectory());
    t.equal(st.mode & 0o7777, 0o710, 'mode');
    t.equal(st.uid, 1234, 'uid');
    t.equal(st.gid, 5678, 'gid');
    // Again on the existing one: its mode and owner follow the request.
    await h.call('copyFile', { path: dir, fileMode: S_IFDIR | 0o755, dirMode: 0o755, uid: 1, gid: 2 });
    t.equal(fs.lstatSync(dir).mode & 0o7777, 0o755);
    t.equal(fs.lstatSync(dir).uid, 1);

    await h.call('copyFile', file(`${dir}/token`, 's3cret', { fileMode: S_IFREG | 0o600, uid: 1234, gid: 5678 }));
    const link = `${shared}/c2-secret/..data`;
    await h.call('copyFile', { path: link, fileMode: S_IFLNK | 0o777, dirMode: 0o755, uid: 1234, gid: 5678, data: Buffer.from('..2026_12_03') });
    const lst = fs.lstatSync(link);
    t.ok(lst.isSymbolicLink());
    t.equal(fs.readlinkSync(link), '..2026_12_03');
    t.equal(lst.uid, 1234, 'link uid');
    t.equal(lst.gid, 5678, 'link gid');
    t.equal(fs.readFileSync(`${link}/token`, 'utf8'), 's3cret');
    const tok = fs.statSync(`${dir}/token`);
    t.equal(tok.mode & 0o7777, 0o600);
    t.equal(tok.uid, 1234);

    // A later update points the link elsewhere in one step.
    await h.call('copyFile', { path: `${shared}/c2-secret/..2026_12_04`, fileMode: S_IFDIR | 0o755, dirMode: 0o755 });
    await h.call('copyFile', { path: link, fileMode: S_IFLNK | 0o777, dirMode: 0o755, data: Buffer.from('..2026_12_04') });
    t.equal(fs.readlinkSync(link), '..2026_12_04', 'replaced');
    t.same(
      fs.readdirSync(`${shared}/c2-secret`).filter((n) => n.endsWith('.tmp')),
      [],
      'no temp link left',
    );

    // A directory entry over an existing symlink is refused, not followed.
    t.match(await h.code('copyFile', { path: `${shared}/pod/evil`, fileMode: S_IFDIR | 0o777, dirMode: 0o755, uid: 0, gid: 0 }), /^INVALID_ARGUMENT: /);
    t.same(outsideEntries(), ['victim']);
    t.equal(fs.statSync(outside).mode & 0o7777, 0o755, 'the link target kept its mode');
  });

  await t.test('a file type other than file, directory or symlink is refused', async (t) => {
    t.match(await h.code('copyFile', { ...file(`${shared}/pod/fifo`, ''), fileMode: 0o010644 }), /^INVALID_ARGUMENT: CopyFile .*\/pod\/fifo/);
  });
});
