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

describe('ResourceScheduler rate limits in virtual time', () => {
  /** One device of capacity 1; each VM keeps `outstanding` jobs queued; returns device ms and bytes per VM. */
  function run(
    setup: (s: ResourceScheduler<{ cost: number }>) => void,
    vms: { vm: string; outstanding: number; cost: number; bytes?: number }[],
    horizonMs: number,
    midway?: (s: ResourceScheduler<{ cost: number }>) => void,
  ) {
    const clock = new VirtualClock();
    const served = new Map<string, { ms: number; bytes: number; ops: number }>(
      vms.map((v) => [v.vm, { ms: 0, bytes: 0, ops: 0 }]),
    );
    const sched: ResourceScheduler<{ cost: number }> = new ResourceScheduler<{ cost: number }>({
      name: 'dev',
      policy: 'fair',
      capacity: 1,
      clock,
      dispatch: (job) => {
        clock.at(clock.now() + job.payload.cost, () => {
          if (clock.now() <= horizonMs) {
            const s = served.get(job.vm)!;
            s.ms += job.payload.cost;
            s.bytes += job.bytes;
            s.ops++;
          }
          sched.complete(job.vm);
          const v = vms.find((x) => x.vm === job.vm)!;
          if (clock.now() < horizonMs) sched.submit(v.vm, v.cost, { cost: v.cost }, v.bytes ?? 0);
        });
      },
    });
    setup(sched);
    for (const v of vms)
      for (let i = 0; i < v.outstanding; i++) sched.submit(v.vm, v.cost, { cost: v.cost }, v.bytes ?? 0);
    if (midway) clock.at(horizonMs / 2, () => midway(sched));
    clock.runAll();
    return served;
  }

  it('caps a VM at a share of the device even when it could use more', () => {
    const served = run(
      (s) => s.configureVm('capped', { cap: { ratePerMs: 0.25, burst: 5 } }),
      [
        { vm: 'capped', outstanding: 8, cost: 1 },
        { vm: 'free', outstanding: 8, cost: 1 },
      ],
      20_000,
    );
    expect(served.get('capped')!.ms / 20_000).toBeCloseTo(0.25, 2);
    expect(served.get('free')!.ms / 20_000).toBeGreaterThan(0.74);
  });

  it('leaves the device idle rather than exceed a cap (not work-conserving, like a CPU quota)', () => {
    const served = run(
      (s) => s.configureVm('alone', { cap: { ratePerMs: 0.4, burst: 2 } }),
      [{ vm: 'alone', outstanding: 4, cost: 1 }],
      10_000,
    );
    expect(served.get('alone')!.ms / 10_000).toBeCloseTo(0.4, 2);
  });

  it('limits bytes and operations per ms with token buckets', () => {
    const bytes = run(
      (s) => s.configureVm('v', { bytes: { ratePerMs: 4096, burst: 65536 } }),
      [{ vm: 'v', outstanding: 4, cost: 0.1, bytes: 16384 }],
      10_000,
    );
    expect(Math.abs(bytes.get('v')!.bytes / 10_000 - 4096) / 4096).toBeLessThan(0.05);
    const ops = run(
      (s) => s.configureVm('v', { ops: { ratePerMs: 2, burst: 10 } }),
      [{ vm: 'v', outstanding: 4, cost: 0.1 }],
      10_000,
    );
    expect(Math.abs(ops.get('v')!.ops / 10_000 - 2) / 2).toBeLessThan(0.05);
  });

  it('applies a change while the VM runs: lifting the cap gives it its fair share again', () => {
    const served = run(
      (s) => s.configureVm('a', { cap: { ratePerMs: 0.1, burst: 1 } }),
      [
        { vm: 'a', outstanding: 8, cost: 1 },
        { vm: 'b', outstanding: 8, cost: 1 },
      ],
      20_000,
      (s) => s.configureVm('a', { cap: null }),
    );
    // Half the time at 10%, half at 50%.
    expect(served.get('a')!.ms / 20_000).toBeCloseTo(0.3, 1);
  });
});
