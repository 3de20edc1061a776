import { describe, expect, it } from 'vitest';
import { RandomStreams, createRng } from './rng.ts';

describe('random streams', () => {
  it('is deterministic per seed and stream name', () => {
    const a = new RandomStreams(42).stream('disk');
    const b = new RandomStreams(42).stream('disk');
    const c = new RandomStreams(43).stream('disk');
    const seqA = Array.from({ length: 5 }, () => a.next());
    expect(Array.from({ length: 5 }, () => b.next())).toEqual(seqA);
    expect(Array.from({ length: 5 }, () => c.next())).not.toEqual(seqA);
  });

  it('keeps streams independent: drawing from one does not change another', () => {
    const s1 = new RandomStreams(7);
    const x = s1.stream('a');
    const y1 = s1.stream('b');
    for (let i = 0; i < 100; i++) x.next();
    const y2 = new RandomStreams(7).stream('b');
    expect(y1.next()).toBe(y2.next());
  });

  it('draws uniform values and exponential means', () => {
    for (const seed of ['s1', 's2', 's3']) {
      const r = createRng(seed);
      let sum = 0;
      let expSum = 0;
      let min = Infinity;
      let max = -Infinity;
      const n = 100_000;
      // One assertion on the extremes, not 200k: expect() calls dominated this test's time.
      for (let i = 0; i < n; i++) {
        const u = r.next();
        min = Math.min(min, u);
        max = Math.max(max, u);
        sum += u;
        expSum += r.exp(4);
      }
      expect(min).toBeGreaterThanOrEqual(0);
      expect(max).toBeLessThan(1);
      expect(sum / n).toBeCloseTo(0.5, 2);
      expect(expSum / n).toBeGreaterThan(3.9);
      expect(expSum / n).toBeLessThan(4.1);
    }
    expect(() => createRng('x').pick([])).toThrow();
  });
});
