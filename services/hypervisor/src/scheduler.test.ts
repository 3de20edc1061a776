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
 * number of requests outstanding and resubmits on completion. Returns device time per VM;
 * `arrivals` counts the requests submitted.
 */
function saturate(policy: Policy, loads: Load[], seed: string, capacity = 4, horizonMs = 30_000) {
  const clock = new VirtualClock();
  const rng = createRng(seed);
  const served = new Map<string, number>(loads.map((l) => [l.vm, 0]));
  const submit = (l: Load): void => {
    const cost = rng.exp(l.meanCost);
    arrivals++;
    sched.submit(l.vm, cost, { cost });
  };
  let arrivals = 0;
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
  return Object.assign(served, { arrivals });
}

function jain(xs: number[]): number {
  const sum = xs.reduce((a, b) => a + b, 0);
  return (sum * sum) / (xs.length * xs.reduce((a, b) => a + b * b, 0));
}

const SEEDS = ['s1', 's2', 's3', 's4'];

describe('ResourceScheduler (fair) in virtual time', () => {
  it('gives equal-weight VMs equal shares of a saturated CPU (Jain ≥ 0.99), even when one floods it, over 4 seeds × 100k arrivals', () => {
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
        4,
        40_000,
      );
      expect(served.arrivals).toBeGreaterThanOrEqual(100_000);
      expect(jain([...served.values()])).toBeGreaterThanOrEqual(0.99);
    }
  });

  it('gives weights 1:2:4 shares 1:2:4 within 5% over 4 seeds × 100k arrivals', () => {
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
      expect(served.arrivals).toBeGreaterThanOrEqual(100_000);
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

/**
 * A serial device with a deep queue of its own (a disk's NCQ, a NIC's ring): it accepts up to
 * `capacity` jobs and serves them one at a time in arrival order. A neighbour keeps 64 big
 * jobs outstanding; a victim sends small ones now and then. Returns the victim's mean
 * response time (queue in the hypervisor + queue in the device + service), ms.
 */
function serialDevice(policy: Policy, seed: string, fairDepthMs: number | undefined) {
  const clock = new VirtualClock();
  const rng = createRng(seed);
  let freeAt = 0;
  const horizon = 20_000;
  const victim: number[] = [];
  const sched: ResourceScheduler<{ at: number }> = new ResourceScheduler<{ at: number }>({
    name: 'disk',
    policy,
    capacity: 32,
    fairDepthMs,
    clock,
    dispatch: (job) => {
      freeAt = Math.max(clock.now(), freeAt) + job.cost;
      clock.at(freeAt, () => {
        if (job.vm === 'victim') victim.push(clock.now() - job.payload.at);
        sched.complete(job.vm, job.cost);
        if (job.vm === 'noisy' && clock.now() < horizon) sched.submit('noisy', 0.48, { at: clock.now() });
      });
    },
  });
  for (let i = 0; i < 64; i++) sched.submit('noisy', 0.48, { at: 0 });
  const arrive = (): void => {
    if (clock.now() >= horizon) return;
    sched.submit('victim', 0.03, { at: clock.now() });
    clock.at(clock.now() + rng.exp(5), arrive);
  };
  clock.at(rng.exp(5), arrive);
  clock.runAll();
  return victim.reduce((a, b) => a + b, 0) / victim.length;
}

describe('ResourceScheduler on a serial device with a deep queue', () => {
  it('under fair keeps little outstanding, so a neighbour backlog waits in the fair queue, not the device', () => {
    for (const seed of SEEDS) {
      // Two big jobs in the device at most, plus the victim's own.
      expect(serialDevice('fair', seed, 0.25)).toBeLessThan(1.1);
      // Without the depth limit fair queueing orders only what the device has not taken yet.
      expect(serialDevice('fair', seed, undefined)).toBeGreaterThan(10);
      // fifo fills the device's whole queue (32 × 0.48 ms) in front of the victim.
      expect(serialDevice('fifo', seed, 0.25)).toBeGreaterThan(10);
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

describe('ResourceScheduler reservations in virtual time', () => {
  interface Vm {
    vm: string;
    /** Jobs kept outstanding (0: the VM is idle). */
    outstanding: number;
    /** Its vCPUs: jobs on the device at once. */
    limit: number;
    weight?: number;
    /** Cores reserved, and the cap, in cores. */
    reservation?: number;
    cap?: number;
    /** When it starts submitting (simulated ms). */
    from?: number;
  }

  /** Four cores; every VM resubmits on completion with exponential costs of mean 1 ms. Returns cores used. */
  function cores(
    policy: Policy,
    vms: Vm[],
    seed: string,
    opts: { horizonMs?: number; meanCost?: Record<string, number>; midway?: (s: ResourceScheduler<null>) => void } = {},
  ) {
    const horizonMs = opts.horizonMs ?? 20_000;
    const clock = new VirtualClock();
    const rng = createRng(seed);
    const served = new Map<string, number>(vms.map((v) => [v.vm, 0]));
    const submit = (vm: string): void => sched.submit(vm, rng.exp(opts.meanCost?.[vm] ?? 1), null);
    const sched: ResourceScheduler<null> = new ResourceScheduler<null>({
      name: 'cpu',
      policy,
      capacity: 4,
      clock,
      dispatch: (job) => {
        clock.at(clock.now() + job.cost, () => {
          if (clock.now() <= horizonMs) served.set(job.vm, served.get(job.vm)! + job.cost);
          sched.complete(job.vm);
          if (clock.now() < horizonMs) submit(job.vm);
        });
      },
    });
    for (const v of vms) {
      sched.configureVm(v.vm, {
        weight: v.weight ?? 100,
        limit: v.limit,
        // As HostDevices sets them: buckets of 10 ms of their rate.
        reservation: v.reservation ? { ratePerMs: v.reservation, burst: Math.max(1, v.reservation * 10) } : null,
        cap: v.cap ? { ratePerMs: v.cap, burst: Math.max(1, v.cap * 10) } : null,
      });
    }
    for (const v of vms) clock.at(v.from ?? 0, () => Array.from({ length: v.outstanding }, () => submit(v.vm)));
    if (opts.midway) clock.at(horizonMs / 2, () => opts.midway!(sched));
    clock.runAll();
    return new Map([...served].map(([vm, ms]) => [vm, ms / horizonMs]));
  }

  const near = (x: number, want: number, tol: number) => expect(Math.abs(x - want) / want).toBeLessThan(tol);
  const three = (reservation?: number, cap?: number): Vm[] => [
    { vm: 'a', outstanding: 8, limit: 4, ...(reservation ? { reservation } : {}), ...(cap ? { cap } : {}) },
    { vm: 'b', outstanding: 8, limit: 4 },
    { vm: 'c', outstanding: 8, limit: 4 },
  ];

  it('gives a VM its 150% reservation among three saturating VMs of equal shares; the others split the rest', () => {
    for (const seed of SEEDS) {
      const c = cores('fair', three(1.5), seed);
      // A floor, not a share on top: 1.5 cores (not 1.5 + 2.5/3), and 1.25 each for the others.
      near(c.get('a')!, 1.5, 0.02);
      expect(c.get('a')!).toBeGreaterThanOrEqual(1.5 * 0.98);
      near(c.get('b')!, 1.25, 0.02);
      near(c.get('c')!, 1.25, 0.02);
      expect(jain([c.get('b')!, c.get('c')!])).toBeGreaterThanOrEqual(0.99);
    }
  });

  it('changes nothing when the reservation is below what the shares give', () => {
    for (const seed of SEEDS) {
      const c = cores('fair', three(1), seed);
      for (const vm of ['a', 'b', 'c']) near(c.get(vm)!, 4 / 3, 0.02);
    }
  });

  it('costs the others nothing when the reserved VM does not use it (work-conserving)', () => {
    for (const seed of SEEDS) {
      // Idle: the two busy VMs keep all four cores.
      const idle = cores('fair', [{ vm: 'a', outstanding: 0, limit: 4, reservation: 1.5 }, ...three().slice(1)], seed);
      near(idle.get('b')! + idle.get('c')!, 4, 0.01);
      // One vCPU, so less than its 1.5 reserved: the others get all it leaves, as without a reservation.
      const light = (reservation?: number) =>
        cores(
          'fair',
          [{ vm: 'a', outstanding: 1, limit: 1, ...(reservation ? { reservation } : {}) }, ...three().slice(1)],
          seed,
        );
      const withRes = light(1.5);
      const without = light();
      const sum = (m: Map<string, number>) => [...m.values()].reduce((x, y) => x + y, 0);
      expect(withRes.get('a')!).toBeLessThan(1);
      near(sum(withRes), 4, 0.01);
      for (const vm of ['a', 'b', 'c']) near(withRes.get(vm)!, without.get(vm)!, 0.02);
      near(withRes.get('b')!, withRes.get('c')!, 0.02);
    }
  });

  it('clips a reservation above the cap at the cap', () => {
    for (const seed of SEEDS) {
      const c = cores('fair', three(1.5, 1), seed);
      near(c.get('a')!, 1, 0.02);
      near(c.get('b')!, 1.5, 0.02);
      near(c.get('c')!, 1.5, 0.02);
    }
  });

  it('holds under fifo too: a reserved VM keeps its core against a flooding neighbour', () => {
    for (const seed of SEEDS) {
      const run = (reservation?: number) =>
        cores(
          'fifo',
          [
            { vm: 'victim', outstanding: 4, limit: 2, ...(reservation ? { reservation } : {}) },
            { vm: 'noisy', outstanding: 64, limit: 64 },
          ],
          seed,
          { meanCost: { noisy: 5 } },
        );
      expect(run().get('victim')!).toBeLessThan(0.5);
      expect(run(1).get('victim')!).toBeGreaterThanOrEqual(0.98);
    }
  });

  it('guarantees the reservation at once to a VM that ran above it on its shares until then', () => {
    for (const seed of SEEDS) {
      const c = cores(
        'fair',
        [
          { vm: 'a', outstanding: 8, limit: 4, reservation: 1 },
          { vm: 'b', outstanding: 8, limit: 4 },
          { vm: 'greedy', outstanding: 16, limit: 4, weight: 1000, from: 10_000 },
        ],
        seed,
      );
      // Two cores on its shares for the first half; in the second its shares give it a third
      // of a core, and the reservation one core: no debt from the first half carries over.
      near(c.get('a')!, (2 + 1) / 2, 0.02);
    }
  });

  it('does not make a VM pay its guaranteed time back when the reservation is lifted', () => {
    for (const seed of SEEDS) {
      const c = cores('fair', three(2.5), seed, {
        midway: (s) => s.configureVm('a', { reservation: null }),
      });
      // Half the time at 2.5 cores, half at an equal third of four.
      near(c.get('a')!, (2.5 + 4 / 3) / 2, 0.03);
      near(c.get('b')!, c.get('c')!, 0.02);
    }
  });
});
