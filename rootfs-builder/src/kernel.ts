// Our own guest kernel: Debian's linux-source-6.1 (the version apt resolves, its .deb's sha256 in
// the manifest) configured as `make tinyconfig` plus rootfs-builder/kernel/kata-guest.config, with
// every driver a kata guest needs built in and no module support, so `image =` boots without an
// initramfs. Built once per (source package, fragment, recipe) and cached under
// <cache>/kernel/<release>-<key>/; a changed fragment is a new key, so a new build.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sha256File } from './archive.js';

export const SOURCE_PACKAGE = 'linux-source-6.1';
/** Bumped when the build steps below change what comes out for the same inputs. */
const RECIPE = 'kata-guest-kernel/1';

export interface KernelBuild {
  vmlinux: string;
  config: string;
  /** `make kernelrelease`: the name of /lib/modules/<release> and what uname -r says in the guest. */
  release: string;
  packageVersion: string;
  debSha256: string;
  key: string;
  cached: boolean;
  /** How long the compile took (this run's, or the cached build's). */
  buildSeconds: number;
}

export interface KernelOptions {
  cache: string;
  fragment: string;
  jobs?: number;
  log?: (line: string) => void;
}

function run(cmd: string, args: string[], what: string, opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...opts });
  if (r.error) throw new Error(`${what}: ${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${what}: ${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}\n${(r.stderr || r.stdout).slice(-3000)}`);
  return r.stdout;
}

/** The candidate version apt has for the source package, downloaded into <cache>/deb once. */
export function fetchSource(cache: string, log: (l: string) => void): { deb: string; version: string } {
  const policy = run('apt-cache', ['policy', SOURCE_PACKAGE], 'resolving the kernel source');
  const version = /Candidate:\s*(\S+)/.exec(policy)?.[1];
  if (!version || version === '(none)') throw new Error(`${SOURCE_PACKAGE} has no candidate version (run apt-get update)`);
  const dir = path.join(cache, 'deb');
  fs.mkdirSync(dir, { recursive: true });
  const deb = path.join(dir, `${SOURCE_PACKAGE}_${version.replace(/:/g, '%3a')}_all.deb`);
  if (!fs.existsSync(deb) || fs.statSync(deb).size === 0) {
    log(`downloading ${SOURCE_PACKAGE} ${version}`);
    run('apt-get', ['download', '-q', `${SOURCE_PACKAGE}=${version}`], `downloading ${SOURCE_PACKAGE}`, { cwd: dir });
    if (!fs.existsSync(deb)) throw new Error(`download of ${SOURCE_PACKAGE}=${version} failed (expected ${deb})`);
  }
  return { deb, version };
}

/** `CONFIG_X=y` lines of the fragment (comments and blanks skipped). */
export function fragmentOptions(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(CONFIG_[A-Z0-9_]+)=(.*)$/.exec(line);
    if (!m) throw new Error(`kernel config fragment: "${line}" is not CONFIG_NAME=value`);
    out.set(m[1], m[2]);
  }
  return out;
}

