import { build, type Histogram } from 'hdr-histogram-js';
import {
  createRng,
  ErrorCode,
  toVmsimError,
  VmsimError,
  type Clock,
  type IngressReply,
  type IngressRequest,
  type Rng,
  type TimerHandle,
} from '@vmsim/shared';

/**
 * An open-loop load generator: every target has its own schedule of *intended* send times,
 * drawn up front from its arrival process and never delayed by slow replies. Latency is
 * measured from the intended time, so a stalled server (or a stalled generator) shows up
 * in the figures instead of being hidden (no coordinated omission).
 */

export const Arrival = { POISSON: 'poisson', CONSTANT: 'constant' } as const;
export type Arrival = (typeof Arrival)[keyof typeof Arrival];

/** What a typical small web site gets asked for. */
export const DEFAULT_PATHS: readonly string[] = [
  '/',
  '/index.html',
  '/about.html',
  '/static/app.js',
  '/static/style.css',
  '/img/hero.jpg',
  '/img/logo.png',
  '/api/items',
];
export const POST_PATHS: readonly string[] = ['/api/items', '/upload'];

/** Declared request-line + header bytes: real browsers send a few hundred. */
export const HEADER_BYTES = { min: 300, max: 600 } as const;
/** POST bodies are real bytes so the guest can digest them. */
export const POST_BODY_BYTES = { min: 256, max: 8 * 1024 } as const;

export interface TargetSpec {
  vm: string;
  /** Mean requests per simulated second. */
  ratePerS: number;
  arrival: Arrival;
  /** Relative weights, e.g. {GET: 9, POST: 1}. */
  mix: { GET: number; POST: number };
  paths?: readonly string[] | undefined;
}

export type Send = (vm: string, request: IngressRequest) => Promise<IngressReply>;

export interface OpenLoopOptions {
  clock: Clock;
  rng: Rng;
  targets: readonly TargetSpec[];
  /** Simulated ms during which arrivals are generated. */
  durationMs: number;
  send: Send;
  /** Simulated ms from the intended send time after which a request counts as timed out. */
  timeoutMs?: number;
  /** Per target: requests beyond this many outstanding are dropped, not sent. */
  maxInFlight?: number;
}

export interface StopOptions {
  /** Stop waiting for outstanding requests: they are counted as abandoned. */
  abandonInFlight?: boolean;
}

