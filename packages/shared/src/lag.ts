import { monitorEventLoopDelay, type ELDHistogram } from 'node:perf_hooks';

/**
 * Watches this process's event-loop lag. When lag is a noticeable fraction of the
 * smallest modeled service time, the figures describe the machine, not the model.
 */
export class LagMonitor {
  private readonly histogram: ELDHistogram;
  private readonly resolutionMs: number;
  private maxSeenMs = 0;

  constructor(resolutionMs = 10) {
    this.resolutionMs = resolutionMs;
    this.histogram = monitorEventLoopDelay({ resolution: resolutionMs });
    this.histogram.enable();
  }

  /** p99 and max lag (wall ms) since the previous sample; the timer resolution is subtracted. */
  sample(): { p99Ms: number; maxMs: number } {
    const p99Ms = Math.max(0, this.histogram.percentile(99) / 1e6 - this.resolutionMs);
    const maxMs = Math.max(0, this.histogram.max / 1e6 - this.resolutionMs);
    this.maxSeenMs = Math.max(this.maxSeenMs, maxMs);
    this.histogram.reset();
    return { p99Ms, maxMs };
  }

  /** The worst lag seen since start. */
  get maxMs(): number {
    return this.maxSeenMs;
  }

  stop(): void {
    this.histogram.disable();
  }
}
