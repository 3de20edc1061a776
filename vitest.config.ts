import { defineConfig } from 'vitest/config';

// Two inline projects. They inherit this root config (vitest's default `extends: true`), so keep
// the root free of per-run hooks such as `globalSetup`: a root globalSetup would run once per project.
// Put any integration-only setup (e.g. starting nats-server) on the `integration` project instead.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['packages/*/src/**/*.test.ts', 'services/*/src/**/*.test.ts'],
          pool: 'threads',
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          // Integration tests spawn real processes (nats-server, services): use child processes,
          // generous timeouts, and one file at a time (CI machine has 2 cores).
          pool: 'forks',
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
