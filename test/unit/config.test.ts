import t from 'tap';
import { defaults, loadConfig, type LoadInput } from '../../agent/src/config/config.js';
import { ConfigError } from '../../agent/src/config/errors.js';
import { parseDurationMs } from '../../agent/src/config/values.js';
import { splitCmdline, splitWords } from '../../agent/src/config/words.js';

const input = (over: Partial<LoadInput>): LoadInput => ({
  argv: [],
  env: {},
  cmdline: '',
  readFile: () => {
    throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
  },
  ...over,
});

t.test('defaults are kata 3.x defaults', async (t) => {
  const { config, warnings, action } = loadConfig(input({}));
  t.equal(config.serverAddr, 'vsock://-1:1024');
  t.equal(config.logLevel, 'info');
  t.equal(config.hotplugTimeoutMs, 3000);
  t.same(warnings, []);
  t.equal(action, 'run');
});

t.test('kernel cmdline keys of both generations', async (t) => {
  const { config, warnings } = loadConfig(
    input({
      cmdline:
        'console=ttyS0 quiet agent.log=debug agent.server_addr=unix:///run/a.sock agent.debug_console agent.debug_console_vport=1026 ' +
        'agent.log_vport=1025 agent.hotplug_timeout=5s agent.container_pipe_size=65536 agent.use_vsock=false agent.helper_idle_timeout=90s ' +
        'agent.unified_cgroup_hierarchy=1 agent.trace=isolated agent.devmode',
    }),
  );
  t.equal(config.logLevel, 'debug');
  t.equal(config.serverAddr, 'unix:///run/a.sock');
  t.equal(config.debugConsole, true);
  t.equal(config.debugConsoleVport, 1026);
  t.equal(config.logVport, 1025);
  t.equal(config.hotplugTimeoutMs, 5000);
  t.equal(config.containerPipeSize, 65536);
  t.equal(config.helperIdleTimeoutMs, 90_000);
  t.equal(config.useVsock, false);
  t.equal(config.unifiedCgroupHierarchy, true);
  t.equal(config.trace, true);
  t.equal(config.devMode, true);
  t.same(warnings, []);
});

t.test('3.x cgroup selection keys and integer-second timeouts', async (t) => {
  t.equal(loadConfig(input({ cmdline: 'systemd.unified_cgroup_hierarchy=1' })).config.unifiedCgroupHierarchy, true);
  t.equal(loadConfig(input({ cmdline: 'cgroup_no_v1=all' })).config.unifiedCgroupHierarchy, true);
  t.equal(loadConfig(input({ cmdline: 'agent.hotplug_timeout=7' })).config.hotplugTimeoutMs, 7000);
});

t.test('unknown and malformed kernel options warn and keep defaults', async (t) => {
  const { config, warnings } = loadConfig(input({ cmdline: 'agent.frobnicate=1 agent.log=loud agent.server_addr=tcp://x agent.image_pull_timeout=1200' }));
  t.equal(config.logLevel, defaults.logLevel);
  t.equal(config.serverAddr, defaults.serverAddr);
  t.equal(warnings.length, 3, 'recognised-only keys (image_pull_timeout) do not warn');
  t.match(warnings[0], /unknown kernel option agent\.frobnicate/);
  t.match(warnings[1], /agent\.log: "loud" is not a log level/);
  t.match(warnings[2], /agent\.server_addr: .*unknown scheme "tcp"/);
});