export interface LatencySummary {
  /** Number of ok replies measured (error replies and timeouts are counted, not timed). */
  count: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export interface TargetSummary {
  vm: string;
  arrival: Arrival;
  ratePerS: number;
  /** Intended arrivals so far: sent + dropped. */
  arrivals: number;
  sent: number;
  ok: number;
  /** Error replies by code. */
  errors: Record<string, number>;
  errorCount: number;
  timeouts: number;
  /** Replies that came after their request had timed out (not counted as ok). */
  late: number;
  dropped: number;
  abandoned: number;
  inFlight: number;
  byOp: { GET: number; POST: number };
  /** Ok replies by HTTP status. */
  status: Record<string, number>;
  bytesSent: number;
  bytesReceived: number;
  /** Arrivals per simulated second over the arrival window. */
  offeredPerS: number;
  /** Ok replies per simulated second over the elapsed time. */
  okPerS: number;
  /** Simulated ms, intended send time → completion, of ok replies. */
  latencyMs: LatencySummary;
  /** How late the generator itself dispatched requests (simulated ms); large means a stalled client. */
  dispatchLagMs: { mean: number; max: number };
}

export interface Summary {
  startedAtMs: number;
  elapsedMs: number;
  durationMs: number;
  timeoutMs: number;
  maxInFlight: number;
  /** True once the run is over (duration passed and nothing outstanding). */
  done: boolean;
  stopped: boolean;
  totals: {
    arrivals: number;
    sent: number;
    ok: number;
    errors: number;
    timeouts: number;
    late: number;
    dropped: number;
    abandoned: number;
    inFlight: number;
  };
  targets: TargetSummary[];
}

export interface ProgressTarget {
  vm: string;
  sent: number;
  ok: number;
  errors: number;
  timeouts: number;
  dropped: number;
  inFlight: number;
  p99Ms: number;
}

export interface Progress {
  elapsedMs: number;
  durationMs: number;
  done: boolean;
  targets: ProgressTarget[];
}

interface TargetState {
  readonly spec: TargetSpec;
  readonly paths: readonly string[];
  /** Separate streams, so request contents never shift the arrival times. */
  readonly arrivalRng: Rng;
  readonly requestRng: Rng;
  readonly hist: Histogram;
  nextTimer: TimerHandle | undefined;
  chainDone: boolean;
  arrivals: number;
  sent: number;
  ok: number;
  errors: Map<string, number>;
  timeouts: number;
  late: number;
  dropped: number;
  abandoned: number;
  inFlight: number;
  byOp: { GET: number; POST: number };
  status: Map<number, number>;
  bytesSent: number;
  bytesReceived: number;
  latSumMs: number;
  latMaxMs: number;
  lagSumMs: number;
  lagMaxMs: number;
}

interface Outstanding {
  readonly target: TargetState;
  readonly intendedMs: number;
  timer: TimerHandle | undefined;
  /** Settled by its reply, its timeout or abandonment; whatever comes later is ignored. */
  settled: boolean;
  timedOut: boolean;
}

const DEFAULT_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_IN_FLIGHT = 10_000;

export class OpenLoop {
  private readonly clock: Clock;
  private readonly send: Send;
  private readonly durationMs: number;
  private readonly timeoutMs: number;
  private readonly maxInFlight: number;
  private readonly targets: TargetState[];
  private readonly outstanding = new Set<Outstanding>();
  private startMs = 0;
  private endMs = 0;
  private finishedAtMs: number | undefined;
  private started = false;
  private stopped = false;
  private runPromise: Promise<Summary> | undefined;
  private resolveRun: ((s: Summary) => void) | undefined;

  constructor(opts: OpenLoopOptions) {
    this.clock = opts.clock;
    this.send = opts.send;
    this.durationMs = opts.durationMs;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxInFlight = opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    if (!(Number.isFinite(this.durationMs) && this.durationMs >= 0))
      throw badConfig(`durationMs must be >= 0, got ${this.durationMs}`);
    if (!(Number.isFinite(this.timeoutMs) && this.timeoutMs > 0))
      throw badConfig(`timeoutMs must be > 0, got ${this.timeoutMs}`);
    if (!(Number.isInteger(this.maxInFlight) && this.maxInFlight >= 1)) {
      throw badConfig(`maxInFlight must be an integer >= 1, got ${this.maxInFlight}`);
    }
    if (opts.targets.length === 0) throw badConfig('no targets');
    this.targets = opts.targets.map((spec, i) => {
      checkTarget(spec, i);
      // Sub-streams seeded from the parent: each target's draws do not depend on the
      // order in which the clock interleaves the targets' events.
      const base = `client-gen/${Math.floor(opts.rng.next() * 2 ** 32)}/${i}/${spec.vm}`;
      return {
        spec,
        paths: spec.paths && spec.paths.length > 0 ? [...spec.paths] : DEFAULT_PATHS,
        arrivalRng: createRng(`${base}/arrivals`),
        requestRng: createRng(`${base}/requests`),
        // Microseconds of simulated time; 64-bit buckets so counts never overflow.
        hist: build({ bitBucketSize: 64, numberOfSignificantValueDigits: 3, autoResize: true, useWebAssembly: false }),
        nextTimer: undefined,
        chainDone: false,
        arrivals: 0,
        sent: 0,
        ok: 0,
        errors: new Map(),
        timeouts: 0,
        late: 0,
        dropped: 0,
        abandoned: 0,
        inFlight: 0,
        byOp: { GET: 0, POST: 0 },
        status: new Map(),
        bytesSent: 0,
        bytesReceived: 0,
        latSumMs: 0,
        latMaxMs: 0,
        lagSumMs: 0,
        lagMaxMs: 0,
      };
    });
  }

