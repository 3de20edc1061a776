import type { Clock, Logger, Rng, StressKind, TimerHandle } from '@vmsim/shared';
import { ErrorCode, MAX_IO_BYTES, MAX_NET_BYTES, toVmsimError } from '@vmsim/shared';
import { MiB, OS_IMAGE_BYTES, OS_IMAGE_OFFSET, scratchArea } from './disk-layout.ts';
import type { FullMachine } from './hypercalls.ts';

/**
 * What the stressors ask for. Each asks for at least the whole capacity of what it
 * stresses, but through a fixed number of loops with one hypercall in flight each: every
 * hypercall is a real bus message on a real machine of a few cores, so the concurrency on
 * the bus is capped even where the simulated demand (a fork bomb's processes) is not.
 */
export const STRESS_COSTS = {
  /**
   * One CPU burst: half a ms of a 2.8 GHz core. A hog never yields, but real schedulers
   * preempt it for a waking vCPU within about a ms (Xen's boost, CFS wake-up preemption);
   * the model's bursts are not preempted, so their length stands for that granularity.
   */
  burstCycles: 1_400_000,
  /** CPU loops per vCPU: a run queue of many threads, so every vCPU always has bursts waiting. */
  cpuLoopsPerVcpu: 8,
  maxCpuLoops: 64,
  /** The memory stressor touches memory in chunks this big, one loop per vCPU. */
  memChunkMiB: 64,
  maxMemLoops: 16,
  /** What one forked process costs (its stack, heap and page tables). */
  forkProcessMiB: 4,
  /** A fork bomb's processes double this often (simulated ms) while memory lasts. */
  forkIntervalMs: 50,
  /** CPU loops standing for the fork bomb's processes: one per process up to this. */
  forkMaxLoops: 128,
  /**
   * Disk operations in flight (a whole SSD queue) and their size range (4 KiB aligned).
   * Unlike the network's, these bytes are real: the stressor moves the disk's modeled
   * bandwidth ÷ time scale through the bus (≈55 MB/s for a SATA SSD at time scale 10).
   */
  diskInFlight: 32,
  diskMinBytes: 128 * 1024,
  diskMaxBytes: Math.min(256 * 1024, MAX_IO_BYTES),
  /** Network transfers in flight, each one super-frame. */
  netInFlight: 32,
  netBytes: MAX_NET_BYTES,
  /** A loop whose hypercall failed waits this long (simulated ms), doubling up to the max. */
  errorBackoffMs: 10,
  maxErrorBackoffMs: 1000,
} as const;

const BLOCK = 4096;

/** The virtual hardware a stressor is sized to. */
export interface StressTarget {
  vcpus: number;
  memoryMiB: number;
  disk: { index: number; sizeBytes: number };
}

export interface StressorDeps {
  machine: FullMachine;
  clock: Clock;
  logger: Logger;
  /** Disk offsets and sizes, read or write. */
  rng: Rng;
  target: StressTarget;
  /** Called once the stressor has stopped (its duration elapsed, or stop()). */
  onStopped?: (reason: string) => void;
}

/** A stressor's figures so far; they stay readable after it stopped. */
export interface StressFigures {
  /** Until it has fully stopped (loops drained, memory given back). */
  running: boolean;
  /** Completed hypercalls of the stress work. */
  ops: number;
  /** Bytes moved: disk reads and writes, network transfers, memory touched. */
  bytes: number;
  /** Hypercalls that failed (other than allocations refused for lack of memory). */
  errors: number;
  /** Allocations the hypervisor refused because the VM's memory was full. */
  refused: number;
  inFlight: number;
  maxInFlight: number;
  /** Memory the stressor holds now, MiB. */
  heldMiB: number;
  /** A fork bomb's simulated processes (its demand; the loops on the bus are capped); kept after it stopped. */
  processes: number;
  /** Simulated ms it has run (until it stopped). */
  elapsedMs: number;
}

interface Sleeper {
  handle: TimerHandle | undefined;
  wake: () => void;
}

function isNoMemory(e: unknown): boolean {
  return toVmsimError(e).code === ErrorCode.NO_MEMORY;
}

/**
 * One of the Isolation Benchmark Suite's stress tests running inside a guest (Matthews et
 * al., 2007): cpu, memory, fork-bomb, disk, net-send, net-recv. Hypercall errors are counted
 * and back the failing loop off; they never escape.
 */
export class Stressor {
  readonly kind: StressKind;
  private readonly d: StressorDeps;
  private readonly startedAt: number;
  private endedAt: number | undefined;
  /** Loops go on while active; done once stopped loops drained and memory went back. */
  private active = true;
  private done = false;
  private readonly loops: Promise<void>[] = [];
  private readonly sleepers = new Set<Sleeper>();
  private durationTimer: TimerHandle | undefined;
  private stopped: Promise<void> | undefined;
  private readonly loggedCodes = new Set<string>();
  private workers = 0;
  /** Memory stressor: loops giving a chunk back now (one at a time, so the VM stays nearly full). */
  private freeing = 0;
  private writeData: Uint8Array | undefined;
  private readonly f = {
    ops: 0,
    bytes: 0,
    errors: 0,
    refused: 0,
    inFlight: 0,
    maxInFlight: 0,
    heldMiB: 0,
    processes: 0,
  };

