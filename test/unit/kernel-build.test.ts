// Our guest kernel's build (rootfs-builder/src/kernel.ts) without apt or a compiler: the fragment
// parsed and checked against a final .config, and the cache — a second build with the same inputs
// compiles nothing, a changed fragment compiles again, a failed compile leaves nothing behind.
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { buildKernel, fragmentOptions, kernelKey, missingOptions, type KernelSteps } from '../../rootfs-builder/src/kernel.js';
import { errorOf, tempDir } from '../support/unit.js';

t.test('fragmentOptions: CONFIG_ lines, comments and blanks skipped, anything else refused', async (t) => {
  t.same(
    [...fragmentOptions('# c\n\nCONFIG_A=y\n  CONFIG_B_2=256\n')],
    [
      ['CONFIG_A', 'y'],
      ['CONFIG_B_2', '256'],
    ],
  );
  t.match(errorOf(() => fragmentOptions('CONFIG_A=y\nA=y\n')).message, /"A=y" is not CONFIG_NAME=value/);
});

t.test('missingOptions: what Kconfig dropped or changed, with what it has instead', async (t) => {
  const want = fragmentOptions('CONFIG_A=y\nCONFIG_B=y\nCONFIG_N=64\n');
  t.same(missingOptions(want, 'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_N=32\n'), ['CONFIG_B=y (got not set)', 'CONFIG_N=64 (got 32)']);
  t.same(missingOptions(want, 'CONFIG_A=y\nCONFIG_B=y\nCONFIG_N=64\n'), []);
});

t.test('kernelKey: changes with the source package and with the fragment', async (t) => {
  const k = kernelKey('aa', 'CONFIG_A=y\n');
  t.match(k, /^[0-9a-f]{16}$/);
  t.equal(kernelKey('aa', 'CONFIG_A=y\n'), k);
  t.not(kernelKey('ab', 'CONFIG_A=y\n'), k);
  t.not(kernelKey('aa', 'CONFIG_A=y\nCONFIG_B=y\n'), k);
});

function fakeSteps(cache: string) {
  const deb = path.join(cache, 'linux-source-6.1_6.1.999-1_all.deb');
  fs.writeFileSync(deb, 'not really a package');
  const compiles: string[] = [];
  let fail = false;
  const steps: KernelSteps = {
    fetch: () => ({ deb, version: '6.1.999-1' }),
    compile: async (work, _deb, fragment) => {
      compiles.push(fs.readFileSync(fragment, 'utf8'));
      fs.writeFileSync(path.join(work, 'build.log'), 'CC init/main.o\n');
      if (fail) throw new Error('make exited 2');
      fs.writeFileSync(path.join(work, 'vmlinux'), `ELF for ${compiles.length}`);
      fs.writeFileSync(path.join(work, '.config'), fs.readFileSync(fragment));
      return { vmlinux: path.join(work, 'vmlinux'), config: path.join(work, '.config'), release: '6.1.999' };
    },
  };
  return { steps, compiles, failNext: () => (fail = true) };
}

t.test('buildKernel: built once, then taken from the cache; a changed fragment is compiled again', async (t) => {
  const cache = tempDir(t, 'kernel-cache-');
  const fragment = path.join(cache, 'frag.config');
  fs.writeFileSync(fragment, 'CONFIG_A=y\n');
  const { steps, compiles } = fakeSteps(cache);
  const log: string[] = [];
  const first = await buildKernel({ cache, fragment, log: (l) => log.push(l) }, steps);
  t.equal(first.cached, false);
  t.equal(compiles.length, 1);
  t.equal(first.release, '6.1.999');
  t.equal(first.packageVersion, '6.1.999-1');
  t.match(first.debSha256, /^[0-9a-f]{64}$/);
  t.equal(first.vmlinux, path.join(cache, 'kernel', `6.1.999-${first.key}`, 'vmlinux'));
  t.equal(fs.readFileSync(first.vmlinux, 'utf8'), 'ELF for 1');
  t.same(
    fs.readdirSync(path.join(cache, 'kernel')).filter((d) => d.startsWith('build-')),
    [],
    'the work tree is gone',
  );

  const second = await buildKernel({ cache, fragment, log: (l) => log.push(l) }, steps);
  t.equal(second.cached, true, 'same source and fragment: cached');
  t.equal(compiles.length, 1, 'nothing compiled');
  t.equal(second.vmlinux, first.vmlinux);
  t.match(log.at(-1), /cached/);

  fs.writeFileSync(fragment, 'CONFIG_A=y\nCONFIG_B=y\n');
  const third = await buildKernel({ cache, fragment, log: () => undefined }, steps);
  t.equal(third.cached, false, 'a changed fragment compiles again');
  t.equal(compiles.length, 2);
  t.not(third.key, first.key);
  t.ok(fs.existsSync(first.vmlinux), 'the earlier build stays cached beside it');
});

t.test('buildKernel: a failed compile caches nothing and keeps its log', async (t) => {
  const cache = tempDir(t, 'kernel-cache-');
  const fragment = path.join(cache, 'frag.config');
  fs.writeFileSync(fragment, 'CONFIG_A=y\n');
  const { steps, failNext } = fakeSteps(cache);
  failNext();
  await t.rejects(buildKernel({ cache, fragment, log: () => undefined }, steps), /make exited 2/);
  t.same(fs.readdirSync(path.join(cache, 'kernel')).sort(), ['last-build.log'], 'no kernel dir, no work tree; the log kept');
  t.match(errorOf(() => fragmentOptions('oops\n')).message, /not CONFIG_NAME=value/);
});
