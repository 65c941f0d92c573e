import util from 'node:util';
import type * as SmolToml from 'smol-toml';
import { parseLogLevel, type LogLevel } from '../log/logger.js';
import { parseAddress } from '../transport/address.js';
import { ConfigError } from './errors.js';
import { parseBool, parseDurationMs, parseUint } from './values.js';
import { splitCmdline } from './words.js';

export interface AgentConfig {
  serverAddr: string;
  logLevel: LogLevel;
  devMode: boolean;
  debugConsole: boolean;
  /** vsock port of the debug console; 0 = none. */
  debugConsoleVport: number;
  /** vsock port logs are copied to; 0 = none. */
  logVport: number;
  hotplugTimeoutMs: number;
  /** F_SETPIPE_SZ for container stdio pipes; 0 = kernel default. */
  containerPipeSize: number;
  /** How long started-ahead container helpers wait unused before they are killed; 0 = for good. */
  helperIdleTimeoutMs: number;
  /** 1.x channel choice; undefined = try vsock, then virtio-serial. */
  useVsock?: boolean;
  /** undefined = decide from what the kernel offers. */
  unifiedCgroupHierarchy?: boolean;
  trace: boolean;
  configFile?: string;
  policyFile?: string;
  /** Where bundles and sandbox state live (/run/kata-containers); tests use a temp dir. */
  stateRoot: string;
}

export const defaults: Readonly<AgentConfig> = {
  serverAddr: 'vsock://-1:1024',
  logLevel: 'info',
  devMode: false,
  debugConsole: false,
  debugConsoleVport: 0,
  logVport: 0,
  hotplugTimeoutMs: 3000,
  containerPipeSize: 0,
  helperIdleTimeoutMs: 60_000,
  trace: false,
  unifiedCgroupHierarchy: undefined,
  useVsock: undefined,
  stateRoot: '/run/kata-containers',
};

type Setter = (cfg: AgentConfig, value: string | undefined) => void;

function level(v: string | undefined): LogLevel {
  const l = v === undefined ? undefined : parseLogLevel(v);
  if (!l) throw new Error(`"${v ?? ''}" is not a log level (trace, debug, info, warn, error, critical)`);
  return l;
}

/** Options by their kernel-cmdline name after "agent."; `toml` is the config-file key where it differs. */
const options: Record<string, { set: Setter; toml?: string }> = {
  log: { set: (c, v) => (c.logLevel = level(v)), toml: 'log_level' },
  server_addr: { set: (c, v) => (parseAddress(v ?? ''), (c.serverAddr = v ?? '')) },
  devmode: {
    set: (c, v) => {
      c.devMode = parseBool(v);
      if (c.devMode) c.logLevel = 'debug';
    },
    toml: 'dev_mode',
  },
  debug_console: { set: (c, v) => (c.debugConsole = parseBool(v)) },
  debug_console_vport: { set: (c, v) => (c.debugConsoleVport = parseUint(v)) },
  log_vport: { set: (c, v) => (c.logVport = parseUint(v)) },
  hotplug_timeout: { set: (c, v) => (c.hotplugTimeoutMs = parseDurationMs(v)) },
  container_pipe_size: { set: (c, v) => (c.containerPipeSize = parseUint(v)) },
  helper_idle_timeout: { set: (c, v) => (c.helperIdleTimeoutMs = parseDurationMs(v)) },
  use_vsock: { set: (c, v) => (c.useVsock = parseBool(v)) },
  unified_cgroup_hierarchy: { set: (c, v) => (c.unifiedCgroupHierarchy = parseBool(v)) },
  trace: { set: (c, v) => (c.trace = v === 'isolated' || v === 'collated' ? true : parseBool(v)) },
  config_file: { set: (c, v) => (c.configFile = v) },
  state_root: {
    set: (c, v) => {
      if (!v || !v.startsWith('/')) throw new Error(`state root "${v ?? ''}" must be an absolute path`);
      c.stateRoot = v;
    },
  },
};

/**
 * 3.x options this agent accepts without acting on them (confidential-computing, CDI, image pull,
 * passfd IO, mem-agent). They are not typos, so they must not warn as unknown.
 */
const recognisedOnly = new Set([
  'passfd_listener_port',
  'cdh_api_timeout',
  'image_pull_timeout',
  'cdi_timeout',
  'launch_process_timeout',
  'visible_cdi_devices',
  'https_proxy',
  'no_proxy',
  'guest_components_rest_api',
  'guest_components_procs',
  'secure_storage_integrity',
  'mem_agent_enable',
]);

export interface LoadInput {
  argv: string[];
  env: NodeJS.ProcessEnv;
  /** Contents of /proc/cmdline. */
  cmdline: string;
  readFile: (path: string) => string;
}

export interface Loaded {
  config: AgentConfig;
  /** Problems that must not stop a booting VM: logged once the logger exists. */
  warnings: string[];
  action: 'run' | 'help' | 'version';
}

export const usage = `usage: kata-agent [--server-addr ADDR] [--log-level LEVEL] [--config FILE] [--state-root DIR] [--version] [--help]
  ADDR: unix:///path | unix://@abstract | vsock://CID:PORT | serial://agent.channel.0 (default vsock://-1:1024;
        without --server-addr a guest with no vsock but an agent.channel.0 port uses that port)
  Also read: env KATA_AGENT_SERVER_ADDR, KATA_AGENT_LOG_LEVEL, KATA_AGENT_POLICY_FILE; /proc/cmdline agent.* keys.
  Precedence: flags > env > kernel cmdline > config file > defaults.`;

