import { describe, expect, it } from 'vitest';
import { ErrorCode, createRng } from '@vmsim/shared';
import { ExtentAllocator } from './block-map.ts';
import { MemoryManager, proportional, type AllocResult } from './memory.ts';
import type { Policy } from './scheduler.ts';

const SEEDS = ['1', '2', '3', '4', '5'];

function manager(policy: Policy, seed = '1', hostMiB = 8192, swapMiB = 8192): MemoryManager {
  return new MemoryManager({ hostMiB, swapMiB, policy, rng: createRng(seed) });
}

function ok(r: AllocResult): Extract<AllocResult, { kind: 'ok' }> {
  if (r.kind !== 'ok') throw new Error(`expected ok, got ${JSON.stringify(r)}`);
  return r;
}

/** Every invariant the model promises, after any step (plain checks: the random walk makes many). */
function checkInvariants(mm: MemoryManager, names: string[]): void {
  const bad: string[] = [];
  const t = mm.totals();
  if (t.residentMiB > mm.hostMiB) bad.push(`resident ${t.residentMiB} > host ${mm.hostMiB}`);
  if (t.swappedMiB > mm.swapCapacityMiB) bad.push(`swapped ${t.swappedMiB} > swap ${mm.swapCapacityMiB}`);
  for (const n of names) {
    const f = mm.figures(n);
    if (!f) continue;
    if (f.usedMiB > f.sizeMiB) bad.push(`${n}: used ${f.usedMiB} > size ${f.sizeMiB}`);
    if (f.residentMiB < 0 || f.swappedMiB < 0 || f.balloonMiB < 0) bad.push(`${n}: negative ${JSON.stringify(f)}`);
    // Slack (freed pages still backed) is never negative: used pages are resident or swapped.
    if (f.residentMiB + f.swappedMiB < f.usedMiB) bad.push(`${n}: used pages lost ${JSON.stringify(f)}`);
    if (!Number.isInteger(f.residentMiB) || !Number.isInteger(f.swappedMiB)) bad.push(`${n}: not whole MiB`);
  }
  if (bad.length > 0) expect.fail(bad.join('; '));
}

/**
 * Host 8 GiB for guests, overcommit 1.5: a hog of 8 GiB and two well-behaved 2 GiB VMs that
 * touch 1 GiB each; then the hog touches all of its RAM, 256 MiB at a time.
 */
function hogScenario(policy: Policy, seed: string): MemoryManager {
  const mm = manager(policy, seed);
  mm.register('a', 2048, 2048);
  mm.register('b', 2048, 2048);
  mm.register('hog', 8192, 8192);
  ok(mm.alloc('a', 1024));
  ok(mm.alloc('b', 1024));
  for (let i = 0; i < 32; i++) ok(mm.alloc('hog', 256));
  checkInvariants(mm, ['a', 'b', 'hog']);
  return mm;
}

/** Rounds of CPU bursts (10 per VM per round): major faults per VM, and their mean fault chance. */
function runBursts(mm: MemoryManager, rounds: number): Record<string, { faults: number; meanChance: number }> {
  const out: Record<string, { faults: number; meanChance: number }> = {};
  for (const n of ['a', 'b', 'hog']) out[n] = { faults: 0, meanChance: 0 };
  for (let r = 0; r < rounds; r++) {
    for (const n of ['a', 'b', 'hog']) {
      for (let i = 0; i < 10; i++) {
        out[n]!.meanChance += mm.faultChance(n) / (rounds * 10);
        if (mm.maybeFault(n)) out[n]!.faults++;
      }
    }
  }
  checkInvariants(mm, ['a', 'b', 'hog']);
  return out;
}

describe('guest memory: limits', () => {
  it('OOM-kills only the VM past its limit; past its RAM size the guest is refused, not killed', () => {
    const mm = manager('fair');
    mm.register('small', 1024, 300);
    mm.register('other', 1024, 1024);
    ok(mm.alloc('small', 200));
    ok(mm.alloc('other', 900));
    const r = mm.alloc('small', 101);
    expect(r).toEqual({ kind: 'oom', usedMiB: 200, wantMiB: 101, limitMiB: 300 });
    // The verdict changes nothing: the adapter kills the guest and removes it.
    expect(mm.figures('small')!.usedMiB).toBe(200);
    expect(mm.figures('other')!.usedMiB).toBe(900);
    expect(() => mm.alloc('other', 125)).toThrow(
      expect.objectContaining({ code: ErrorCode.NO_MEMORY, message: expect.stringMatching(/guest RAM exhausted/) }),
    );
    expect(mm.alloc('other', 124).kind).toBe('ok');
  });

  it('a limit lowered below what the guest uses is an OOM verdict; shrinking below it is refused with the figures', () => {
    const mm = manager('fair');
    mm.register('v', 2048, 2048);
    ok(mm.alloc('v', 1000));
    expect(mm.setLimit('v', 1500)).toEqual({ oom: false, usedMiB: 1000 });
    expect(mm.setLimit('v', 999)).toEqual({ oom: true, usedMiB: 1000 });
    expect(() => mm.resize('v', 900)).toThrow(
      expect.objectContaining({ code: ErrorCode.BAD_STATE, message: expect.stringMatching(/uses 1000 MiB/) }),
    );
  });

  it('hot-plug lets the guest grow; a smaller size balloons away pages it had freed', () => {
    const mm = manager('fair');
    mm.register('v', 1024, 4096);
    ok(mm.alloc('v', 1000));
    expect(() => mm.alloc('v', 100)).toThrow(expect.objectContaining({ code: ErrorCode.NO_MEMORY }));
    mm.resize('v', 2048);
    ok(mm.alloc('v', 900));
    mm.free('v', 1400);
    expect(mm.figures('v')).toMatchObject({ usedMiB: 500, residentMiB: 1900 });
    expect(mm.resize('v', 1000)).toEqual({ ballooned: 900 });
    expect(mm.figures('v')).toMatchObject({ sizeMiB: 1000, usedMiB: 500, residentMiB: 1000, balloonMiB: 900 });
  });
});

