import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { PolicyComparison, Report } from '@vmsim/cli';
import { tempHome } from './helpers/nats.ts';

const CLI = fileURLToPath(import.meta.resolve('@vmsim/cli/main'));
const SCENARIO = fileURLToPath(new URL('../scenarios/noisy-neighbour.yaml', import.meta.url));

/** Mean over the victims of their median latency in the windows that start in [from, to). */
function victimsP50(r: Report, from: number, to: number): number {
  const victims = r.vms.filter((v) => v.name !== 'web4');
  const per = victims.map((v) => {
    const ws = v.series.filter((p) => p.tMs >= from && p.tMs < to && p.ok > 0);
    return ws.reduce((a, p) => a + p.p50, 0) / ws.length;
  });
  return per.reduce((a, b) => a + b, 0) / per.length;
}

/**
 * scenarios/noisy-neighbour.yaml, shortened (3 simulated s, the neighbour turning noisy at
 * 1.5 s): both policies run, the report holds each VM's latency time series and charts it,
 * and the victims' latency jumps when web4 turns noisy under fifo, not under fair.
 */
describe('the noisy-neighbour scenario', () => {
  it('charts each victim under both policies; only fifo lets the neighbour through', () => {
    const home = tempHome();
    const text = fs.readFileSync(SCENARIO, 'utf8');
    expect(text).toMatch(/scheduler: both/);
    const file = path.join(home, 'noisy.yaml');
    const short = text.replace(/^duration: .*$/m, 'duration: 3s').replace(/\{ at: 3s,/, '{ at: 1.5s,');
    expect(short).toMatch(/\{ at: 1\.5s, stress: \{ vm: web4, kind: cpu \} \}/);
    fs.writeFileSync(file, short);
    const dir = path.join(home, 'report');
    const r = spawnSync(process.execPath, [CLI, 'run', file, '--report', dir], {
      env: { PATH: process.env['PATH'] ?? '', HOME: home, VMSIM_HOME: home },
      encoding: 'utf8',
      timeout: 420_000,
    });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    const both = JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8')) as PolicyComparison;
    expect(Object.keys(both.policies).sort()).toEqual(['fair', 'fifo']);
    for (const p of ['fifo', 'fair'] as const) {
      const rep = both.policies[p];
      expect(rep.host.scheduler).toBe(p);
      expect(rep.timeline).toEqual([expect.objectContaining({ at: 1500, ok: true, action: 'stress web4 cpu' })]);
      for (const v of rep.vms) {
        expect(v.series.length).toBeGreaterThanOrEqual(10);
        expect(v.errors).toBe(0);
      }
      expect(fs.existsSync(path.join(dir, p, 'report.md'))).toBe(true);
    }
    const md = fs.readFileSync(path.join(dir, 'report.md'), 'utf8');
    expect(md).toMatch(/## Latency over time under fifo/);
    expect(md).toMatch(/## Latency over time under fair/);
    expect(md.match(/```mermaid/g)?.length).toBe(8);
    // Windows clear of the start-up transient and of the switch itself.
    const jump = (p: 'fifo' | 'fair') =>
      victimsP50(both.policies[p], 1750, 3000) / victimsP50(both.policies[p], 500, 1500);
    expect(jump('fifo')).toBeGreaterThan(1.5);
    expect(jump('fair')).toBeLessThan(jump('fifo') - 0.5);
  });
});
