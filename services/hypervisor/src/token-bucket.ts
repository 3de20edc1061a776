/**
 * A token bucket in simulated time (as Firecracker's rate limiters): it fills at `ratePerMs`
 * up to `burst`, and work takes tokens when it is dispatched. A bucket may go into debt by
 * one large request, so requests bigger than the burst still pass, then wait it off; work is
 * eligible again once the bucket is no longer in debt.
 */
export class TokenBucket {
  readonly ratePerMs: number;
  readonly burst: number;
  /** The deepest debt the bucket keeps (−Infinity: all of it). */
  readonly floor: number;
  private level: number;
  private at: number;

  constructor(ratePerMs: number, burst: number, now: number, floor = -Infinity) {
    if (!(ratePerMs > 0)) throw new RangeError(`rate must be > 0, got ${ratePerMs}`);
    if (!(burst > 0)) throw new RangeError(`burst must be > 0, got ${burst}`);
    if (!(floor <= 0)) throw new RangeError(`floor must be <= 0, got ${floor}`);
    this.ratePerMs = ratePerMs;
    this.burst = burst;
    this.floor = floor;
    this.level = burst;
    this.at = now;
  }

  private refill(now: number): void {
    if (now > this.at) {
      this.level = Math.min(this.burst, this.level + (now - this.at) * this.ratePerMs);
      this.at = now;
    }
  }

  /** Tokens now (negative while in debt). */
  tokens(now: number): number {
    this.refill(now);
    return this.level;
  }

  ready(now: number): boolean {
    return this.tokens(now) >= 0;
  }

  /** When the bucket is out of debt (now, if it is). */
  readyAt(now: number): number {
    const t = this.tokens(now);
    return t >= 0 ? now : now + -t / this.ratePerMs;
  }

  take(n: number, now: number): void {
    this.refill(now);
    this.level = Math.max(this.floor, this.level - n);
  }
}