describe('guest memory: overcommit', () => {
  it('under fair the hog absorbs all the swapping and the well-behaved VMs never fault', () => {
    for (const seed of SEEDS) {
      const mm = hogScenario('fair', seed);
      expect(mm.figures('a')).toMatchObject({ residentMiB: 1024, swappedMiB: 0 });
      expect(mm.figures('b')).toMatchObject({ residentMiB: 1024, swappedMiB: 0 });
      expect(mm.figures('hog')).toMatchObject({ usedMiB: 8192, residentMiB: 6144, swappedMiB: 2048 });
      const f = runBursts(mm, 300);
      expect(f['a']!.faults + f['b']!.faults).toBe(0);
      expect(mm.faultChance('a') + mm.faultChance('b')).toBe(0);
      // The hog thrashes on its own pages: a quarter of them are always out.
      expect(f['hog']!.meanChance).toBeCloseTo(0.25, 5);
      expect(f['hog']!.faults).toBeGreaterThan(600);
      expect(f['hog']!.faults).toBeLessThan(900);
    }
  });

  it('under fifo (one global LRU) the well-behaved VMs get swapped and keep faulting', () => {
    for (const seed of SEEDS) {
      const mm = hogScenario('fifo', seed);
      // The hog's pages are the newest: the others' 2 GiB went out first, all of it.
      expect(mm.figures('a')).toMatchObject({ residentMiB: 0, swappedMiB: 1024 });
      expect(mm.figures('b')).toMatchObject({ residentMiB: 0, swappedMiB: 1024 });
      expect(mm.figures('hog')!.swappedMiB).toBe(0);
      const f = runBursts(mm, 300);
      // Each fault pulls a page back by pushing out someone else's: they never recover.
      expect(f['a']!.faults).toBeGreaterThan(1000);
      expect(f['b']!.faults).toBeGreaterThan(1000);
      expect(f['a']!.meanChance).toBeGreaterThan(0.3);
      expect(f['hog']!.faults).toBeGreaterThan(0);
      expect(mm.totals().swappedMiB).toBe(2048);
    }
  });

  it('switching the policy at run time changes whose pages go next', () => {
    const mm = hogScenario('fifo', '1');
    mm.policy = 'fair';
    // Now a page a faults back in comes out of the hog, the VM most above its share.
    const r = mm.maybeFault('a');
    expect(r).toBeDefined();
    expect([...r!.swappedOut]).toEqual([['hog', 1]]);
  });

  it('the balloon takes back freed pages before anything is swapped, and the hog pays nothing to disk for them', () => {
    for (const policy of ['fair', 'fifo'] as const) {
      const mm = manager(policy, '1', 4096);
      mm.register('a', 4096, 4096);
      mm.register('hog', 4096, 4096);
      ok(mm.alloc('a', 3000));
      mm.free('a', 2000);
      expect(mm.figures('a')).toMatchObject({ usedMiB: 1000, residentMiB: 3000 });
      ok(mm.alloc('hog', 1000));
      // 96 MiB are free on the host; the next 1500 take 1404 MiB of a's freed pages.
      const r = ok(mm.alloc('hog', 1500));
      expect([...r.ballooned]).toEqual([['a', 1404]]);
      expect(r.swappedOut.size).toBe(0);
      // a's last 596 freed MiB go, and only then does anything go to swap.
      const r2 = ok(mm.alloc('hog', 596 + 50));
      expect([...r2.ballooned]).toEqual([['a', 596]]);
      expect([...r2.swappedOut]).toEqual([[policy === 'fair' ? 'hog' : 'a', 50]]);
      expect(mm.figures('a')).toMatchObject({ usedMiB: 1000, balloonMiB: 2000 });
      checkInvariants(mm, ['a', 'hog']);
      // a needs memory again: its balloon deflates.
      mm.free('hog', 2000);
      ok(mm.alloc('a', 500));
      expect(mm.figures('a')!.balloonMiB).toBe(1500);
    }
  });

  it('a guest reuses pages it freed without any host cost', () => {
    const mm = manager('fair', '1', 1024);
    mm.register('a', 1024, 1024);
    mm.register('b', 1024, 1024);
    ok(mm.alloc('a', 600));
    ok(mm.alloc('b', 400));
    mm.free('a', 300);
    const r = ok(mm.alloc('a', 300));
    expect(r).toMatchObject({ reusedMiB: 300, freshMiB: 0 });
    expect(r.ballooned.size + r.swappedOut.size).toBe(0);
  });

  it('refuses what neither RAM nor swap can hold, changing nothing', () => {
    const mm = manager('fair', '1', 1024, 256);
    mm.register('a', 2048, 2048);
    ok(mm.alloc('a', 1200));
    const before = mm.figures('a');
    expect(() => mm.alloc('a', 100)).toThrow(
      expect.objectContaining({ code: ErrorCode.NO_MEMORY, message: expect.stringMatching(/host memory exhausted/) }),
    );
    expect(mm.figures('a')).toEqual(before);
  });

  it('keeps resident RAM within the host through random allocations, frees, faults and policy switches', () => {
    for (const seed of SEEDS) {
      const rng = createRng(`walk/${seed}`);
      const names = ['a', 'b', 'c', 'd'];
      const mm = manager('fair', seed, 4096, 4096);
      for (const n of names) mm.register(n, 2048, n === 'd' ? 1024 : 2048);
      let ooms = 0;
      for (let i = 0; i < 2000; i++) {
        const n = rng.pick(names);
        const x = rng.next();
        if (x < 0.45) {
          try {
            const r = mm.alloc(n, 1 + rng.int(300));
            if (r.kind === 'oom') {
              ooms++;
              expect(n).toBe('d');
              expect(r.usedMiB + r.wantMiB).toBeGreaterThan(1024);
            }
          } catch (e) {
            expect((e as { code: string }).code).toBe(ErrorCode.NO_MEMORY);
          }
        } else if (x < 0.75) mm.free(n, 1 + rng.int(300));
        else if (x < 0.99) mm.maybeFault(n);
        else mm.policy = mm.policy === 'fair' ? 'fifo' : 'fair';
        checkInvariants(mm, names);
      }
      expect(ooms).toBeGreaterThan(0);
    }
  });

  it('removing a powered-off VM frees its RAM and swap: the next allocation needs no reclaim', () => {
    const mm = hogScenario('fair', '1');
    expect(mm.remove('hog')).toMatchObject({ usedMiB: 8192, swappedMiB: 2048 });
    expect(mm.totals()).toMatchObject({ residentMiB: 2048, swappedMiB: 0, freeMiB: 6144 });
    expect(mm.faultChance('hog')).toBe(0);
    const r = ok(mm.alloc('a', 1024));
    expect(r.ballooned.size + r.swappedOut.size).toBe(0);
    expect(() => mm.alloc('hog', 1)).toThrow(expect.objectContaining({ code: ErrorCode.VM_NOT_RUNNING }));
  });
});

