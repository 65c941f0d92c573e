// kata-rootfs-builder / `npm run image`: guest tree (make-tree.sh, the recipe Dockerfile.rootfs
// shares) → vmlinux, initrd, disk image (kata's layout, disk-image.ts) and stage-1 initramfs in one
// folder, with sizes printed.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import util from 'node:util';
import { ext4SizeMiB, makeCpio, makeExt4, sha256File } from './archive.js';
import { assembleImage, imageSize, ROOTFS_OFFSET } from './disk-image.js';
import { makeStage1Tree } from './stage1.js';
import { extractVmlinuxFile } from './vmlinux.js';
import { buildKernel } from './kernel.js';

const repo = path.resolve(__dirname, '..', '..', '..');

/** Fixed, so that the same inputs give the same image bytes. */
const IMAGE_UUID = '6b617461-6167-656e-7474-730000000001';
const DEFAULT_EPOCH = 1700000000;

export const outputNames = {
  image: 'kata-containers.img',
  initrd: 'kata-containers-initrd.img',
  kernel: 'vmlinux',
  stage1: 'kata-containers-initramfs.img',
} as const;

interface Args {
  out: string;
  fromTree?: string;
  cache?: string;
  /** debian: Debian's kernel with its modules (stage 1 loads the root's); kata: our own, all built in. */
  kernel: 'debian' | 'kata';
}

const usage = `usage: kata-rootfs-builder [--out DIR] [--from-tree DIR] [--cache DIR] [--kernel debian|kata]
  --out DIR        output folder (default: build/ in the repository)
  --kernel K       debian (default, or $KATA_KERNEL): Debian's kernel and modules; kata: our own
                   kernel from linux-source-6.1 + rootfs-builder/kernel/kata-guest.config, every
                   driver built in, as kata's image = needs (compiled once, 12-17 min on 2 cores)
  --from-tree DIR  use a tree made by Dockerfile.rootfs (docker build --output) instead of building one
  --cache DIR      download cache (default: ~/.cache/kata-agent-ts, or $KATA_CACHE_DIR)`;

function parseCli(argv: string[]): Args {
  let v;
  try {
    v = util.parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        out: { type: 'string' },
        'from-tree': { type: 'string' },
        cache: { type: 'string' },
        kernel: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    throw new Error(`${(err as Error).message.split('. ')[0]}\n${usage}`, { cause: err });
  }
  if (v.help) {
    console.log(usage);
    process.exit(0);
  }
  const resolved = (p: string | undefined) => (p === undefined ? undefined : path.resolve(p));
  const kernel = v.kernel ?? process.env.KATA_KERNEL ?? 'debian';
  if (kernel !== 'debian' && kernel !== 'kata') throw new Error(`--kernel ${kernel}: debian or kata expected\n${usage}`);
  return { out: resolved(v.out) ?? path.join(repo, 'build'), fromTree: resolved(v['from-tree']), cache: resolved(v.cache), kernel };
}

const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;