  /** Starts the arrivals; resolves once the duration has passed and nothing is outstanding. */
  run(): Promise<Summary> {
    if (this.runPromise) return this.runPromise;
    this.runPromise = new Promise<Summary>((resolve) => (this.resolveRun = resolve));
    this.started = true;
    this.startMs = this.clock.now();
    this.endMs = this.startMs + this.durationMs;
    if (this.stopped) {
      for (const t of this.targets) t.chainDone = true;
    } else {
      for (const t of this.targets) this.scheduleArrival(t, this.firstArrival(t));
    }
    this.maybeFinish();
    return this.runPromise;
  }

  /**
   * Stops generating arrivals; outstanding requests still complete or time out unless
   * abandonInFlight is set. Safe to call more than once.
   */
  stop(opts: StopOptions = {}): void {
    if (!this.stopped) {
      this.stopped = true;
      for (const t of this.targets) {
        if (t.nextTimer) this.clock.cancel(t.nextTimer);
        t.nextTimer = undefined;
        t.chainDone = true;
      }
    }
    if (opts.abandonInFlight) {
      for (const o of [...this.outstanding]) {
        this.settle(o);
        o.target.abandoned++;
      }
    }
    this.maybeFinish();
  }

  get done(): boolean {
    return this.finishedAtMs !== undefined;
  }

  summary(): Summary {
    const elapsedMs = this.elapsedMs();
    const arrivalWindowS = Math.min(elapsedMs, this.durationMs) / 1000;
    const targets = this.targets.map((t) => targetSummary(t, arrivalWindowS, elapsedMs / 1000));
    const sum = (f: (t: TargetSummary) => number): number => targets.reduce((a, t) => a + f(t), 0);
    return {
      startedAtMs: round3(this.startMs),
      elapsedMs: round3(elapsedMs),
      durationMs: this.durationMs,
      timeoutMs: this.timeoutMs,
      maxInFlight: this.maxInFlight,
      done: this.done,
      stopped: this.stopped,
      totals: {
        arrivals: sum((t) => t.arrivals),
        sent: sum((t) => t.sent),
        ok: sum((t) => t.ok),
        errors: sum((t) => t.errorCount),
        timeouts: sum((t) => t.timeouts),
        late: sum((t) => t.late),
        dropped: sum((t) => t.dropped),
        abandoned: sum((t) => t.abandoned),
        inFlight: sum((t) => t.inFlight),
      },
      targets,
    };
  }

  /** A cheap view for progress logs. */
  snapshot(): Progress {
    return {
      elapsedMs: round3(this.elapsedMs()),
      durationMs: this.durationMs,
      done: this.done,
      targets: this.targets.map((t) => ({
        vm: t.spec.vm,
        sent: t.sent,
        ok: t.ok,
        errors: sumValues(t.errors),
        timeouts: t.timeouts,
        dropped: t.dropped,
        inFlight: t.inFlight,
        p99Ms: t.hist.totalCount > 0 ? round3(Math.min(t.hist.getValueAtPercentile(99) / 1000, t.latMaxMs)) : 0,
      })),
    };
  }

  private elapsedMs(): number {
    if (!this.started) return 0;
    return (this.finishedAtMs ?? this.clock.now()) - this.startMs;
  }

  private firstArrival(t: TargetState): number {
    // A Poisson process is memoryless, so its first arrival is one gap after the start.
    return t.spec.arrival === Arrival.POISSON ? this.startMs + t.arrivalRng.exp(1000 / t.spec.ratePerS) : this.startMs;
  }

  private nextArrival(t: TargetState, prevMs: number): number {
    if (t.spec.arrival === Arrival.POISSON) return prevMs + t.arrivalRng.exp(1000 / t.spec.ratePerS);
    // From the index rather than by adding gaps, so float error never adds up: exactly
    // rate × duration arrivals when that is a whole number.
    return this.startMs + (t.arrivals * 1000) / t.spec.ratePerS;
  }

