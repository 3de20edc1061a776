import { describe, expect, it } from 'vitest';
import { VirtualClock, createRng } from '@vmsim/shared';
import { RateGate } from './rate-gate.ts';

/**
 * A virtual disk's rate limits, in virtual time: whatever the request sizes and arrival
 * pattern, what is admitted over a long window stays within the limit plus one burst, and
 * an unlimited gate admits at once. Several seeds.
 */
describe('per-virtual-disk rate gate', () => {
  for (const seed of ['a', 'b', 'c', 'd']) {
    it(`holds ops/s and bytes/s over 10 simulated s (seed ${seed})`, () => {
      const clock = new VirtualClock();
      const rng = createRng(seed);
      const opsPerS = 200 + Math.floor(rng.next() * 800);
      const bytesPerS = 4_000_000 + Math.floor(rng.next() * 8_000_000);
      const gate = new RateGate(clock, opsPerS, bytesPerS);
      let ops = 0;
      let bytes = 0;
      const order: number[] = [];
      // A flood: far more than the limits allow, in bursts at random times.
      for (let i = 0; i < 40_000; i++) {
        const at = rng.next() * 10_000;
        const size = 512 + Math.floor(rng.next() * 256 * 1024);
        clock.at(at, () =>
          gate.admit(size, () => {
            ops++;
            bytes += size;
            order.push(clock.now());
          }),
        );
      }
      clock.runUntil(10_000);
      // Within the limit plus the 100 ms burst (and one request's overdraft).
      expect(ops).toBeLessThanOrEqual(opsPerS * 10 + opsPerS / 10 + 1);
      expect(bytes).toBeLessThanOrEqual(bytesPerS * 10 + bytesPerS / 10 + 256 * 1024);
      // And the disk is kept busy up to its limit: one of the two binds within 5%.
      expect(Math.max(ops / (opsPerS * 10), bytes / (bytesPerS * 10))).toBeGreaterThan(0.95);
      // Admission order is arrival order (FIFO), so times never go backwards.
      for (let i = 1; i < order.length; i++) expect(order[i]!).toBeGreaterThanOrEqual(order[i - 1]!);
      gate.stop();
    });
  }

  it('admits at once without limits', () => {
    const clock = new VirtualClock();
    const gate = new RateGate(clock, null, undefined);
    let n = 0;
    for (let i = 0; i < 1000; i++) gate.admit(1 << 20, () => n++);
    expect(n).toBe(1000);
  });
});
