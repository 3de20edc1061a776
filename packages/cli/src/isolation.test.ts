import { describe, expect, it } from 'vitest';
import { degradation, parseStresses, summarize, type Measurement } from './isolation.ts';

function m(good: number, bad: number, opts: { p99?: number; died?: boolean; badOk?: number } = {}): Measurement {
  const vm = (okPerS: number, ok = okPerS * 2) => ({ okPerS, p99Ms: opts.p99 ?? 2, ok, errors: 0 });
  return {
    perVm: { good1: vm(good), good2: vm(good), good3: vm(good), bad: vm(bad, opts.badOk ?? bad * 2) },
    misbehavingDied: opts.died ?? false,
    clientLagMs: 0.1,
    hypervisorLagMs: 2,
  };
}

describe('isolation figures', () => {
  it('is the throughput the well-behaved VMs lost, and the p99 change', () => {
    const d = degradation(m(500, 500), m(350, 400, { p99: 8 }));
    expect(d.wellBehavedDegradationPct).toBeCloseTo(30, 9);
    expect(d.misbehavingDegradationPct).toBeCloseTo(20, 9);
    expect(d.wellBehavedP99DegradationPct).toBeCloseTo(300, 9);
    expect([d.baselineThroughputPerS, d.stressedThroughputPerS]).toEqual([500, 350]);
  });

  it('marks the misbehaving VM DNR when it died or answered nothing', () => {
    expect(degradation(m(500, 500), m(500, 400, { died: true })).misbehavingDegradationPct).toBeNull();
    expect(degradation(m(500, 500), m(500, 0, { badOk: 0 })).misbehavingDegradationPct).toBeNull();
    expect(degradation(m(500, 500), m(500, 400)).misbehavingDegradationPct).not.toBeNull();
  });

  it('takes the median over runs, DNR when most runs were', () => {
    const cells = [10, 2, 4].map((loss) => degradation(m(500, 500), m(500 * (1 - loss / 100), 250)));
    const row = summarize('fair', 'cpu', cells);
    expect(row.wellBehavedDegradationPct).toBe(4);
    expect(row.misbehavingDegradationPct).toBe(50);
    expect(row.runs).toBe(3);
    const dnr = [true, true, false].map((died) => degradation(m(500, 500), m(500, 250, { died })));
    expect(summarize('fifo', 'memory', dnr).misbehavingDegradationPct).toBeNull();
  });

  it('names a bad stress kind', () => {
    expect(parseStresses(undefined)).toHaveLength(6);
    expect(parseStresses('cpu,disk')).toEqual(['cpu', 'disk']);
    expect(() => parseStresses('cpu,gpu')).toThrow(/"gpu" is not one of cpu, memory/);
  });
});
