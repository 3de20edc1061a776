import type { Clock, Logger, Rng, TimerHandle } from '@vmsim/shared';
import { ErrorCode, encode, toVmsimError } from '@vmsim/shared';
import type { FullMachine } from './hypercalls.ts';

/** A leak touches this much more memory… */
export const LEAK_STEP_MIB = 16;
/** …every this many simulated ms, and never gives it back while it runs. */
export const LEAK_PERIOD_MS = 50;
/** Garbage: a burst of messages every period (simulated ms): 2,000 per simulated second. */
export const GARBAGE_PERIOD_MS = 5;
export const GARBAGE_BURST = 10;

export interface GuestFaultDeps {
  machine: Pick<FullMachine, 'memAlloc' | 'memFree'>;
  clock: Clock;
  logger: Logger;
  rng: Rng;
  /** Publishes raw bytes on a subject of the guest's own. */
  publish(subject: string, data: Uint8Array): void;
  /** The guest's own subjects the hypervisor reads (hypercall, heartbeat, status, vNIC tx). */
  subjects: readonly string[];
  /** The leak ran the guest out of RAM (no host limit OOM-killed it first): the guest panics. */
  panic(reason: string): void;
}

/**
 * Payloads that must be refused: random bytes (not msgpack at all), msgpack cut short, and
 * well-formed msgpack that breaks every schema on the guest's subjects.
 */
export function garbagePayload(rng: Rng, i: number): Uint8Array {
  switch (i % 4) {
    case 0: {
      const b = new Uint8Array(1 + rng.int(200));
      for (let j = 0; j < b.length; j++) b[j] = rng.int(256);
      // 0xc1 is never used in msgpack: whatever follows, this is not a message.
      b[0] = 0xc1;
      return b;
    }
    case 1: {
      const full = encode({ op: 'disk.read', disk: 0, offset: rng.int(1 << 20), length: 4096 });
      return full.subarray(0, 1 + rng.int(full.length - 1));
    }
    case 2:
      return encode({ op: 'cpu', cycles: -1 - rng.int(1000), seq: 'x', phase: 'nope', cid: -1 });
    default:
      return encode([rng.next(), 'garbage', { nested: { deep: [1, 2, 3] } }]);
  }
}

/** The faults a guest acts out over time: a memory leak and a garbage flood. Stop ends them. */
export class GuestFaults {
  private readonly d: GuestFaultDeps;
  private kind: 'leak' | 'garbage' | undefined;
  private timer: TimerHandle | undefined;
  private endTimer: TimerHandle | undefined;
  private generation = 0;
  /** MiB the leak holds. */
  leakedMiB = 0;
  /** Garbage messages published. */
  garbageSent = 0;

  constructor(deps: GuestFaultDeps) {
    this.d = deps;
  }

  get running(): 'leak' | 'garbage' | undefined {
    return this.kind;
  }

  /** Starts `kind` (replacing the one running) for `durationMs` simulated ms, or until stopped. */
  start(kind: 'leak' | 'garbage', durationMs: number | undefined): void {
    this.stop(`replaced by ${kind}`);
    const gen = ++this.generation;
    this.kind = kind;
    this.d.logger.warn({ fault: kind, durationMs }, `fault: ${kind} starts`);
    if (durationMs !== undefined) {
      this.endTimer = this.d.clock.at(this.d.clock.now() + durationMs, () => {
        if (gen === this.generation) this.stop(`its ${durationMs} simulated ms elapsed`);
      });
    }
    if (kind === 'leak') this.leakStep(gen);
    else this.garbageBurst(gen, 0);
  }

  stop(reason: string): void {
    if (!this.kind) return;
    const kind = this.kind;
    this.kind = undefined;
    this.generation++;
    if (this.timer) this.d.clock.cancel(this.timer);
    if (this.endTimer) this.d.clock.cancel(this.endTimer);
    this.timer = this.endTimer = undefined;
    this.d.logger.warn(
      { fault: kind, leakedMiB: this.leakedMiB, garbageSent: this.garbageSent },
      `fault: ${kind} stops: ${reason}`,
    );
    if (kind === 'leak' && this.leakedMiB > 0) {
      const mib = this.leakedMiB;
      this.leakedMiB = 0;
      this.d.machine
        .memFree(mib)
        .catch((e: unknown) => this.d.logger.warn({ err: (e as Error).message }, 'leak: free failed'));
    }
  }

  private leakStep(gen: number): void {
    this.timer = this.d.clock.at(this.d.clock.now() + LEAK_PERIOD_MS, () => {
      if (gen !== this.generation) return;
      this.d.machine.memAlloc(LEAK_STEP_MIB).then(
        () => {
          if (gen !== this.generation) {
            // Stopped while this step was under way: give it back too.
            void this.d.machine.memFree(LEAK_STEP_MIB).catch(() => undefined);
            return;
          }
          this.leakedMiB += LEAK_STEP_MIB;
          this.leakStep(gen);
        },
        (e: unknown) => {
          if (gen !== this.generation) return;
          const ve = toVmsimError(e);
          this.kind = undefined;
          this.generation++;
          if (ve.code === ErrorCode.NO_MEMORY) {
            this.d.panic(`out of memory: a leak took ${this.leakedMiB} MiB (${ve.message})`);
          } else {
            // OOM: the host kills us any moment now.
            this.d.logger.warn(
              { code: ve.code, err: ve.message, leakedMiB: this.leakedMiB },
              'leak: allocation failed',
            );
          }
        },
      );
    });
  }

  private garbageBurst(gen: number, i: number): void {
    const { subjects } = this.d;
    for (let k = 0; k < GARBAGE_BURST; k++, i++) {
      try {
        this.d.publish(subjects[i % subjects.length]!, garbagePayload(this.d.rng, i >> 2));
        this.garbageSent++;
      } catch {
        // The connection is gone: the flood ends with it.
        this.stop('the bus connection is closed');
        return;
      }
    }
    this.timer = this.d.clock.at(this.d.clock.now() + GARBAGE_PERIOD_MS, () => {
      if (gen === this.generation) this.garbageBurst(gen, i);
    });
  }
}
