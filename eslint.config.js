// @ts-check
// Flat ESLint config for the vmsim monorepo.
// Deliberately NOT type-aware (no parserOptions.project) so `npm run lint` stays fast.
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import tseslint from 'typescript-eslint';

/** Workspace source trees (one entry per glob pattern). */
const WORKSPACE_SRC = ['packages/*/src/**/*.ts', 'services/*/src/**/*.ts'];

/**
 * Deep imports into another workspace package are forbidden. Packages must be consumed
 * through their public entry (`@vmsim/<name>`); the only other public subpath is
 * `@vmsim/<name>/main`, which services (and the CLI) use to locate another package's
 * executable entry point.
 */
const bareDeepImports = {
  group: ['@vmsim/*/**', '!@vmsim/*/main'],
  message:
    'Import a workspace package through its public entry (`@vmsim/<name>` or `@vmsim/<name>/main`), never its internals.',
};

/** Relative imports that climb out of a package into another package's tree. */
const relativeDeepImports = {
  group: [
    '../packages/*/src/**',
    '../services/*/src/**',
    '../packages/*/dist/**',
    '../services/*/dist/**',
    '../../packages/*/src/**',
    '../../services/*/src/**',
    '../../packages/*/dist/**',
    '../../services/*/dist/**',
    '../../../packages/**',
    '../../../services/**',
    '../../../../packages/**',
    '../../../../services/**',
    '../../../../../packages/**',
    '../../../../../services/**',
  ],
  message: 'Do not reach into another workspace package with a relative path; import `@vmsim/<name>` instead.',
};

/** Same as above, plus sibling-package climbs (`../../<pkg>/src/...`) that only make sense from a src tree. */
const srcSiblingImports = {
  group: ['../../*/src/**', '../../*/dist/**'],
  message: 'Do not reach into a sibling workspace package with a relative path; import `@vmsim/<name>` instead.',
};

export default defineConfig(
  globalIgnores(['**/dist/', '**/node_modules/', '**/coverage/', 'reports/', '.vmsim/', '**/*.tsbuildinfo', 'tmp/']),

  js.configs.recommended,
  tseslint.configs.recommended,

  {
    name: 'vmsim/base',
    linterOptions: {
      reportUnusedDisableDirectives: 'error',
    },
    languageOptions: {
      ecmaVersion: 2024,
      sourceType: 'module',
      // Node globals for plain .js files (TS files get no-undef disabled by typescript-eslint).
      globals: {
        process: 'readonly',
        console: 'readonly',
        URL: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        structuredClone: 'readonly',
        Buffer: 'readonly',
      },
    },
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: 'TSEnumDeclaration',
          message: 'TypeScript enums are forbidden (not erasable syntax): use an `as const` object instead.',
        },
      ],
      'no-restricted-imports': ['error', { patterns: [bareDeepImports, relativeDeepImports] }],
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
        },
      ],
    },
  },

  {
    name: 'vmsim/workspace-src',
    files: WORKSPACE_SRC,
    rules: {
      'no-restricted-imports': ['error', { patterns: [bareDeepImports, relativeDeepImports, srcSiblingImports] }],
    },
  },

  {
    // Services and the shared library log through the structured logger, never the console.
    // console is allowed in packages/cli, bench/, scripts/ and test/.
    name: 'vmsim/no-console',
    files: ['services/*/src/**/*.ts', 'packages/shared/src/**/*.ts'],
    rules: {
      'no-console': 'error',
    },
  },
);