t.test('precedence: flags > env > cmdline > config file', async (t) => {
  const files: Record<string, string> = { '/etc/agent.toml': 'server_addr = "unix:///from-file"\nlog_level = "warn"\ndev_mode = false\n' };
  const readFile = (p: string) => files[p];
  const base = { readFile, cmdline: 'agent.config_file=/etc/agent.toml' };
  t.equal(loadConfig(input(base)).config.serverAddr, 'unix:///from-file');
  t.equal(loadConfig(input(base)).config.logLevel, 'warn');
  t.equal(loadConfig(input({ ...base, cmdline: base.cmdline + ' agent.server_addr=unix:///from-cmdline' })).config.serverAddr, 'unix:///from-cmdline');
  t.equal(loadConfig(input({ ...base, env: { KATA_AGENT_SERVER_ADDR: 'unix:///from-env' } })).config.serverAddr, 'unix:///from-env');
  t.equal(
    loadConfig(input({ ...base, env: { KATA_AGENT_SERVER_ADDR: 'unix:///from-env' }, argv: ['--server-addr', 'unix:///from-flag'] })).config.serverAddr,
    'unix:///from-flag',
  );
  t.equal(loadConfig(input({ ...base, argv: ['--server-addr=unix:///eq'] })).config.serverAddr, 'unix:///eq');
  t.equal(loadConfig(input({ env: { KATA_AGENT_LOG_LEVEL: 'trace', KATA_AGENT_POLICY_FILE: '/p.rego' } })).config.policyFile, '/p.rego');
});

t.test('bad flags, env and config files are errors, not warnings', async (t) => {
  t.throws(() => loadConfig(input({ argv: ['--server-addr', 'bogus://x'] })), ConfigError);
  t.throws(() => loadConfig(input({ argv: ['--frob'] })), /unknown argument "--frob"/);
  t.throws(() => loadConfig(input({ argv: ['--server-addr'] })), /--server-addr needs a value/);
  t.throws(() => loadConfig(input({ argv: ['--help=yes'] })), /--help takes no value/);
  t.throws(() => loadConfig(input({ argv: ['stray'] })), /unknown argument "stray"/);
  t.equal(loadConfig(input({ argv: ['--log-level=debug', '--state-root', '/s'] })).config.logLevel, 'debug', '--flag=value and --flag value both');
  t.throws(() => loadConfig(input({ env: { KATA_AGENT_LOG_LEVEL: 'loud' } })), /KATA_AGENT_LOG_LEVEL: "loud" is not a log level/);
  t.throws(() => loadConfig(input({ argv: ['--config', '/nope.toml'] })), /cannot read config file \/nope\.toml: ENOENT/);
  t.throws(() => loadConfig(input({ argv: ['--config', '/x.toml'], readFile: () => 'server_addr = ' })), /not valid TOML/);
  t.throws(() => loadConfig(input({ argv: ['--config', '/x.toml'], readFile: () => 'log_level = "loud"' })), /log_level: "loud"/);
  const { warnings } = loadConfig(input({ argv: ['--config', '/x.toml'], readFile: () => 'nonsense = 1' }));
  t.match(warnings[0], /unknown key "nonsense"/);
});

t.test('--help and --version', async (t) => {
  t.equal(loadConfig(input({ argv: ['--version'] })).action, 'version');
  t.equal(loadConfig(input({ argv: ['-h'] })).action, 'help');
});

t.test('value syntaxes', async (t) => {
  t.equal(parseDurationMs('3'), 3000);
  t.equal(parseDurationMs('1m30s'), 90000);
  t.equal(parseDurationMs('500ms'), 500);
  t.throws(() => parseDurationMs('3 s'));
  t.throws(() => parseDurationMs('soon'));
  t.same(splitCmdline('a=1  b="x y" c'), ['a=1', 'b=x y', 'c']);
});

t.test('kernel cmdline and whitespace words', async (t) => {
  // /proc/cmdline ends in a newline; tabs separate words too.
  t.same(splitCmdline('quiet\tagent.log=debug \n'), ['quiet', 'agent.log=debug']);
  t.same(splitCmdline('agent.x="" "a b"=c'), ['agent.x=', 'a b=c']);
  // An unclosed quote runs to the end of the line, as in the kernel's parser.
  t.same(splitCmdline('a "b c'), ['a', 'b c']);
  t.same(splitCmdline(''), []);
  t.same(splitWords('  nodev\tcgroup2\n\nx  '), ['nodev', 'cgroup2', 'x']);
  t.same(splitWords(''), []);
  t.same(splitWords(' \t\n'), []);
});