  private constructor(kind: StressKind, deps: StressorDeps) {
    this.kind = kind;
    this.d = deps;
    this.startedAt = deps.clock.now();
  }

  /** Starts a stressor; with `durationMs` (simulated) it stops itself after that long. */
  static start(kind: StressKind, deps: StressorDeps, durationMs?: number): Stressor {
    const s = new Stressor(kind, deps);
    s.begin(durationMs);
    return s;
  }

  /** Until it has fully stopped: its loops drained and its memory given back. */
  get running(): boolean {
    return !this.done;
  }

  stats(): StressFigures {
    return {
      running: this.running,
      ...this.f,
      elapsedMs: (this.endedAt ?? this.d.clock.now()) - this.startedAt,
    };
  }

  /** Figures for the guest's heartbeat (`stress.` prefix, numbers only). */
  figures(): Record<string, number> {
    const s = this.stats();
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(s)) out[`stress.${k}`] = typeof v === 'boolean' ? Number(v) : v;
    return out;
  }

  /**
   * Stops the loops (each after its current hypercall) and gives back the memory the
   * stressor holds, as a process that exits does. Resolves when that is done.
   */
  stop(reason: string): Promise<void> {
    if (this.stopped) return this.stopped;
    this.active = false;
    this.endedAt = this.d.clock.now();
    if (this.durationTimer) this.d.clock.cancel(this.durationTimer);
    for (const s of [...this.sleepers]) s.wake();
    this.stopped = (async () => {
      await Promise.all(this.loops);
      await this.release();
      this.done = true;
      this.d.logger.info({ kind: this.kind, reason, ...this.stats() }, `stressor ${this.kind} stopped: ${reason}`);
      this.d.onStopped?.(reason);
    })();
    return this.stopped;
  }

  private begin(durationMs: number | undefined): void {
    const { target, clock, logger } = this.d;
    const vcpus = Math.max(1, target.vcpus);
    const c = STRESS_COSTS;
    if (durationMs !== undefined) {
      this.durationTimer = clock.at(this.startedAt + durationMs, () => {
        this.durationTimer = undefined;
        void this.stop(`its duration of ${durationMs} simulated ms elapsed`);
      });
    }
    switch (this.kind) {
      case 'cpu':
        this.repeat(Math.min(c.maxCpuLoops, vcpus * c.cpuLoopsPerVcpu), () => this.burst());
        break;
      case 'memory':
        this.repeat(Math.min(c.maxMemLoops, vcpus), () => this.touchMemory());
        break;
      case 'fork-bomb':
        this.repeat(1, () => this.fork());
        break;
      case 'disk':
        this.repeat(c.diskInFlight, () => this.diskOp());
        break;
      case 'net-send':
        this.repeat(c.netInFlight, () => this.net('send'));
        break;
      case 'net-recv':
        this.repeat(c.netInFlight, () => this.net('recv'));
        break;
    }
    logger.info(
      { kind: this.kind, durationMs, loops: this.loops.length, vcpus, memoryMiB: target.memoryMiB },
      `stressor ${this.kind} started`,
    );
  }

  /** Runs `step` in `n` loops until stopped; a failing step backs its loop off. */
  private repeat(n: number, step: () => Promise<void>): void {
    for (let i = 0; i < n; i++) {
      this.loops.push(
        (async () => {
          let failures = 0;
          while (this.active) {
            try {
              await step();
              failures = 0;
            } catch (e) {
              failures++;
              this.noteError(e);
              const c = STRESS_COSTS;
              await this.sleep(Math.min(c.maxErrorBackoffMs, c.errorBackoffMs * 2 ** (failures - 1)));
            }
          }
        })(),
      );
    }
  }

  private noteError(e: unknown): void {
    this.f.errors++;
    const ve = toVmsimError(e);
    // The first error of each kind is worth a line; the rest are counted.
    if (this.loggedCodes.has(ve.code)) return;
    this.loggedCodes.add(ve.code);
    this.d.logger.warn({ kind: this.kind, code: ve.code, err: ve.message }, `stressor ${this.kind}: hypercall failed`);
  }

  /** One hypercall, counted in flight while it runs. */
  private async call<T>(f: () => Promise<T>): Promise<T> {
    this.f.inFlight++;
    this.f.maxInFlight = Math.max(this.f.maxInFlight, this.f.inFlight);
    try {
      const r = await f();
      this.f.ops++;
      return r;
    } finally {
      this.f.inFlight--;
    }
  }

  /** Waits `ms` simulated ms, or until the stressor stops. */
  private sleep(ms: number): Promise<void> {
    if (!this.active) return Promise.resolve();
    return new Promise((resolve) => {
      let fired = false;
      const s: Sleeper = {
        handle: undefined,
        wake: () => {
          this.sleepers.delete(s);
          if (!fired && s.handle) this.d.clock.cancel(s.handle);
          fired = true;
          resolve();
        },
      };
      this.sleepers.add(s);
      s.handle = this.d.clock.at(this.d.clock.now() + ms, () => {
        fired = true;
        s.wake();
      });
    });
  }

  private burst(): Promise<void> {
    return this.call(() => this.d.machine.cpu(STRESS_COSTS.burstCycles));
  }

  /**
   * Touches one more chunk; when the VM's memory is full (NO_MEMORY) gives one back, so
   * the next round touches fresh pages again: it churns for ever. Only one loop gives back
   * at a time, so the VM stays within a chunk of full. A burst that touches the pages
   * follows every step (a swapped VM pays its major faults in it).
   */
  private async touchMemory(): Promise<void> {
    const chunk = STRESS_COSTS.memChunkMiB;
    try {
      await this.call(() => this.d.machine.memAlloc(chunk));
      this.f.heldMiB += chunk;
      this.f.bytes += chunk * MiB;
    } catch (e) {
      if (!isNoMemory(e)) throw e;
      this.f.refused++;
      if (this.f.heldMiB >= chunk && this.freeing === 0) {
        // Counted off before the call, so a stop meanwhile never gives back the same chunk twice.
        this.f.heldMiB -= chunk;
        this.freeing++;
        try {
          await this.call(() => this.d.machine.memFree(chunk));
        } catch (err) {
          this.f.heldMiB += chunk;
          throw err;
        } finally {
          this.freeing--;
        }
      }
    }
    await this.burst();
  }

  /**
   * The fork bomb's parent: every interval each process forks once (the count doubles);
   * a refused allocation is retried with half as many, down to one, and failing that the
   * bomb tries again next interval. The processes' CPU demand runs in up to forkMaxLoops
   * loops: the bus sees a capped number, the simulated demand keeps growing.
   */
  private async fork(): Promise<void> {
    const c = STRESS_COSTS;
    for (let n = Math.max(1, this.f.processes); n >= 1 && this.active; n = Math.floor(n / 2)) {
      try {
        await this.call(() => this.d.machine.memAlloc(n * c.forkProcessMiB));
      } catch (e) {
        if (!isNoMemory(e)) throw e;
        this.f.refused++;
        continue;
      }
      this.f.processes += n;
      this.f.heldMiB += n * c.forkProcessMiB;
      this.f.bytes += n * c.forkProcessMiB * MiB;
      break;
    }
    const want = Math.min(c.forkMaxLoops, this.f.processes);
    if (this.active && want > this.workers) {
      this.repeat(want - this.workers, () => this.burst());
      this.workers = want;
    }
    await this.sleep(c.forkIntervalMs);
  }

  /** Where the disk stressor works: its scratch area, or (read only) the OS image on a small disk. */
  private diskRegion(): { offset: number; bytes: number; writable: boolean } {
    const scratch = scratchArea(this.d.target.disk.sizeBytes);
    return scratch
      ? { ...scratch, writable: true }
      : { offset: OS_IMAGE_OFFSET, bytes: OS_IMAGE_BYTES, writable: false };
  }

  private async diskOp(): Promise<void> {
    const c = STRESS_COSTS;
    const { rng, machine, target } = this.d;
    const region = this.diskRegion();
    const size = c.diskMinBytes + BLOCK * rng.int((c.diskMaxBytes - c.diskMinBytes) / BLOCK + 1);
    const offset = region.offset + BLOCK * rng.int(Math.floor((region.bytes - size) / BLOCK) + 1);
    if (region.writable && rng.next() < 0.5) {
      this.writeData ??= new Uint8Array(c.diskMaxBytes).fill(0xa5);
      const data = this.writeData.subarray(0, size);
      await this.call(() => machine.write(target.disk.index, offset, data));
    } else {
      await this.call(() => machine.read(target.disk.index, offset, size));
    }
    this.f.bytes += size;
  }

  private async net(dir: 'send' | 'recv'): Promise<void> {
    const bytes = STRESS_COSTS.netBytes;
    await this.call(() => (dir === 'send' ? this.d.machine.netSend(bytes) : this.d.machine.netRecv(bytes)));
    this.f.bytes += bytes;
  }

  /** Gives back what the stressor holds, as an exiting process does. */
  private async release(): Promise<void> {
    const held = this.f.heldMiB;
    if (held <= 0) return;
    try {
      await this.call(() => this.d.machine.memFree(held));
      this.f.heldMiB = 0;
    } catch (e) {
      this.noteError(e);
    }
  }
}