describe('proportional split', () => {
  it('splits whole MiB exactly, in proportion, never more than each holds', () => {
    const w = new Map([
      ['x', 10],
      ['y', 20],
      ['z', 1],
    ]);
    const p = proportional(7, w);
    expect([...p.values()].reduce((a, b) => a + b, 0)).toBe(7);
    expect(p.get('y')).toBeGreaterThan(p.get('x')!);
    expect(proportional(100, w)).toEqual(w);
    expect(proportional(5, new Map()).size).toBe(0);
  });
});

describe('swap area', () => {
  it('goes at the end of a disk, after what VMs hold, so VM disks keep being placed from the start', () => {
    const GiB = 1024 ** 3;
    const alloc = new ExtentAllocator([{ id: 'sda', capacityBytes: 10 * GiB }]);
    alloc.allocate(2 * GiB);
    expect(alloc.allocateAtEnd('sda', 4 * GiB)).toMatchObject({ disk: 'sda', pOffset: 6 * GiB, length: 4 * GiB });
    expect(alloc.allocate(3 * GiB)).toMatchObject({ pOffset: 2 * GiB });
    // Nothing is free after the last extent any more; on a fuller disk it takes what fits.
    expect(alloc.allocateAtEnd('sda', 1 * GiB)).toBeUndefined();
    const full = new ExtentAllocator([{ id: 'sdb', capacityBytes: 10 * GiB }]);
    full.allocate(9 * GiB);
    expect(full.allocateAtEnd('sdb', 4 * GiB)).toMatchObject({ pOffset: 9 * GiB, length: 1 * GiB });
  });
});
