import type { Clock, TimerHandle } from '@vmsim/shared';
import { TokenBucket } from './token-bucket.ts';

/**
 * Rate limits of one virtual disk (operations and bytes per simulated second), applied before
 * its I/O reaches the physical disks' queues, so they hold whatever disks its chunks are on.
 */
export class RateGate {
  private readonly ops: TokenBucket | undefined;
  private readonly bytes: TokenBucket | undefined;
  private readonly queue: Array<{ bytes: number; run: () => void }> = [];
  private timer: TimerHandle | undefined;
  private readonly clock: Clock;

  constructor(clock: Clock, opsPerS: number | null | undefined, bytesPerS: number | null | undefined) {
    this.clock = clock;
    const now = clock.now();
    // 100 ms of rate as burst, as the device schedulers' buckets.
    this.ops = opsPerS ? new TokenBucket(opsPerS / 1000, Math.max(1, opsPerS / 10), now) : undefined;
    this.bytes = bytesPerS ? new TokenBucket(bytesPerS / 1000, Math.max(1, bytesPerS / 10), now) : undefined;
  }

  admit(bytes: number, run: () => void): void {
    this.queue.push({ bytes, run });
    this.pump();
  }

  stop(): void {
    if (this.timer) this.clock.cancel(this.timer);
    this.timer = undefined;
  }

  private pump(): void {
    const now = this.clock.now();
    while (this.queue.length > 0) {
      const at = Math.max(this.ops?.readyAt(now) ?? now, this.bytes?.readyAt(now) ?? now);
      if (at > now) {
        if (!this.timer) {
          this.timer = this.clock.at(at, () => {
            this.timer = undefined;
            this.pump();
          });
        }
        return;
      }
      const next = this.queue.shift()!;
      this.ops?.take(1, now);
      this.bytes?.take(next.bytes, now);
      next.run();
    }
  }
}
