/** Accumulates busy time of a device with several servers, for utilization figures. */
export class BusyMeter {
  private busyIntegral = 0;
  private lastChange = 0;
  private busy = 0;
  private windowStart = 0;
  private readonly servers: number;

  constructor(servers: number, now = 0) {
    this.servers = servers;
    this.lastChange = now;
    this.windowStart = now;
  }

  /** Records that `delta` servers became busy (+) or free (-) at `now`. */
  change(now: number, delta: number): void {
    this.busyIntegral += this.busy * (now - this.lastChange);
    this.lastChange = now;
    this.busy += delta;
  }

  /** Busy fraction since the last call (0..1), and starts a new window. */
  takeUtilization(now: number): number {
    this.change(now, 0);
    const span = now - this.windowStart;
    const u = span > 0 ? this.busyIntegral / (span * this.servers) : 0;
    this.busyIntegral = 0;
    this.windowStart = now;
    return u;
  }
}

/**
 * Busy time of a single serial server whose busy intervals are known when work is
 * admitted (they may end in the future). Work queued behind the server starts exactly
 * when the previous work ends, so the future part is one stretch up to `lastEnd`.
 */
export class SerialBusyMeter {
  private scheduled = 0;
  private lastEnd = 0;
  private windowStart: number;

  constructor(now = 0) {
    this.windowStart = now;
  }

  addInterval(begin: number, end: number): void {
    this.scheduled += end - begin;
    this.lastEnd = Math.max(this.lastEnd, end);
  }

  takeUtilization(now: number): number {
    const future = Math.max(0, this.lastEnd - now);
    const inWindow = Math.max(0, this.scheduled - future);
    this.scheduled = this.scheduled - inWindow;
    const span = now - this.windowStart;
    this.windowStart = now;
    return span > 0 ? Math.min(1, inWindow / span) : 0;
  }
}
