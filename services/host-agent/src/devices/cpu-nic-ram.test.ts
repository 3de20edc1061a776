import { describe, expect, it } from 'vitest';
import { ErrorCode, VirtualClock, createRng } from '@vmsim/shared';
import { CpuPackage } from './cpu.ts';
import { NicLink } from './nic.ts';
import { Ram } from './ram.ts';

describe('CpuPackage', () => {
  it('runs one burst per core for cycles / clock', () => {
    const cpu = new CpuPackage({ sockets: 2, coresPerSocket: 2, mhz: 2000 });
    expect(cpu.capacity).toBe(4);
    const a = cpu.start(2_000_000, 0)!;
    expect(a.serviceMs).toBeCloseTo(1, 9);
    for (let i = 0; i < 3; i++) expect(cpu.start(1, 0)).toBeDefined();
    expect(cpu.start(1, 0)).toBeUndefined();
    cpu.finish(a.core, 1);
    expect(cpu.start(1, 1)?.core).toBe(a.core);
    expect(() => cpu.finish(a.core, 2)).not.toThrow();
    expect(() => cpu.finish(a.core, 2)).toThrow(/not busy/);
  });

  it('keeps an owner on the core that last ran it and charges a switch to a core that ran another', () => {
    const cpu = new CpuPackage({ sockets: 1, coresPerSocket: 2, mhz: 1000 });
    const a = cpu.start(1_000_000, 0, 'A', 500)!;
    const b = cpu.start(1_000_000, 0, 'B', 500)!;
    expect([a.switched, b.switched]).toEqual([false, false]); // fresh cores hold nobody's state
    cpu.finish(b.core, 1);
    cpu.finish(a.core, 2); // B's core is now the one idle longest, yet A goes back to its own
    const a2 = cpu.start(1_000_000, 3, 'A', 500)!;
    expect(a2).toMatchObject({ core: a.core, switched: false, serviceMs: 1 });
    const c = cpu.start(1_000_000, 3, 'C', 500)!;
    expect(c.core).toBe(b.core);
    expect(c.switched).toBe(true);
    expect(c.serviceMs).toBeCloseTo(1.0005, 9); // 1 M cycles + 500 at 1 GHz
    expect(c.doneAt).toBeCloseTo(4.0005, 9);
    expect([cpu.switches, cpu.switchCycles, cpu.cycles]).toEqual([1, 500, 4_000_500]);
  });

  it('measures utilization across cores', () => {
    const cpu = new CpuPackage({ sockets: 1, coresPerSocket: 2, mhz: 1000 });
    const s = cpu.start(1_000_000, 0)!; // one core for 1 ms
    cpu.finish(s.core, 1);
    expect(cpu.meter.takeUtilization(2)).toBeCloseTo(0.25, 9);
  });
});

/**
 * `owners` closed loops on 4 cores in virtual time: each runs a burst of 0.2-2 ms, then waits
 * 0-1 ms (its I/O, its client) before the next; a burst that finds no free core waits in
 * FIFO order, as the hypervisor's scheduler would hold it.
 */
function ownersOnCores(owners: number, seed: number, switchCycles = 50_000) {
  const clock = new VirtualClock();
  const rng = createRng(`cpu-affinity:${owners}:${seed}`);
  const cpu = new CpuPackage({ sockets: 1, coresPerSocket: 4, mhz: 1000 });
  const waiting: { owner: string; cycles: number }[] = [];
  let work = 0;
  const run = (owner: string, cycles: number) => {
    const slot = cpu.start(cycles, clock.now(), owner, switchCycles);
    if (!slot) {
      waiting.push({ owner, cycles });
      return;
    }
    clock.at(slot.doneAt, () => {
      cpu.finish(slot.core, clock.now());
      const next = waiting.shift();
      if (next) run(next.owner, next.cycles);
      if (clock.now() < 2_000) clock.at(clock.now() + rng.next(), () => submit(owner));
    });
  };
  const submit = (owner: string) => {
    const cycles = Math.round(200_000 + rng.next() * 1_800_000);
    work += cycles;
    run(owner, cycles);
  };
  for (let o = 0; o < owners; o++) clock.at(rng.next(), () => submit(`vm${o}`));
  clock.runAll();
  return { cpu, work };
}

describe('CpuPackage world switches', () => {
  const seeds = [1, 2, 3, 4, 5];

  it('runs as many owners as cores without a single switch, thanks to core affinity', () => {
    for (const seed of seeds) {
      for (const owners of [1, 3, 4]) {
        const { cpu } = ownersOnCores(owners, seed);
        expect(cpu.ops, `${owners} owners, seed ${seed}`).toBeGreaterThan(owners * 500);
        expect(cpu.switches, `${owners} owners, seed ${seed}`).toBe(0);
      }
    }
  });

  it('switches on most bursts once owners outnumber the cores, and charges every switch', () => {
    for (const seed of seeds) {
      const share = (owners: number) => {
        const { cpu, work } = ownersOnCores(owners, seed);
        expect(cpu.switchCycles).toBe(cpu.switches * 50_000);
        expect(cpu.cycles).toBe(work + cpu.switchCycles);
        return cpu.switches / cpu.ops;
      };
      const [five, eight, sixteen] = [share(5), share(8), share(16)];
      expect(five, `seed ${seed}`).toBeGreaterThan(0);
      expect(eight, `seed ${seed}`).toBeGreaterThan(five);
      expect(eight, `seed ${seed}`).toBeGreaterThan(0.5);
      expect(sixteen, `seed ${seed}`).toBeGreaterThan(0.8);
    }
  });

  it('costs the owners throughput in proportion to the switch price', () => {
    for (const seed of seeds) {
      const free = ownersOnCores(16, seed, 0).cpu.ops;
      const costly = ownersOnCores(16, seed, 200_000).cpu.ops; // 0.2 ms per switch, ≈ 18% of a burst
      expect(costly, `seed ${seed}`).toBeLessThan(free * 0.9);
    }
  });
});

describe('NicLink', () => {
  it('serializes frames at line rate and adds the link latency', () => {
    const nic = new NicLink({ gbps: 1, latencyMs: 0.05, ring: 2 });
    const a = nic.start(125_000, 0)!; // 1 Mbit at 1 Gbit/s = 1 ms
    const b = nic.start(125_000, 0)!;
    expect(a.doneAt).toBeCloseTo(1.05, 9);
    expect(b.doneAt).toBeCloseTo(2.05, 9);
    expect(nic.start(1, 0)).toBeUndefined();
  });
});

describe('Ram', () => {
  it('hands out memory per owner and refuses what does not fit', () => {
    const ram = new Ram(1024);
    ram.allocate('a', 600);
    ram.allocate('a', 600); // idempotent
    expect(ram.allocatedMiB).toBe(600);
    expect(() => ram.allocate('b', 500)).toThrow(expect.objectContaining({ code: ErrorCode.NO_MEMORY }));
    ram.free('a');
    ram.allocate('b', 1024);
    expect(ram.allocatedMiB).toBe(1024);
  });
});
