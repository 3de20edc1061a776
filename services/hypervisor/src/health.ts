/**
 * `degraded` detection for faults no watchdog sees (slow hypercalls, a hog, garbage on the
 * bus): a VM's own figures, interval by interval, against its own recent baseline. Pure: fed
 * samples in simulated time, it says when the VM degrades and when it recovers.
 */

/** One interval of a VM's figures. */
export interface HealthSample {
  /** Simulated ms at the end of the interval. */
  t: number;
  /** Simulated ms the interval covered. */
  spanMs: number;
  /** Hypercalls the hypervisor handed to a device in the interval. */
  calls: number;
  /** Simulated ms those hypercalls were held before their device took them (queue wait and injected delay). */
  waitMs: number;
  /** Messages of the VM rejected as malformed or schema-invalid in the interval. */
  rejected: number;
  /** The guest's own event-loop lag (p99, wall ms) from its latest heartbeat; null: none yet. */
  lagMs: number | null;
}

export interface HealthParams {
  /** Healthy samples the baseline keeps. */
  baselineSamples: number;
  /** Healthy samples needed before relative figures are judged. */
  minBaseline: number;
  /** Fewer hypercalls than this in an interval: its mean wait is not judged (too few to say). */
  minCalls: number;
  /** Wait per call is off above waitFactor × the baseline's median + waitFloorMs. */
  waitFactor: number;
  waitFloorMs: number;
  /** Guest lag is off above lagFactor × the baseline's median + lagFloorMs. */
  lagFactor: number;
  lagFloorMs: number;
  /** Rejected messages are off above this rate (per simulated second) and count per interval: a healthy guest sends none. */
  rejectedPerS: number;
  minRejected: number;
  /** Consecutive off intervals before `degraded`, consecutive normal ones before `recovered` (hysteresis). */
  enterAfter: number;
  exitAfter: number;
}

/**
 * The floors keep the ordinary jitter of a lightly loaded VM (a wait per call of tens of
 * microseconds that now and then triples) from counting; the factors make a VM degraded only
 * when it is several times worse than itself a moment ago.
 */
export const DEFAULT_HEALTH_PARAMS: HealthParams = {
  baselineSamples: 40,
  minBaseline: 6,
  minCalls: 5,
  waitFactor: 6,
  waitFloorMs: 1.5,
  lagFactor: 4,
  lagFloorMs: 400,
  rejectedPerS: 20,
  minRejected: 10,
  enterAfter: 2,
  exitAfter: 3,
};

export interface HealthChange {
  health: 'degraded' | 'recovered';
  reason: string;
}

/** The median: one interval hit by a hiccup of the real machine must not raise the baseline. */
function median(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const f = (x: number): string => (x >= 10 ? x.toFixed(0) : x >= 1 ? x.toFixed(1) : x.toFixed(3));

type Figure = 'wait' | 'lag' | 'rejected';

export class HealthDetector {
  private readonly p: HealthParams;
  private waits: number[] = [];
  private lags: number[] = [];
  private offRun = 0;
  /** The figures that were off while degraded: each must be seen normal again to recover. */
  private offFigures = new Set<Figure>();
  private okRun = 0;
  state: 'ok' | 'degraded' = 'ok';
  /** Why it is degraded (the last off figures). */
  reason = '';

  constructor(params: Partial<HealthParams> = {}) {
    this.p = { ...DEFAULT_HEALTH_PARAMS, ...params };
  }

  /** Forgets the baseline (a new guest process: its boot is not its normal). */
  reset(): void {
    this.waits = [];
    this.lags = [];
    this.offRun = 0;
    this.okRun = 0;
    this.offFigures.clear();
    this.state = 'ok';
    this.reason = '';
  }

  /** The figures of `s` that are off, each said with its value and the limit it passed. */
  private judge(s: HealthSample): { off: string[]; offFigures: Figure[]; waitPerCall: number | null } {
    const p = this.p;
    const off: string[] = [];
    const offFigures: Figure[] = [];
    const rate = s.spanMs > 0 ? (s.rejected * 1000) / s.spanMs : 0;
    if (s.rejected >= p.minRejected && rate > p.rejectedPerS) {
      offFigures.push('rejected');
      off.push(`rejected messages ${f(rate)}/s (${s.rejected} in ${f(s.spanMs)} ms; limit ${p.rejectedPerS}/s)`);
    }
    const waitPerCall = s.calls >= p.minCalls ? s.waitMs / s.calls : null;
    if (waitPerCall !== null && this.waits.length >= p.minBaseline) {
      const base = median(this.waits);
      const limit = p.waitFactor * base + p.waitFloorMs;
      if (waitPerCall > limit) {
        offFigures.push('wait');
        off.push(
          `hypercall wait ${f(waitPerCall)} ms per call over ${s.calls} calls (baseline median ${f(base)} ms, limit ${f(limit)} ms)`,
        );
      }
    }
    if (s.lagMs !== null && this.lags.length >= p.minBaseline) {
      const base = median(this.lags);
      const limit = p.lagFactor * base + p.lagFloorMs;
      if (s.lagMs > limit) {
        offFigures.push('lag');
        off.push(`guest event-loop lag ${f(s.lagMs)} ms (baseline median ${f(base)} ms, limit ${f(limit)} ms)`);
      }
    }
    return { off, offFigures, waitPerCall };
  }

  /** One interval's figures; returns the change they cause, if any. */
  observe(s: HealthSample): HealthChange | null {
    const { off, offFigures, waitPerCall } = this.judge(s);
    if (off.length > 0) {
      this.offRun++;
      this.okRun = 0;
      if (this.state === 'ok' && this.offRun >= this.p.enterAfter) {
        this.state = 'degraded';
        this.reason = off.join('; ');
        this.offFigures = new Set(offFigures);
        return { health: 'degraded', reason: `${this.reason} for ${this.offRun} intervals` };
      }
      if (this.state === 'degraded') {
        this.reason = off.join('; ');
        for (const x of offFigures) this.offFigures.add(x);
      }
      return null;
    }
    this.offRun = 0;
    // Only normal intervals teach the baseline, so a long fault never becomes the norm.
    const keep = (xs: number[], x: number): void => {
      xs.push(x);
      if (xs.length > this.p.baselineSamples) xs.shift();
    };
    if (this.state === 'ok') {
      if (waitPerCall !== null) keep(this.waits, waitPerCall);
      if (s.lagMs !== null) keep(this.lags, s.lagMs);
      return null;
    }
    // An interval that cannot judge a figure that was off (too few calls, no heartbeat) says nothing.
    if (
      (this.offFigures.has('wait') && waitPerCall === null) ||
      (this.offFigures.has('lag') && s.lagMs === null) ||
      (this.offFigures.has('wait') && this.waits.length < this.p.minBaseline)
    ) {
      return null;
    }
    this.okRun++;
    if (this.okRun < this.p.exitAfter) return null;
    const was = this.reason;
    this.state = 'ok';
    this.reason = '';
    this.okRun = 0;
    this.offFigures.clear();
    const now = [
      waitPerCall !== null ? `hypercall wait ${f(waitPerCall)} ms per call` : null,
      s.lagMs !== null ? `guest lag ${f(s.lagMs)} ms` : null,
      `${s.rejected} rejected messages`,
    ].filter(Boolean);
    return {
      health: 'recovered',
      reason: `figures normal for ${this.p.exitAfter} intervals (${now.join(', ')}); was: ${was}`,
    };
  }
}
