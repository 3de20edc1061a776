import { describe, expect, it } from 'vitest';
import { VirtualClock } from '@vmsim/shared';
import { HOST_FLOW, HOST_FLOW_WEIGHT, HostWork, OVERHEADS } from './host-os.ts';
import { ResourceScheduler } from './scheduler.ts';

const MHZ = 2800;
const ms = (cycles: number) => cycles / (MHZ * 1000);

/**
 * N guests, each a closed loop of CPU-heavy requests (a burst and an I/O), share 4 cores with
 * the host side's periodic work, in virtual time. Returns the guests' requests per second.
 */
function throughput(type: 'type1' | 'type2', guests: number, seed = 0): number {
  const clock = new VirtualClock();
  const host = new HostWork(OVERHEADS[type]);
  const horizon = 5_000;
  let done = 0;
  const sched: ResourceScheduler<{ cycles: number; guest: boolean }> = new ResourceScheduler({
    name: 'cpu',
    policy: 'fair',
    capacity: 4,
    clock,
    dispatch: (job) => {
      clock.at(clock.now() + ms(job.payload.cycles), () => {
        sched.complete(job.vm);
        if (!job.payload.guest) return;
        if (clock.now() <= horizon) done++;
        host.noteIo();
        if (clock.now() < horizon) request(job.vm);
      });
    },
  });
  const request = (vm: string) => {
    const cycles = host.cpuBurst(1_000_000 + seed);
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
  return done / (horizon / 1000);
}

describe('type 1 and type 2 overheads', () => {
  it('charges more for everything a hosted hypervisor does', () => {
    const [t1, t2] = [OVERHEADS.type1, OVERHEADS.type2];
    for (const k of [
      'exitCycles',
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
      const loss = (n: number) => 1 - throughput('type2', n, seed) / throughput('type1', n, seed);
      expect(loss(4)).toBeGreaterThan(0);
      expect(loss(16)).toBeGreaterThan(loss(4));
      // Per guest, type 1 stays close to what 4 cores allow: 4 / (1 M cycles at 2.8 GHz) = 11,200/s.
      expect(throughput('type1', 16, seed)).toBeGreaterThan(0.95 * 11_200);
    }
  });
});
