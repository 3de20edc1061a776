import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { CompareRow } from '@vmsim/cli';
import { tempHome } from './helpers/nats.ts';

const CLI = fileURLToPath(import.meta.resolve('@vmsim/cli/main'));

/** A short version of `vmsim compare-types` (users run the full matrix: 1, 2, 4, 8, 16 guests). */
describe('vmsim compare-types', () => {
  it('shows a hosted hypervisor losing throughput to its own work on a saturated host', () => {
    const home = tempHome();
    const r = spawnSync(
      process.execPath,
      // 8 guests on 4 cores: saturated, and switching cores, so the loss stands well clear of noise.
      [CLI, 'compare-types', '--guests', '8', '--duration', '0.5s', '--report', path.join(home, 'rep'), '--json'],
      { env: { PATH: process.env['PATH'] ?? '', HOME: home, VMSIM_HOME: home }, encoding: 'utf8', timeout: 300_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout) as CompareRow[];
    const t1 = rows.find((x) => x.type === 'type1')!;
    const t2 = rows.find((x) => x.type === 'type2')!;
    expect(t1.errors + t2.errors).toBe(0);
    expect(t2.hostCpuMs).toBeGreaterThan(t1.hostCpuMs * 3);
    expect(t2.throughputPerS).toBeLessThan(t1.throughputPerS);
  }, 300_000); // two stacks of 8 guests at time scale 40, as long as the child may take
});
