import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { IsolationRow } from '@vmsim/cli';
import { tempHome } from './helpers/nats.ts';

const CLI = fileURLToPath(import.meta.resolve('@vmsim/cli/main'));

/**
 * A short version of `vmsim isolation` (users run the full matrix: six stressors, both
 * policies, three runs each): one stressor, one run per policy, one simulated second.
 */
describe('vmsim isolation', () => {
  it('shows a network hog hurting its neighbours under fifo and not under fair', () => {
    const home = tempHome();
    const json = path.join(home, 'isolation.json');
    const r = spawnSync(
      process.execPath,
      [
        CLI,
        'isolation',
        '--policy',
        'both',
        '--runs',
        '1',
        '--stress',
        'net-send',
        '--duration',
        '1s',
        '--time-scale',
        '20',
        '--json',
        json,
      ],
      { env: { PATH: process.env['PATH'] ?? '', HOME: home, VMSIM_HOME: home }, encoding: 'utf8', timeout: 420_000 },
    );
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/policy fifo \(median of 1 run/);
    expect(r.stdout).toMatch(/policy fair \(median of 1 run/);
    const rows = JSON.parse(fs.readFileSync(json, 'utf8')) as IsolationRow[];
    const fifo = rows.find((x) => x.policy === 'fifo' && x.stress === 'net-send')!;
    const fair = rows.find((x) => x.policy === 'fair' && x.stress === 'net-send')!;
    for (const row of [fifo, fair]) {
      expect(Object.keys(row).sort()).toEqual(
        expect.arrayContaining([
          'policy',
          'stress',
          'wellBehavedDegradationPct',
          'misbehavingDegradationPct',
          'baselineP99Ms',
          'stressedP99Ms',
        ]),
      );
      expect(row.baselineThroughputPerS).toBeGreaterThan(100);
    }
    // The contrast the benchmark exists for: ≥ 30% lost without isolation, next to nothing
    // with it. The 5% criterion is the full matrix's (median of 3 runs, 2 s each; README). This
    // one run of 1 s shares CI's two cores with the unit tests: on a quiet machine fair loses
    // about 0% here, under CI it has lost up to 16% in one run of four, so the smoke test
    // allows 20% and still separates the policies (fifo ≥ 30%).
    expect(fifo.wellBehavedDegradationPct).toBeGreaterThanOrEqual(30);
    expect(fair.wellBehavedDegradationPct).toBeLessThanOrEqual(20);
    expect(fair.wellBehavedDegradationPct).toBeLessThan(fifo.wellBehavedDegradationPct - 10);
    expect(fair.stressedP99Ms).toBeLessThan(fifo.stressedP99Ms);
    // The hog pays for its own traffic under fair.
    expect(fair.misbehavingDegradationPct).toBeGreaterThan(20);
  });
});