  /** One timer per target at a time; each arrival schedules the next from its *intended* time. */
  private scheduleArrival(t: TargetState, atMs: number): void {
    if (atMs < this.endMs) {
      t.nextTimer = this.clock.at(atMs, () => this.onArrival(t, atMs));
    } else {
      // The chain ends at the end of the window, so run() never resolves early.
      t.nextTimer = this.clock.at(this.endMs, () => {
        t.nextTimer = undefined;
        t.chainDone = true;
        this.maybeFinish();
      });
    }
  }

  private onArrival(t: TargetState, intendedMs: number): void {
    t.nextTimer = undefined;
    if (this.stopped) return;
    t.arrivals++;
    this.dispatch(t, intendedMs);
    this.scheduleArrival(t, this.nextArrival(t, intendedMs));
  }

  private dispatch(t: TargetState, intendedMs: number): void {
    if (t.inFlight >= this.maxInFlight) {
      t.dropped++;
      return;
    }
    const request = makeRequest(t.requestRng, t.spec.mix, t.paths);
    const lag = Math.max(0, this.clock.now() - intendedMs);
    t.lagSumMs += lag;
    t.lagMaxMs = Math.max(t.lagMaxMs, lag);
    t.sent++;
    t.inFlight++;
    t.byOp[request.op]++;
    t.bytesSent += request.bytes;
    const o: Outstanding = { target: t, intendedMs, timer: undefined, settled: false, timedOut: false };
    this.outstanding.add(o);
    o.timer = this.clock.at(intendedMs + this.timeoutMs, () => {
      o.timer = undefined;
      if (o.settled) return;
      this.settle(o);
      o.timedOut = true;
      t.timeouts++;
      this.maybeFinish();
    });
    let reply: Promise<IngressReply>;
    try {
      reply = this.send(t.spec.vm, request);
    } catch (e) {
      reply = Promise.reject(e);
    }
    reply.then(
      (r) => this.onReply(o, r),
      (e: unknown) => {
        // send should never throw; if it does, the request still ends as an error.
        const ve = toVmsimError(e);
        this.onReply(o, { ok: false, code: ve.code, message: ve.message });
      },
    );
  }

  private onReply(o: Outstanding, reply: IngressReply): void {
    const t = o.target;
    if (o.settled) {
      if (o.timedOut) t.late++;
      return;
    }
    this.settle(o);
    if (reply.ok) {
      const latencyMs = Math.max(0, this.clock.now() - o.intendedMs);
      t.ok++;
      t.status.set(reply.status, (t.status.get(reply.status) ?? 0) + 1);
      t.bytesReceived += reply.bytes;
      t.hist.recordValue(Math.round(latencyMs * 1000));
      t.latSumMs += latencyMs;
      t.latMaxMs = Math.max(t.latMaxMs, latencyMs);
    } else {
      t.errors.set(reply.code, (t.errors.get(reply.code) ?? 0) + 1);
    }
    this.maybeFinish();
  }

  private settle(o: Outstanding): void {
    o.settled = true;
    if (o.timer) this.clock.cancel(o.timer);
    o.timer = undefined;
    this.outstanding.delete(o);
    o.target.inFlight--;
  }

