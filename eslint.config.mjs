// The eslint part of `npm run lint` (prettier and tsc's unused-code checks run beside it): eslint's
// and typescript-eslint's recommended rules over every source folder.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

// Node's globals for the plain .js/.mjs scripts; TypeScript files have @types/node, and
// typescript-eslint turns no-undef off for them.
const nodeGlobals = Object.fromEntries(
  ['process', 'console', 'Buffer', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate', 'clearImmediate', 'URL'].map((n) => [
    n,
    'readonly',
  ]),
);
const commonJsGlobals = Object.fromEntries(['require', 'module', 'exports', '__dirname', '__filename'].map((n) => [n, 'readonly']));

export default defineConfig(
  { ignores: ['**/dist/', '**/build/', '**/node_modules/', 'protos/gen/'] },
  {
    files: ['{agent,init,agent-ctl,rootfs-builder,test,bench,scripts}/**/*.{ts,mts,cts,js,mjs,cjs}'],
    extends: [js.configs.recommended, tseslint.configs.recommended],
    // A disable comment that no longer suppresses anything is an error, so none outlives its reason.
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
  {
    files: ['**/*.{js,mjs,cjs}'],
    languageOptions: { globals: nodeGlobals },
  },
  {
    // The PID-1 reaper must know every child Node waits for: agent code starts children only through
    // process/spawn.ts, which marks them owned.
    files: ['agent/src/**/*.ts'],
    ignores: ['agent/src/process/spawn.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: ['node:child_process', 'child_process'].map((name) => ({ name, message: 'start children through process/spawn.ts', allowTypeImports: true })),
        },
      ],
    },
  },
  {
    // rootfs-builder's loader.js and cached-script.js are CommonJS on purpose (the bundle's start-up
    // path compiles with vm and must not load node's ES module loader), so require() is their import.
    files: ['**/*.{js,cjs}'],
    languageOptions: { sourceType: 'commonjs', globals: { ...nodeGlobals, ...commonJsGlobals } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
