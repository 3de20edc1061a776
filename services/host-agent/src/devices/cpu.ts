import { BusyMeter } from './busy.ts';

export interface CpuConfig {
  sockets: number;
  coresPerSocket: number;
  mhz: number;
}

/**
 * A CPU package: sockets × cores at a clock rate. A core runs one burst at a time, so the
 * package accepts at most `capacity` bursts; the hypervisor's scheduler holds the rest.
 */
export class CpuPackage {
  readonly capacity: number;
  readonly mhz: number;
  private readonly coreBusy: boolean[];
  private running = 0;
  readonly meter: BusyMeter;
  ops = 0;
  cycles = 0;

  constructor(cfg: CpuConfig, now = 0) {
    this.capacity = cfg.sockets * cfg.coresPerSocket;
    this.mhz = cfg.mhz;
    this.coreBusy = new Array<boolean>(this.capacity).fill(false);
    this.meter = new BusyMeter(this.capacity, now);
  }

  get inFlight(): number {
    return this.running;
  }

  /** Simulated ms a burst of `cycles` takes on one core. */
  serviceMs(cycles: number): number {
    return cycles / (this.mhz * 1000);
  }

  /** Claims a free core; undefined when every core is busy. */
  start(cycles: number, now: number): { core: number; serviceMs: number; doneAt: number } | undefined {
    const core = this.coreBusy.indexOf(false);
    if (core < 0) return undefined;
    this.coreBusy[core] = true;
    this.running++;
    this.ops++;
    this.cycles += cycles;
    this.meter.change(now, 1);
    const serviceMs = this.serviceMs(cycles);
    return { core, serviceMs, doneAt: now + serviceMs };
  }

  finish(core: number, now: number): void {
    if (!this.coreBusy[core]) throw new Error(`core ${core} is not busy`);
    this.coreBusy[core] = false;
    this.running--;
    this.meter.change(now, -1);
  }
}