/** What the fragment asked for that the final .config does not have (Kconfig dropped it: a missing dependency). */
export function missingOptions(fragment: Map<string, string>, config: string): string[] {
  const have = new Map<string, string>();
  for (const line of config.split('\n')) {
    const m = /^(CONFIG_[A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) have.set(m[1], m[2]);
  }
  return [...fragment].filter(([k, v]) => have.get(k) !== v).map(([k, v]) => `${k}=${v} (got ${have.get(k) ?? 'not set'})`);
}

export function kernelKey(debSha256: string, fragment: string): string {
  return crypto.createHash('sha256').update(`${RECIPE}\n${debSha256}\n${fragment}`).digest('hex').slice(0, 16);
}

/** make … vmlinux with one progress line every 30 s (objects compiled so far). */
async function compile(src: string, out: string, jobs: number, env: NodeJS.ProcessEnv, log: (l: string) => void, logFile: string): Promise<void> {
  const t0 = Date.now();
  const sink = fs.createWriteStream(logFile);
  let objects = 0;
  let tail = '';
  const child = spawn('make', ['-C', src, `O=${out}`, 'ARCH=x86_64', `-j${jobs}`, 'vmlinux'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const count = (chunk: Buffer) => {
    sink.write(chunk);
    const text = tail + chunk.toString();
    const lines = text.split('\n');
    tail = lines.pop() ?? '';
    for (const l of lines) if (/^\s+(CC|AS)\s/.test(l)) objects++;
  };
  child.stdout.on('data', count);
  child.stderr.on('data', (c: Buffer) => sink.write(c));
  const timer = setInterval(() => log(`kernel: ${objects} objects compiled, ${Math.round((Date.now() - t0) / 1000)} s`), 30_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearInterval(timer);
  await new Promise((r) => sink.end(r));
  if (code !== 0) {
    const end = fs.readFileSync(logFile, 'utf8').slice(-4000);
    throw new Error(`kernel build failed (make exited ${code}; whole log: last-build.log in the kernel cache); its end:\n${end}`);
  }
  log(`kernel: ${objects} objects compiled in ${Math.round((Date.now() - t0) / 1000)} s`);
}

/** What a compile leaves in its work directory. */
export interface CompiledKernel {
  vmlinux: string;
  config: string;
  release: string;
}

/** The steps a build takes (tests replace them: no apt, no compiler). */
export interface KernelSteps {
  fetch: (cache: string, log: (l: string) => void) => { deb: string; version: string };
  compile: (work: string, deb: string, fragment: string, jobs: number, log: (l: string) => void) => Promise<CompiledKernel>;
}

/** Unpacks the source package in `work`, configures it with the fragment and compiles vmlinux. */
async function compileFromSource(work: string, deb: string, fragmentFile: string, jobs: number, log: (l: string) => void): Promise<CompiledKernel> {
  log(`unpacking ${path.basename(deb)}`);
  run('dpkg-deb', ['-x', deb, path.join(work, 'deb')], 'unpacking the kernel source package');
  const tarball = fs.readdirSync(path.join(work, 'deb', 'usr', 'src')).find((f) => /^linux-source-.*\.tar\.(xz|bz2|gz)$/.test(f));
  if (!tarball) throw new Error(`${deb} holds no linux-source tarball under /usr/src`);
  const src = path.join(work, 'src');
  fs.mkdirSync(src);
  run('tar', ['-xf', path.join(work, 'deb', 'usr', 'src', tarball), '-C', src, '--strip-components=1'], 'unpacking the kernel tree');
  fs.rmSync(path.join(work, 'deb'), { recursive: true, force: true });
  const out = path.join(work, 'out');
  fs.mkdirSync(out);
  // Reproducible: the build's user, host and time go into the kernel's version string.
  const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? 1700000000);
  const env = {
    ...process.env,
    KBUILD_BUILD_TIMESTAMP: new Date(epoch * 1000).toUTCString(),
    KBUILD_BUILD_USER: 'kata',
    KBUILD_BUILD_HOST: 'kata-agent-ts',
  };
  const make = (...targets: string[]) => run('make', ['-C', src, `O=${out}`, 'ARCH=x86_64', ...targets], `make ${targets.join(' ')}`, { env });
  log('configuring: tinyconfig + rootfs-builder/kernel/kata-guest.config');
  make('tinyconfig');
  run(path.join(src, 'scripts', 'kconfig', 'merge_config.sh'), ['-m', '-O', out, path.join(out, '.config'), fragmentFile], 'merging the config fragment', {
    env,
  });
  make('olddefconfig');
  const config = fs.readFileSync(path.join(out, '.config'), 'utf8');
  const missing = missingOptions(fragmentOptions(fs.readFileSync(fragmentFile, 'utf8')), config);
  if (missing.length) throw new Error(`the kernel config dropped options of the fragment (a dependency is missing):\n  ${missing.join('\n  ')}`);
  const release = make('-s', 'kernelrelease').trim();
  log(`compiling ${release} with ${jobs} jobs (a first build takes 12-17 min on 2 cores)`);
  await compile(src, out, jobs, env, log, path.join(work, 'build.log'));
  return { vmlinux: path.join(out, 'vmlinux'), config: path.join(out, '.config'), release };
}

const realSteps: KernelSteps = { fetch: fetchSource, compile: compileFromSource };

export async function buildKernel(o: KernelOptions, steps: KernelSteps = realSteps): Promise<KernelBuild> {
  const log = o.log ?? ((l: string) => console.log(`   ${l}`));
  const fragment = fs.readFileSync(o.fragment, 'utf8');
  fragmentOptions(fragment); // a malformed line fails before anything is fetched
  const { deb, version } = steps.fetch(o.cache, log);
  const debSha256 = sha256File(deb);
  const key = kernelKey(debSha256, fragment);
  const root = path.join(o.cache, 'kernel');
  fs.mkdirSync(root, { recursive: true });
  const done = fs.readdirSync(root).find((d) => d.endsWith(`-${key}`) && fs.existsSync(path.join(root, d, 'vmlinux')));
  if (done) {
    const dir = path.join(root, done);
    const info = JSON.parse(fs.readFileSync(path.join(dir, 'build.json'), 'utf8')) as { release: string; buildSeconds: number };
    log(`kernel ${info.release} cached (${SOURCE_PACKAGE} ${version}, key ${key})`);
    return {
      vmlinux: path.join(dir, 'vmlinux'),
      config: path.join(dir, 'config'),
      release: info.release,
      packageVersion: version,
      debSha256,
      key,
      cached: true,
      buildSeconds: info.buildSeconds,
    };
  }

  const work = path.join(root, `build-${key}`);
  fs.rmSync(work, { recursive: true, force: true });
  fs.mkdirSync(work, { recursive: true });
  const t0 = Date.now();
  try {
    const built = await steps.compile(work, deb, o.fragment, o.jobs ?? os.availableParallelism(), log);
    const buildSeconds = Math.round((Date.now() - t0) / 1000);
    const dir = path.join(root, `${built.release}-${key}`);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir);
    fs.copyFileSync(built.vmlinux, path.join(dir, 'vmlinux'));
    fs.copyFileSync(built.config, path.join(dir, 'config'));
    fs.writeFileSync(path.join(dir, 'build.json'), JSON.stringify({ release: built.release, packageVersion: version, debSha256, buildSeconds }) + '\n');
    return {
      vmlinux: path.join(dir, 'vmlinux'),
      config: path.join(dir, 'config'),
      release: built.release,
      packageVersion: version,
      debSha256,
      key,
      cached: false,
      buildSeconds,
    };
  } finally {
    // The compiler's output outlives the tree: a failed build is read from it.
    if (fs.existsSync(path.join(work, 'build.log'))) fs.copyFileSync(path.join(work, 'build.log'), path.join(root, 'last-build.log'));
    fs.rmSync(work, { recursive: true, force: true });
  }
}
