import t from 'tap';
import { loadConfig } from '../../agent/src/config/config.js';
import { ConfigError } from '../../agent/src/config/errors.js';

const load = (argv: string[], cmdline = '') => loadConfig({ argv, env: {}, cmdline, readFile: () => '' });

t.test('state root: default, flag, kernel cmdline', async (t) => {
  t.equal(load([]).config.stateRoot, '/run/kata-containers');
  t.equal(load(['--state-root', '/tmp/x']).config.stateRoot, '/tmp/x');
  t.equal(load([], 'agent.state_root=/run/other').config.stateRoot, '/run/other');
  t.throws(() => load(['--state-root', 'relative']), ConfigError);
  const bad = load([], 'agent.state_root=relative');
  t.equal(bad.config.stateRoot, '/run/kata-containers', 'a bad cmdline value keeps the default');
  t.match(bad.warnings.join('\n'), /state root "relative" must be an absolute path/);
});
