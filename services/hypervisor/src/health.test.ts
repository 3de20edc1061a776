import { describe, expect, it } from 'vitest';
import { VirtualClock, createRng, type Rng } from '@vmsim/shared';
import { HealthDetector, type HealthChange, type HealthSample } from './health.ts';

const TICK_MS = 125;

/** A web VM's ordinary figures: a varying request rate, jittery waits with spikes, some idle intervals. */
function normal(rng: Rng, baseWait: number) {
  return (): Omit<HealthSample, 't' | 'spanMs'> => {
    const idle = rng.next() < 0.1;
    const calls = idle ? rng.int(5) : 10 + rng.int(80);
    const spike = rng.next() < 0.05 ? 3 : 1;
    const perCall = baseWait * spike * (0.3 + 1.4 * rng.next());
    return { calls, waitMs: calls * perCall, rejected: 0, lagMs: 2 + rng.exp(8) + (rng.next() < 0.03 ? 60 : 0) };
  };
}

/**
 * Drives one detector in virtual time: a sample every TICK_MS simulated ms from `figures(t)`,
 * recording every change with the time it happened.
 */
function run(figures: (t: number) => Omit<HealthSample, 't' | 'spanMs'>, untilMs: number) {
  const clock = new VirtualClock();
  const d = new HealthDetector();
  const changes: (HealthChange & { t: number })[] = [];
  const tick = (): void => {
    const t = clock.now();
    const c = d.observe({ t, spanMs: TICK_MS, ...figures(t) });
    if (c) changes.push({ ...c, t });
    if (t + TICK_MS <= untilMs) clock.at(t + TICK_MS, tick);
  };
  clock.at(TICK_MS, tick);
  clock.runUntil(untilMs);
  return { changes, d };
}

const SEEDS = ['1', '2', '3', 'seven', 'x42', 'noisy'];

describe('health detector', () => {
  it.each(SEEDS)('raises no false alarm under a normal noisy load (seed %s)', (seed) => {
    const rng = createRng(`health/${seed}`);
    const baseWait = 0.01 + rng.next() * 0.3;
    const { changes, d } = run(normal(rng, baseWait), 10 * 60_000);
    expect(changes).toEqual([]);
    expect(d.state).toBe('ok');
  });

  it.each(SEEDS)(
    'flags a slow fault (5 ms per hypercall) within a few intervals and recovers after it (seed %s)',
    (seed) => {
      const rng = createRng(`slow/${seed}`);
      const base = normal(rng, 0.05 + rng.next() * 0.1);
      const { changes } = run((t) => {
        const s = base();
        return t >= 20_000 && t < 30_000 ? { ...s, waitMs: s.waitMs + 5 * s.calls } : s;
      }, 40_000);
      expect(changes.map((c) => c.health)).toEqual(['degraded', 'recovered']);
      const [down, up] = changes as [HealthChange & { t: number }, HealthChange & { t: number }];
      expect(down.reason).toMatch(/^hypercall wait \d+(\.\d+)? ms per call/);
      // Two off intervals, one more when an idle interval falls between them.
      expect(down.t - 20_000).toBeLessThanOrEqual(6 * TICK_MS);
      expect(up.t - 30_000).toBeGreaterThanOrEqual(3 * TICK_MS - TICK_MS);
      expect(up.t - 30_000).toBeLessThanOrEqual(6 * TICK_MS);
      expect(up.reason).toMatch(/figures normal for 3 intervals.*was: hypercall wait/);
    },
  );

  it.each(SEEDS)(
    'flags garbage (rejected messages) and a blocked guest event loop, naming the figure (seed %s)',
    (seed) => {
      const rng = createRng(`garbage/${seed}`);
      const base = normal(rng, 0.1);
      const { changes } = run((t) => {
        const s = base();
        if (t >= 10_000 && t < 15_000) return { ...s, rejected: 100 + rng.int(50) };
        if (t >= 25_000 && t < 30_000) return { ...s, lagMs: 1500 + rng.int(500) };
        return s;
      }, 40_000);
      expect(changes.map((c) => c.health)).toEqual(['degraded', 'recovered', 'degraded', 'recovered']);
      expect(changes[0]!.reason).toMatch(/^rejected messages \d+\/s/);
      expect(changes[2]!.reason).toMatch(/^guest event-loop lag \d+ ms/);
      expect(changes[0]!.t).toBeLessThan(10_000 + 3 * TICK_MS);
      expect(changes[2]!.t).toBeLessThan(25_000 + 3 * TICK_MS);
    },
  );

  it.each(SEEDS)('a hiccup of the real machine in the baseline does not hide a slow fault (seed %s)', (seed) => {
    const rng = createRng(`hiccup/${seed}`);
    const base = normal(rng, 0.1);
    const { changes } = run((t) => {
      const s = base();
      // One interval in the baseline where every call waited 2 ms (the host was busy elsewhere).
      if (t === 3 * TICK_MS) return { ...s, calls: 40, waitMs: 80 };
      // Eight intervals of baseline, the hiccup among them: a high quantile of so few would be the hiccup.
      return t > 8 * TICK_MS && t < 4_000 ? { ...s, waitMs: s.waitMs + 5 * s.calls } : s;
    }, 6_000);
    expect(changes.map((c) => c.health)).toEqual(['degraded', 'recovered']);
    expect(changes[0]!.t - 8 * TICK_MS).toBeLessThanOrEqual(6 * TICK_MS);
  });

  it('does not learn a long fault as its new normal, and needs a baseline before judging waits', () => {
    const rng = createRng('long');
    const base = normal(rng, 0.05);
    // From the first interval on, slow: no baseline yet, so nothing is said about the waits…
    const early = run(() => {
      const s = base();
      return { ...s, waitMs: s.waitMs + 5 * s.calls };
    }, 5_000);
    expect(early.changes).toEqual([]);
    // …while a fault that lasts ten minutes stays degraded all along.
    const long = run((t) => {
      const s = base();
      return t >= 10_000 ? { ...s, waitMs: s.waitMs + 5 * s.calls } : s;
    }, 10 * 60_000);
    expect(long.changes.map((c) => c.health)).toEqual(['degraded']);
    expect(long.d.state).toBe('degraded');
  });

  it('a reset forgets the baseline and the state', () => {
    const d = new HealthDetector({ minBaseline: 2 });
    for (let i = 1; i <= 3; i++) d.observe({ t: i * 100, spanMs: 100, calls: 10, waitMs: 1, rejected: 0, lagMs: 1 });
    d.observe({ t: 400, spanMs: 100, calls: 10, waitMs: 100, rejected: 0, lagMs: 1 });
    expect(d.observe({ t: 500, spanMs: 100, calls: 10, waitMs: 100, rejected: 0, lagMs: 1 })?.health).toBe('degraded');
    d.reset();
    expect(d.state).toBe('ok');
    expect(d.observe({ t: 600, spanMs: 100, calls: 10, waitMs: 100, rejected: 0, lagMs: 1 })).toBeNull();
    expect(d.observe({ t: 700, spanMs: 100, calls: 10, waitMs: 100, rejected: 0, lagMs: 1 })).toBeNull();
  });
});