  private maybeFinish(): void {
    if (!this.started || this.finishedAtMs !== undefined) return;
    if (this.outstanding.size > 0 || !this.targets.every((t) => t.chainDone)) return;
    this.finishedAtMs = this.clock.now();
    this.resolveRun?.(this.summary());
  }
}

/** One request as a browser-ish client would send it. */
export function makeRequest(
  rng: Rng,
  mix: { GET: number; POST: number },
  paths: readonly string[] = DEFAULT_PATHS,
): IngressRequest {
  // GET when the draw lands in the GET share; a zero weight can never be drawn.
  const isPost = rng.next() * (mix.GET + mix.POST) >= mix.GET;
  const headers = uniformInt(rng, HEADER_BYTES.min, HEADER_BYTES.max);
  if (!isPost) return { app: 'web', op: 'GET', path: rng.pick(paths), bytes: headers };
  const body = randomBytes(rng, uniformInt(rng, POST_BODY_BYTES.min, POST_BODY_BYTES.max));
  return { app: 'web', op: 'POST', path: rng.pick(POST_PATHS), bytes: body.length + headers, body };
}

/** Integer uniform in [min, max]. */
function uniformInt(rng: Rng, min: number, max: number): number {
  return min + rng.int(max - min + 1);
}

function randomBytes(rng: Rng, n: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  // Four bytes per draw: bodies are up to 8 KiB and drawn at every POST.
  for (let i = 0; i < n; i += 4) {
    let w = Math.floor(rng.next() * 4294967296);
    for (let k = 0; k < 4 && i + k < n; k++) {
      out[i + k] = w & 0xff;
      w >>>= 8;
    }
  }
  return out;
}

function targetSummary(t: TargetState, arrivalWindowS: number, elapsedS: number): TargetSummary {
  const h = t.hist;
  // HDR answers with the top of a value's bucket (3 significant digits); no percentile
  // can be above the exact max.
  const pct = (p: number): number =>
    h.totalCount > 0 ? round3(Math.min(h.getValueAtPercentile(p) / 1000, t.latMaxMs)) : 0;
  const errorCount = sumValues(t.errors);
  return {
    vm: t.spec.vm,
    arrival: t.spec.arrival,
    ratePerS: t.spec.ratePerS,
    arrivals: t.arrivals,
    sent: t.sent,
    ok: t.ok,
    errors: Object.fromEntries([...t.errors.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
    errorCount,
    timeouts: t.timeouts,
    late: t.late,
    dropped: t.dropped,
    abandoned: t.abandoned,
    inFlight: t.inFlight,
    byOp: { ...t.byOp },
    status: Object.fromEntries([...t.status.entries()].sort(([a], [b]) => a - b).map(([k, v]) => [String(k), v])),
    bytesSent: t.bytesSent,
    bytesReceived: t.bytesReceived,
    offeredPerS: arrivalWindowS > 0 ? round3(t.arrivals / arrivalWindowS) : 0,
    okPerS: elapsedS > 0 ? round3(t.ok / elapsedS) : 0,
    latencyMs: {
      count: h.totalCount,
      p50: pct(50),
      p90: pct(90),
      p99: pct(99),
      p999: pct(99.9),
      // Exact figures kept beside the histogram, which only has 3 significant digits.
      max: round3(t.latMaxMs),
      mean: t.ok > 0 ? round3(t.latSumMs / t.ok) : 0,
    },
    dispatchLagMs: { mean: t.sent > 0 ? round3(t.lagSumMs / t.sent) : 0, max: round3(t.lagMaxMs) },
  };
}

function sumValues(m: Map<unknown, number>): number {
  let s = 0;
  for (const v of m.values()) s += v;
  return s;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}

function badConfig(message: string): VmsimError {
  return new VmsimError(ErrorCode.CONFIG, message);
}

function checkTarget(spec: TargetSpec, i: number): void {
  const where = `target ${i} (${spec.vm})`;
  if (!spec.vm) throw badConfig(`target ${i}: vm is empty`);
  if (!(Number.isFinite(spec.ratePerS) && spec.ratePerS > 0))
    throw badConfig(`${where}: ratePerS must be > 0, got ${spec.ratePerS}`);
  if (spec.arrival !== Arrival.POISSON && spec.arrival !== Arrival.CONSTANT) {
    throw badConfig(`${where}: arrival must be 'poisson' or 'constant', got ${String(spec.arrival)}`);
  }
  const { GET, POST } = spec.mix;
  if (!(Number.isFinite(GET) && GET >= 0 && Number.isFinite(POST) && POST >= 0 && GET + POST > 0)) {
    throw badConfig(`${where}: mix weights must be >= 0 and not both 0, got GET=${GET} POST=${POST}`);
  }
  for (const p of spec.paths ?? []) {
    if (!p.startsWith('/')) throw badConfig(`${where}: path "${p}" must start with '/'`);
  }
}
