import { describe, expect, it } from 'vitest';
import { VirtualClock, createRng } from '@vmsim/shared';
import { ResourceScheduler, type Policy } from './scheduler.ts';

interface Load {
  vm: string;
  weight: number;
  /** Requests each VM keeps outstanding (a closed loop that always has work queued). */
  outstanding: number;
  meanCost: number;
}

/**
 * A device with `capacity` servers behind a scheduler, in virtual time: every VM keeps a
 * number of requests outstanding and resubmits on completion. Returns device time per VM.
 */
function saturate(policy: Policy, loads: Load[], seed: string, capacity = 4, horizonMs = 20_000) {
  const clock = new VirtualClock();
  const rng = createRng(seed);
  const served = new Map<string, number>(loads.map((l) => [l.vm, 0]));
  const submit = (l: Load): void => {
    const cost = rng.exp(l.meanCost);
    sched.submit(l.vm, cost, { cost });
  };
  const sched: ResourceScheduler<{ cost: number }> = new ResourceScheduler<{ cost: number }>({
    name: 'cpu',
    policy,
    capacity,
    clock,
    dispatch: (job) => {
      clock.at(clock.now() + job.payload.cost, () => {
        if (clock.now() <= horizonMs) served.set(job.vm, served.get(job.vm)! + job.payload.cost);
        sched.complete(job.vm);
        if (clock.now() < horizonMs) submit(loads.find((l) => l.vm === job.vm)!);
      });
    },
  });
  for (const l of loads) sched.configureVm(l.vm, { weight: l.weight });
  for (const l of loads) for (let i = 0; i < l.outstanding; i++) submit(l);
  clock.runAll();
  return served;
}

function jain(xs: number[]): number {
  const sum = xs.reduce((a, b) => a + b, 0);
  return (sum * sum) / (xs.length * xs.reduce((a, b) => a + b * b, 0));
}

const SEEDS = ['s1', 's2', 's3', 's4'];

describe('ResourceScheduler (fair) in virtual time', () => {
  it('gives equal-weight VMs equal shares of a saturated CPU (Jain ≥ 0.99), even when one floods it', () => {
    for (const seed of SEEDS) {
      const served = saturate(
        'fair',
        [
          { vm: 'a', weight: 100, outstanding: 4, meanCost: 1 },
          { vm: 'b', weight: 100, outstanding: 4, meanCost: 1 },
          { vm: 'c', weight: 100, outstanding: 4, meanCost: 1 },
          { vm: 'noisy', weight: 100, outstanding: 64, meanCost: 5 },
        ],
        seed,
      );
      expect(jain([...served.values()])).toBeGreaterThanOrEqual(0.99);
    }
  });

  it('gives weights 1:2:4 shares 1:2:4 within 5%', () => {
    for (const seed of SEEDS) {
      const served = saturate(
        'fair',
        [
          { vm: 'w1', weight: 100, outstanding: 16, meanCost: 1 },
          { vm: 'w2', weight: 200, outstanding: 16, meanCost: 1 },
          { vm: 'w4', weight: 400, outstanding: 16, meanCost: 1 },
        ],
        seed,
      );
      const total = [...served.values()].reduce((a, b) => a + b, 0);
      const expected = { w1: 1 / 7, w2: 2 / 7, w4: 4 / 7 };
      for (const [vm, share] of Object.entries(expected)) {
        expect(Math.abs(served.get(vm)! / total - share) / share).toBeLessThan(0.05);
      }
    }
  });

  it('under fifo lets a noisy neighbour take the device (the contrast fair queueing removes)', () => {
    for (const seed of SEEDS) {
      const loads = [
        { vm: 'victim', weight: 100, outstanding: 4, meanCost: 1 },
        { vm: 'noisy', weight: 100, outstanding: 64, meanCost: 5 },
      ];
      const fifo = saturate('fifo', loads, seed);
      const fair = saturate('fair', loads, seed);
      const share = (m: Map<string, number>) => m.get('victim')! / (m.get('victim')! + m.get('noisy')!);
      expect(share(fifo)).toBeLessThan(0.1);
      expect(share(fair)).toBeGreaterThan(0.45);
    }
  });
});

describe('ResourceScheduler mechanics', () => {
  it('never holds more than the capacity or a VM more than its limit on the device', () => {
    const clock = new VirtualClock();
    const running = new Map<string, number>();
    let maxTotal = 0;
    let maxA = 0;
    const sched: ResourceScheduler<null> = new ResourceScheduler<null>({
      name: 'cpu',
      policy: 'fair',
      capacity: 3,
      clock,
      dispatch: (job) => {
        running.set(job.vm, (running.get(job.vm) ?? 0) + 1);
        maxTotal = Math.max(
          maxTotal,
          [...running.values()].reduce((a, b) => a + b, 0),
        );
        maxA = Math.max(maxA, running.get('a') ?? 0);
        clock.at(clock.now() + 1, () => {
          running.set(job.vm, running.get(job.vm)! - 1);
          sched.complete(job.vm);
        });
      },
    });
    sched.configureVm('a', { limit: 1 });
    for (let i = 0; i < 10; i++) {
      sched.submit('a', 1, null);
      sched.submit('b', 1, null);
    }
    clock.runAll();
    expect(maxTotal).toBe(3);
    expect(maxA).toBe(1);
    expect(sched.inFlight).toBe(0);
    expect(sched.queued).toBe(0);
  });

  it('reports queue wait at dispatch and forgets a dropped VM', () => {
    const clock = new VirtualClock();
    const waits: number[] = [];
    const sched = new ResourceScheduler<null>({
      name: 'disk',
      policy: 'fifo',
      capacity: 1,
      clock,
      dispatch: (_job, waitMs) => waits.push(waitMs),
    });
    sched.submit('a', 1, null);
    sched.submit('b', 1, null);
    sched.submit('c', 1, null);
    clock.runUntil(5);
    sched.complete('a');
    expect(waits).toEqual([0, 5]);
    expect(sched.drop('c')).toHaveLength(1);
    sched.complete('b');
    expect(waits).toHaveLength(2);
    expect(sched.queued).toBe(0);
    expect(() => sched.complete('b')).toThrow(/no job/);
  });
});
