import { BusyMeter } from './busy.ts';

export interface CpuConfig {
  sockets: number;
  coresPerSocket: number;
  mhz: number;
}

/** What a core keeps between bursts: whether it runs one, whose it ran last, since when it idles. */
interface Core {
  busy: boolean;
  /** The owner of its last burst: its state (registers, TLB, caches) is what the core holds. */
  lastOwner: string | undefined;
  idleSince: number;
}

/** A burst on its core: `switched` when the core came from another owner's burst. */
export interface CpuSlot {
  core: number;
  serviceMs: number;
  doneAt: number;
  switched: boolean;
}

/**
 * A CPU package: sockets × cores at a clock rate. A core runs one burst at a time, so the
 * package accepts at most `capacity` bursts; the hypervisor's scheduler holds the rest.
 *
 * A burst belongs to an owner (a VM, or the host side). A core remembers whose burst it ran
 * last, and a burst goes to a free core that last ran its owner when there is one (cache and
 * TLB affinity, as real schedulers keep it), else to the core idle longest (whose owner is
 * the least likely to come back soon). A burst on a core that last ran another owner costs
 * `switchCycles` more: the world switch between the two, whose price the caller knows.
 */
export class CpuPackage {
  readonly capacity: number;
  readonly mhz: number;
  private readonly cores: Core[];
  private running = 0;
  readonly meter: BusyMeter;
  ops = 0;
  /** Cycles the cores ran, switches included. */
  cycles = 0;
  /** Bursts that started on a core coming from another owner, and the cycles they added. */
  switches = 0;
  switchCycles = 0;

  constructor(cfg: CpuConfig, now = 0) {
    this.capacity = cfg.sockets * cfg.coresPerSocket;
    this.mhz = cfg.mhz;
    // A core that never ran counts as idle longest: a newcomer takes it before anyone's core.
    this.cores = Array.from({ length: this.capacity }, () => ({
      busy: false,
      lastOwner: undefined,
      idleSince: -Infinity,
    }));
    this.meter = new BusyMeter(this.capacity, now);
  }

  get inFlight(): number {
    return this.running;
  }

  /** Simulated ms a burst of `cycles` takes on one core. */
  serviceMs(cycles: number): number {
    return cycles / (this.mhz * 1000);
  }

  /**
   * Claims a free core for `owner`'s burst; undefined when every core is busy. A core that
   * never ran a burst holds nobody's state, so its first burst is no switch.
   */
  start(cycles: number, now: number, owner = '', switchCycles = 0): CpuSlot | undefined {
    const index = this.pick(owner);
    if (index < 0) return undefined;
    const core = this.cores[index]!;
    const switched = core.lastOwner !== undefined && core.lastOwner !== owner;
    const extra = switched ? switchCycles : 0;
    core.busy = true;
    core.lastOwner = owner;
    this.running++;
    this.ops++;
    this.cycles += cycles + extra;
    if (switched) {
      this.switches++;
      this.switchCycles += extra;
    }
    this.meter.change(now, 1);
    const serviceMs = this.serviceMs(cycles + extra);
    return { core: index, serviceMs, doneAt: now + serviceMs, switched };
  }

  finish(core: number, now: number): void {
    const c = this.cores[core];
    if (!c?.busy) throw new Error(`core ${core} is not busy`);
    c.busy = false;
    c.idleSince = now;
    this.running--;
    this.meter.change(now, -1);
  }

  /** A free core that last ran `owner`, else the free core idle longest; -1 when none is free. */
  private pick(owner: string): number {
    let best = -1;
    for (let i = 0; i < this.cores.length; i++) {
      const c = this.cores[i]!;
      if (c.busy) continue;
      if (c.lastOwner === owner) return i;
      if (best < 0 || c.idleSince < this.cores[best]!.idleSince) best = i;
    }
    return best;
  }
}