// util.parseArgs through the default import: it is a lazy accessor of node:util, which the bundle's
// builtin shim does not export by name (rootfs-builder/bundle.mjs).
function parseFlags(argv: string[]): { flags: Map<string, string>; action: Loaded['action'] } {
  let parsed: ReturnType<typeof util.parseArgs<{ options: typeof flagOptions; strict: true }>>;
  try {
    parsed = util.parseArgs({ args: argv, options: flagOptions, strict: true, allowPositionals: false });
  } catch (err) {
    // parseArgs names the argument in quotes; our messages keep the agent's own wording.
    const e = err as Error & { code?: string };
    const quoted = /'([^']+)'/.exec(e.message)?.[1] ?? '';
    const arg = quoted.split(/[ ,]+/).find((w) => w.startsWith('--')) ?? quoted;
    if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE')
      throw new ConfigError(/does not take/.test(e.message) ? `${arg} takes no value` : `${arg} needs a value`);
    throw new ConfigError(`unknown argument "${arg}" (see --help)`);
  }
  const { help, version, ...withValue } = parsed.values;
  const flags = new Map<string, string>();
  for (const [name, value] of Object.entries(withValue)) if (typeof value === 'string') flags.set(`--${name}`, value);
  return { flags, action: help ? 'help' : version ? 'version' : 'run' };
}

const flagOptions = {
  'server-addr': { type: 'string' },
  'log-level': { type: 'string' },
  config: { type: 'string' },
  'state-root': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const;

function applyToml(cfg: AgentConfig, path: string, readFile: LoadInput['readFile'], warnings: string[]): void {
  let text: string;
  try {
    text = readFile(path);
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let doc: Record<string, unknown>;
  try {
    // Required here: only a configured file needs the TOML parser, and a booting guest has none.
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only when a config file is given
    doc = (require('smol-toml') as typeof SmolToml).parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid TOML: ${(err as Error).message.split('\n')[0]}`);
  }
  const byToml = new Map(Object.entries(options).map(([k, o]) => [o.toml ?? k, o]));
  for (const [key, value] of Object.entries(doc)) {
    const opt = byToml.get(key);
    if (!opt) {
      if (!recognisedOnly.has(key)) warnings.push(`config file ${path}: unknown key "${key}" ignored`);
      continue;
    }
    try {
      opt.set(cfg, String(value));
    } catch (err) {
      throw new ConfigError(`config file ${path}: ${key}: ${(err as Error).message}`);
    }
  }
}

export function loadConfig(input: LoadInput): Loaded {
  const { flags, action } = parseFlags(input.argv);
  const cfg: AgentConfig = { ...defaults };
  const warnings: string[] = [];

  // Kernel cmdline first into a scratch list, so a config file it names can be applied beneath it.
  const cmdlineSettings: [string, string | undefined][] = [];
  for (const word of splitCmdline(input.cmdline)) {
    const eq = word.indexOf('=');
    const key = eq >= 0 ? word.slice(0, eq) : word;
    const value = eq >= 0 ? word.slice(eq + 1) : undefined;
    if (key === 'systemd.unified_cgroup_hierarchy') cmdlineSettings.push(['unified_cgroup_hierarchy', value]);
    else if (key === 'cgroup_no_v1' && value === 'all') cmdlineSettings.push(['unified_cgroup_hierarchy', '1']);
    else if (key.startsWith('agent.')) cmdlineSettings.push([key.slice('agent.'.length), value]);
  }

  const configFile = flags.get('--config') ?? cmdlineSettings.find(([k]) => k === 'config_file')?.[1];
  if (configFile) {
    applyToml(cfg, configFile, input.readFile, warnings);
    cfg.configFile = configFile;
  }

  for (const [key, value] of cmdlineSettings) {
    const opt = options[key];
    if (!opt) {
      if (!recognisedOnly.has(key) && !key.startsWith('mem_agent_')) warnings.push(`unknown kernel option agent.${key} ignored`);
      continue;
    }
    try {
      opt.set(cfg, value);
    } catch (err) {
      // A bad value on the kernel cmdline must not stop the VM from booting: keep the default.
      warnings.push(`kernel option agent.${key}: ${(err as Error).message}; ignored`);
    }
  }

  const fromEnvOrFlag = (name: string, key: string, value: string | undefined) => {
    if (value === undefined) return;
    try {
      options[key].set(cfg, value);
    } catch (err) {
      throw new ConfigError(`${name}: ${(err as Error).message}`);
    }
  };
  fromEnvOrFlag('KATA_AGENT_SERVER_ADDR', 'server_addr', input.env.KATA_AGENT_SERVER_ADDR || undefined);
  fromEnvOrFlag('KATA_AGENT_LOG_LEVEL', 'log', input.env.KATA_AGENT_LOG_LEVEL || undefined);
  if (input.env.KATA_AGENT_POLICY_FILE) cfg.policyFile = input.env.KATA_AGENT_POLICY_FILE;
  fromEnvOrFlag('--server-addr', 'server_addr', flags.get('--server-addr'));
  fromEnvOrFlag('--log-level', 'log', flags.get('--log-level'));
  fromEnvOrFlag('--state-root', 'state_root', flags.get('--state-root'));

  return { config: cfg, warnings, action };
}
