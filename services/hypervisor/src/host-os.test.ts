import { describe, expect, it } from 'vitest';
import { VirtualClock, createRng } from '@vmsim/shared';
import { HOST_FLOW, HOST_FLOW_WEIGHT, HostWork, OVERHEADS } from './host-os.ts';
import { ResourceScheduler } from './scheduler.ts';

const MHZ = 2800;
const ms = (cycles: number) => cycles / (MHZ * 1000);

interface Run {
  /** The guests' requests per second. */
  perS: number;
  /** Share of bursts that started on a core coming from another owner. */
  switchShare: number;
}

/**
 * N guests, each a closed loop of CPU-heavy requests (a burst of 0.6-1.4 M cycles and an
 * I/O), share 4 cores with the host side's periodic work, in virtual time. The cores keep
 * affinity and charge switches as the host-agent's CpuPackage does: a burst goes to a free
 * core that last ran its owner, else to the core idle longest, and pays `switchCycles` on a
 * core that last ran someone else.
 */
function throughput(
  type: 'type1' | 'type2',
  guests: number,
  seed = 0,
  switchCycles = OVERHEADS[type].switchCycles,
): Run {
  const clock = new VirtualClock();
  const rng = createRng(`host-os:${type}:${guests}:${seed}`);
  const host = new HostWork(OVERHEADS[type]);
  const horizon = 5_000;
  const cores = Array.from({ length: 4 }, () => ({ busy: false, owner: '', idleSince: -Infinity }));
  let [done, bursts, switches] = [0, 0, 0];
  const sched: ResourceScheduler<{ cycles: number; guest: boolean }> = new ResourceScheduler({
    name: 'cpu',
    policy: 'fair',
    capacity: 4,
    clock,
    dispatch: (job) => {
      const free = cores.filter((c) => !c.busy);
      const core = free.find((c) => c.owner === job.vm) ?? free.reduce((a, b) => (b.idleSince < a.idleSince ? b : a));
      const switched = core.owner !== '' && core.owner !== job.vm;
      [core.busy, core.owner] = [true, job.vm];
      bursts++;
      if (switched) switches++;
      clock.at(clock.now() + ms(job.payload.cycles + (switched ? switchCycles : 0)), () => {
        [core.busy, core.idleSince] = [false, clock.now()];
        sched.complete(job.vm);
        if (!job.payload.guest) return;
        if (clock.now() <= horizon) done++;
        host.noteIo();
        if (clock.now() < horizon) request(job.vm);
      });
    },
  });
  const request = (vm: string) => {
    const cycles = host.cpuBurst(Math.round(600_000 + rng.next() * 800_000));
    sched.submit(vm, ms(cycles), { cycles, guest: true });
  };
  for (let g = 0; g < guests; g++) {
    sched.configureVm(`g${g}`, { limit: 1 });
    for (let u = 0; u < 2; u++) request(`g${g}`);
  }
  sched.configureVm(HOST_FLOW, { weight: HOST_FLOW_WEIGHT });
  const tick = () => {
    const cycles = host.takeBurst(guests);
    sched.submit(HOST_FLOW, ms(cycles), { cycles, guest: false });
    if (clock.now() < horizon) clock.at(clock.now() + OVERHEADS[type].hostTaskPeriodMs, tick);
  };
  clock.at(0, tick);
  clock.runAll();
  return { perS: done / (horizon / 1000), switchShare: switches / bursts };
}

describe('type 1 and type 2 overheads', () => {
  it('charges more for everything a hosted hypervisor does', () => {
    const [t1, t2] = [OVERHEADS.type1, OVERHEADS.type2];
    for (const k of [
      'exitCycles',
      'switchCycles',
      'ioCycles',
      'hostTaskBaseCycles',
      'hostTaskPerGuestCycles',
      'reservedMiB',
    ] as const) {
      expect(t2[k], k).toBeGreaterThan(t1[k]);
    }
  });

  it('adds the exit to a guest burst and gathers the I/O work into the next host burst', () => {
    const w = new HostWork(OVERHEADS.type2);
    expect(w.cpuBurst(1000)).toBe(1000 + OVERHEADS.type2.exitCycles);
    w.noteIo(3);
    const p = OVERHEADS.type2;
    expect(w.takeBurst(2)).toBe(p.hostTaskBaseCycles + 2 * p.hostTaskPerGuestCycles + 3 * (p.ioCycles + p.exitCycles));
    expect(w.takeBurst(2)).toBe(p.hostTaskBaseCycles + 2 * p.hostTaskPerGuestCycles);
  });

  it('on a saturated host, type 1 serves more than type 2, and type 2 loses more as guests multiply', () => {
    for (const seed of [0, 1, 2]) {
      const loss = (n: number, t2 = throughput('type2', n, seed)) => 1 - t2.perS / throughput('type1', n, seed).perS;
      const [l4, l8, l16] = [loss(4), loss(8), loss(16)];
      expect(l4, `seed ${seed}`).toBeGreaterThan(0);
      expect(l8, `seed ${seed}`).toBeGreaterThan(l4);
      expect(l16, `seed ${seed}`).toBeGreaterThan(l8);
      // Per guest, type 1 stays close to what 4 cores allow: 4 / (1 M cycles at 2.8 GHz) = 11,200/s.
      expect(throughput('type1', 16, seed).perS).toBeGreaterThan(0.95 * 11_200);
    }
  });

  it('switches cores between guests rarely up to one guest per core, on most bursts beyond', () => {
    for (const seed of [0, 1, 2]) {
      const share = (n: number) => throughput('type2', n, seed).switchShare;
      // With cores to spare, the host side's bursts take a free core and nobody moves.
      expect(share(2), `seed ${seed}`).toBe(0);
      // At one guest per core, only a host burst displaces a guest (and that one the next).
      expect(share(4), `seed ${seed}`).toBeLessThan(0.25);
      expect(share(8), `seed ${seed}`).toBeGreaterThan(0.5);
      expect(share(16), `seed ${seed}`).toBeGreaterThanOrEqual(share(8));
    }
  });

  it("owes part of type 2's growing loss to the world switches", () => {
    for (const seed of [0, 1, 2]) {
      const growth = (switchCycles?: number) => {
        const loss = (n: number) =>
          1 - throughput('type2', n, seed, switchCycles).perS / throughput('type1', n, seed).perS;
        return loss(16) - loss(4);
      };
      // Without its switch price, type 2's loss grows by the host tasks per guest alone.
      expect(growth(), `seed ${seed}`).toBeGreaterThan(growth(OVERHEADS.type1.switchCycles) + 0.02);
    }
  });
});