function timed<T>(label: string, fn: () => T): T {
  const t0 = Date.now();
  console.log(`== ${label}`);
  const r = fn();
  console.log(`   ${label}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return r;
}

export async function build(args: Args): Promise<void> {
  const t0 = Date.now();
  fs.mkdirSync(args.out, { recursive: true });
  const cache = args.cache ?? process.env.KATA_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'kata-agent-ts');
  const kernel =
    args.kernel === 'kata'
      ? await (async () => {
          console.log('== kernel (linux-source-6.1 + rootfs-builder/kernel/kata-guest.config)');
          const k0 = Date.now();
          const k = await buildKernel({ cache, fragment: path.join(repo, 'rootfs-builder', 'kernel', 'kata-guest.config') });
          console.log(`   kernel: ${((Date.now() - k0) / 1000).toFixed(1)} s (${k.cached ? `cached, built in ${k.buildSeconds} s` : 'built'})`);
          return k;
        })()
      : undefined;
  const tree = args.fromTree ?? path.join(args.out, 'tree');
  if (!args.fromTree) {
    timed('guest tree (rootfs-builder/make-tree.sh)', () => {
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        SOURCE_DATE_EPOCH: process.env.SOURCE_DATE_EPOCH ?? String(DEFAULT_EPOCH),
        KATA_CACHE_DIR: cache,
        KATA_KERNEL: args.kernel,
        ...(kernel ? { KATA_KERNEL_RELEASE: kernel.release } : {}),
      };
      const r = spawnSync('bash', [path.join(repo, 'rootfs-builder', 'make-tree.sh'), tree], { stdio: 'inherit', env });
      if (r.status !== 0) throw new Error(`make-tree.sh failed (exit ${r.status ?? r.signal})`);
    });
  }
  const rootfs = path.join(tree, 'rootfs');
  for (const need of [rootfs, ...(kernel ? [] : [path.join(tree, 'vmlinuz')]), path.join(tree, 'manifest.txt')]) {
    if (!fs.existsSync(need)) throw new Error(`${need} is missing: the tree must come from make-tree.sh or Dockerfile.rootfs`);
  }
  const kver = fs.readdirSync(path.join(rootfs, 'lib', 'modules'))[0];
  const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? DEFAULT_EPOCH);
  const out = (k: keyof typeof outputNames) => path.join(args.out, outputNames[k]);
  // With our kernel nothing needs loading before the root is mounted: no stage 1.
  const outputs = (Object.keys(outputNames) as (keyof typeof outputNames)[]).filter((k) => !(kernel && k === 'stage1'));
  fs.rmSync(out('stage1'), { force: true });

  if (kernel) {
    timed('vmlinux (our kernel, from the cache)', () => fs.copyFileSync(kernel.vmlinux, out('kernel')));
  } else {
    timed('vmlinux (uncompressed kernel for PVH boot)', () => {
      const format = extractVmlinuxFile(path.join(tree, 'vmlinuz'), out('kernel'));
      console.log(`   kernel ${kver} was ${format}-compressed`);
    });
  }
  timed('initrd (cpio)', () => makeCpio(rootfs, out('initrd')));
  timed('disk image (MBR + DAX metadata + ext4, mkfs.ext4 -d)', () => {
    const size = imageSize(ext4SizeMiB(rootfs) * 1048576);
    const part = path.join(args.out, 'rootfs.ext4');
    makeExt4(rootfs, part, { uuid: IMAGE_UUID, epoch, label: 'kata-rootfs', sizeMiB: (size - ROOTFS_OFFSET) / 1048576, journal: true });
    assembleImage(part, out('image'), IMAGE_UUID);
    fs.rmSync(part);
    console.log(`   ${mib(size)}: partition 1 (ext4) at 3 MiB; DAX metadata for nvdimm (root=/dev/pmem0p1), MBR for virtio-blk (root=/dev/vda1)`);
  });
  if (!kernel) {
    timed('stage-1 initramfs', () => {
      const stage1 = path.join(args.out, 'stage1-tree');
      const mods = makeStage1Tree(rootfs, kver, stage1);
      const touch = spawnSync('find', [stage1, '-exec', 'touch', '-h', '-d', `@${epoch}`, '{}', '+']);
      if (touch.status !== 0) throw new Error(`touch in ${stage1} failed: ${touch.stderr}`);
      makeCpio(stage1, out('stage1'));
      console.log(`   modules: ${mods.join(' ')}`);
    });
  }

  const lines = [fs.readFileSync(path.join(tree, 'manifest.txt'), 'utf8').trim(), `source_date_epoch ${epoch}`, `image_uuid ${IMAGE_UUID}`];
  if (kernel) {
    lines.push(
      `kernel ${kernel.release} (ours)`,
      `deb linux-source-6.1 ${kernel.packageVersion} sha256=${kernel.debSha256}`,
      `kernel_config_key ${kernel.key}`,
    );
  }
  console.log('== outputs');
  for (const k of outputs) {
    const f = out(k);
    const size = fs.statSync(f).size;
    const sum = sha256File(f);
    lines.push(`output ${outputNames[k]} ${size} sha256=${sum}`);
    console.log(`   ${outputNames[k].padEnd(32)} ${mib(size).padStart(10)}  sha256 ${sum.slice(0, 16)}`);
  }
  fs.writeFileSync(path.join(args.out, 'manifest.txt'), lines.join('\n') + '\n');
  console.log(`== done in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${args.out} (manifest.txt lists versions and checksums)`);
}

/** bin/kata-rootfs-builder and `npm run image`. */
export async function cli(argv: string[]): Promise<void> {
  try {
    if (os.platform() !== 'linux') throw new Error('the image builder runs on Linux only');
    await build(parseCli(argv));
  } catch (err) {
    console.error(`kata-rootfs-builder: ${(err as Error).message}`);
    process.exit(1);
  }
}

if (require.main === module) void cli(process.argv.slice(2));
