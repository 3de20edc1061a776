import { build, type Histogram } from 'hdr-histogram-js';
import {
  createRng,
  ErrorCode,
  toVmsimError,
  VmsimError,
  type AppKind,
  type Clock,
  type IngressReply,
  type IngressRequest,
  type Logger,
  type RandomStreams,
  type Rng,
  type TimerHandle,
} from '@vmsim/shared';
import {
  APP_OPS,
  appProblems,
  createSource,
  resolveMix,
  World,
  type AppOptions,
  type Pending,
  type RequestSource,
} from './apps.ts';

/**
 * Load at VMs from two kinds of clients, run together on one clock:
 *
 * - open targets: a schedule of *intended* send times drawn from an arrival process and
 *   never delayed by slow replies. Latency runs from the intended time, so a stalled
 *   server (or a stalled generator) shows in the figures (no coordinated omission).
 * - closed targets: N users, each sending a request, waiting for its reply (or timeout),
 *   thinking an exponential time, and again. A user never means to send before its reply,
 *   so latency runs from the actual send; throughput follows N / (R + Z).
 */

export const Arrival = { POISSON: 'poisson', CONSTANT: 'constant' } as const;
export type Arrival = (typeof Arrival)[keyof typeof Arrival];

export const LoadModel = { OPEN: 'open', CLOSED: 'closed' } as const;
export type LoadModel = (typeof LoadModel)[keyof typeof LoadModel];

export interface TargetCommon extends AppOptions {
  vm: string;
  /** The server kind at the VM; 'web' when left out. */
  app?: AppKind | undefined;
  /** Relative op weights for the app, e.g. {GET: 9, POST: 1}; the app's defaults when left out. */
  mix?: Readonly<Record<string, number>> | undefined;
}

export interface OpenTargetSpec extends TargetCommon {
  /** Open when left out. */
  model?: 'open' | undefined;
  /** Mean requests per simulated second. */
  ratePerS: number;
  /** Poisson when left out. */
  arrival?: Arrival | undefined;
}

export interface ClosedTargetSpec extends TargetCommon {
  model: 'closed';
  users: number;
  /** Mean think time between a reply and the user's next request, simulated ms (exponential). */
  thinkMs: number;
}

export type TargetSpec = OpenTargetSpec | ClosedTargetSpec;
/** Another name of TargetSpec, as scenario files call it. */
export type LoadTarget = TargetSpec;

export type Send = (vm: string, request: IngressRequest) => Promise<IngressReply>;

export interface LoadRunnerOptions {
  clock: Clock;
  /**
   * Where each target's random streams come from (one per target and purpose); give one.
   * With `streams` a target's draws depend only on the seed, its index and its VM.
   */
  streams?: RandomStreams | undefined;
  /** A parent stream the targets' streams are seeded from. */
  rng?: Rng | undefined;
  targets: readonly TargetSpec[];
  /** Simulated ms during which requests are started. */
  durationMs: number;
  send: Send;
  /** Simulated ms from the intended send time after which a request counts as timed out. */
  timeoutMs?: number;
  /** Per open target: requests beyond this many outstanding are dropped, not sent. */
  maxInFlight?: number;
  /** Told about integrity failures (a read that returned what was never written). */
  logger?: Logger;
  /**
   * Simulated ms per window of the latency time series each target keeps (by completion
   * time); absent: no series.
   */
  seriesWindowMs?: number;
}
export type OpenLoopOptions = LoadRunnerOptions;

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
  model: LoadModel;
  app: AppKind;
  /** Open targets only. */
  arrival?: Arrival;
  ratePerS?: number;
  /** Closed targets only. */
  users?: number;
  thinkMs?: number;
  /** Requests meant to be sent so far: sent + dropped. */
  arrivals: number;
  sent: number;
  ok: number;
  /** Error replies by code; integrity failures count as VMSIM_ERR_IO. */
  errors: Record<string, number>;
  errorCount: number;
  timeouts: number;
  /** Replies that came after their request had timed out (not counted as ok). */
  late: number;
  dropped: number;
  abandoned: number;
  inFlight: number;
  /** Requests sent, by op. */
  byOp: Record<string, number>;
  /** Ok replies by HTTP status. */
  status: Record<string, number>;
  bytesSent: number;
  bytesReceived: number;
  /** Replies whose content was checked against what was written, and how many were wrong. */
  integrity: { checked: number; failed: number };
  /** Requests meant per simulated second over the run window. */
  offeredPerS: number;
  /** Ok replies per simulated second of the load window (replies finishing just after it included). */
  okPerS: number;
  /** Simulated ms of ok replies: from the intended send time (open) or the send (closed). */
  latencyMs: LatencySummary;
  /** The run window by window, when `seriesWindowMs` was given. */
  series?: SeriesPoint[];
  /** How late the generator itself sent requests (simulated ms); large means a stalled client. */
  dispatchLagMs: { mean: number; max: number };
}

/** One window of a target's time series; latencies in simulated ms of the ok replies in it. */
export interface SeriesPoint {
  /** Window start, simulated ms since the load started. */
  tMs: number;
  ok: number;
  /** Error replies and timeouts that ended in this window. */
  errors: number;
  okPerS: number;
  p50: number;
  p99: number;
  max: number;
}

interface SeriesWindow {
  ok: number;
  errors: number;
  latencies: number[];
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
  model: LoadModel;
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

interface OpenState {
  readonly ratePerS: number;
  readonly arrival: Arrival;
  readonly rng: Rng;
  nextTimer: TimerHandle | undefined;
  chainDone: boolean;
}

interface User {
  readonly index: number;
  timer: TimerHandle | undefined;
  /** Waiting for its reply. */
  busy: boolean;
  done: boolean;
}

interface ClosedState {
  readonly thinkMs: number;
  readonly rng: Rng;
  readonly users: User[];
  live: number;
}

interface TargetState {
  readonly vm: string;
  readonly app: AppKind;
  readonly source: RequestSource;
  /** Exactly one of open and closed is set. */
  readonly open: OpenState | undefined;
  readonly closed: ClosedState | undefined;
  readonly hist: Histogram;
  arrivals: number;
  sent: number;
  ok: number;
  errors: Map<string, number>;
  timeouts: number;
  late: number;
  dropped: number;
  abandoned: number;
  inFlight: number;
  byOp: Record<string, number>;
  status: Map<number, number>;
  bytesSent: number;
  bytesReceived: number;
  checked: number;
  failed: number;
  latSumMs: number;
  latMaxMs: number;
  lagSumMs: number;
  lagMaxMs: number;
  readonly series: Map<number, SeriesWindow> | undefined;
}

interface Outstanding {
  readonly target: TargetState;
  readonly pending: Pending;
  /** Where latency and the timeout run from. */
  readonly fromMs: number;
  readonly user: User | undefined;
  timer: TimerHandle | undefined;
  /** Settled by its reply, its timeout or abandonment; whatever comes later is ignored. */
  settled: boolean;
  timedOut: boolean;
}

const DEFAULT_TIMEOUT_MS = 5_000;
const DEFAULT_MAX_IN_FLIGHT = 10_000;
const MAX_USERS = 100_000;
/** Integrity failures logged per target; the rest are only counted. */
const LOGGED_FAILURES = 5;

export class LoadRunner {
  private readonly clock: Clock;
  private readonly send: Send;
  private readonly logger: Logger | undefined;
  private readonly durationMs: number;
  private readonly timeoutMs: number;
  private readonly maxInFlight: number;
  private readonly seriesWindowMs: number | undefined;
  private readonly targets: TargetState[];
  private readonly outstanding = new Set<Outstanding>();
  private startMs = 0;
  private endMs = 0;
  /** Closed users stop at the end of the window; this marks it. */
  private windowTimer: TimerHandle | undefined;
  private windowOver = false;
  private finishedAtMs: number | undefined;
  private started = false;
  private stopped = false;
  private runPromise: Promise<Summary> | undefined;
  private resolveRun: ((s: Summary) => void) | undefined;

  constructor(opts: LoadRunnerOptions) {
    this.clock = opts.clock;
    this.send = opts.send;
    this.logger = opts.logger;
    this.durationMs = opts.durationMs;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.maxInFlight = opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    this.seriesWindowMs = opts.seriesWindowMs;
    if (this.seriesWindowMs !== undefined && !(this.seriesWindowMs > 0))
      throw badConfig(`seriesWindowMs must be > 0, got ${this.seriesWindowMs}`);
    if (!(Number.isFinite(this.durationMs) && this.durationMs >= 0))
      throw badConfig(`durationMs must be >= 0, got ${this.durationMs}`);
    if (!(Number.isFinite(this.timeoutMs) && this.timeoutMs > 0))
      throw badConfig(`timeoutMs must be > 0, got ${this.timeoutMs}`);
    if (!(Number.isInteger(this.maxInFlight) && this.maxInFlight >= 1)) {
      throw badConfig(`maxInFlight must be an integer >= 1, got ${this.maxInFlight}`);
    }
    if (opts.targets.length === 0) throw badConfig('no targets');
    const { rng: parent, streams } = opts;
    if (!streams && !parent) throw badConfig('give streams or rng');
    const world = new World();
    this.targets = opts.targets.map((spec, i) => {
      checkTarget(spec, i);
      // Streams per target and purpose: a target's draws do not depend on how the clock
      // interleaves targets, and request contents never shift send times.
      const base = streams
        ? `client-gen/${i}/${spec.vm}`
        : `client-gen/${Math.floor(parent!.next() * 2 ** 32)}/${i}/${spec.vm}`;
      const stream = (purpose: string): Rng =>
        streams ? streams.stream(`${base}/${purpose}`) : createRng(`${base}/${purpose}`);
      const app = spec.app ?? 'web';
      const closed = spec.model === LoadModel.CLOSED;
      const source = createSource({
        app,
        vm: spec.vm,
        mix: resolveMix(app, spec.mix),
        options: spec,
        opRng: stream('ops'),
        contentRng: stream('requests'),
        world,
        targetIndex: i,
        users: closed ? spec.users : undefined,
      });
      return {
        vm: spec.vm,
        app,
        source,
        open: closed
          ? undefined
          : {
              ratePerS: spec.ratePerS,
              arrival: spec.arrival ?? Arrival.POISSON,
              rng: stream('arrivals'),
              nextTimer: undefined,
              chainDone: false,
            },
        closed: closed
          ? {
              thinkMs: spec.thinkMs,
              rng: stream('think'),
              users: Array.from({ length: spec.users }, (_, index) => ({
                index,
                timer: undefined,
                busy: false,
                done: false,
              })),
              live: spec.users,
            }
          : undefined,
        // Microseconds of simulated time; 64-bit buckets so counts never overflow.
        hist: build({ bitBucketSize: 64, numberOfSignificantValueDigits: 3, autoResize: true, useWebAssembly: false }),
        arrivals: 0,
        sent: 0,
        ok: 0,
        errors: new Map(),
        timeouts: 0,
        late: 0,
        dropped: 0,
        abandoned: 0,
        inFlight: 0,
        byOp: Object.fromEntries(APP_OPS[app].map((op) => [op, 0])),
        status: new Map(),
        bytesSent: 0,
        bytesReceived: 0,
        checked: 0,
        failed: 0,
        latSumMs: 0,
        latMaxMs: 0,
        lagSumMs: 0,
        lagMaxMs: 0,
        series: this.seriesWindowMs === undefined ? undefined : new Map(),
      };
    });
  }

  /** The time-series window a reply ending now falls in (created on first use). */
  private windowNow(t: TargetState): SeriesWindow | undefined {
    if (!t.series || this.seriesWindowMs === undefined) return undefined;
    const i = Math.max(0, Math.floor((this.clock.now() - this.startMs) / this.seriesWindowMs));
    let w = t.series.get(i);
    if (!w) {
      w = { ok: 0, errors: 0, latencies: [] };
      t.series.set(i, w);
    }
    return w;
  }

  /** Starts the load; resolves once the duration has passed and nothing is outstanding. */
  run(): Promise<Summary> {
    if (this.runPromise) return this.runPromise;
    this.runPromise = new Promise<Summary>((resolve) => (this.resolveRun = resolve));
    this.started = true;
    this.startMs = this.clock.now();
    this.endMs = this.startMs + this.durationMs;
    if (this.stopped) {
      this.endAll();
    } else {
      for (const t of this.targets) {
        if (t.open) this.scheduleArrival(t, t.open, this.firstArrival(t.open));
        if (t.closed) {
          // Each user starts after a think, so N users do not all send at the first instant.
          for (const u of t.closed.users) this.scheduleUser(t, u, this.startMs + this.think(t.closed));
        }
      }
      if (this.targets.some((t) => t.closed)) {
        this.windowTimer = this.clock.at(this.endMs, () => {
          this.windowTimer = undefined;
          this.windowOver = true;
          this.maybeFinish();
        });
      }
    }
    this.maybeFinish();
    return this.runPromise;
  }

  /**
   * Stops starting requests; outstanding requests still complete or time out unless
   * abandonInFlight is set. Safe to call more than once.
   */
  stop(opts: StopOptions = {}): void {
    if (!this.stopped) {
      this.stopped = true;
      this.endAll();
    }
    if (opts.abandonInFlight) {
      for (const o of [...this.outstanding]) {
        this.settle(o);
        o.target.abandoned++;
        o.pending.gaveUp?.();
        if (o.user) {
          o.user.busy = false;
          this.endUser(o.target, o.user);
        }
      }
    }
    this.maybeFinish();
  }

  get done(): boolean {
    return this.finishedAtMs !== undefined;
  }

  summary(): Summary {
    const elapsedMs = this.elapsedMs();
    const windowS = Math.min(elapsedMs, this.durationMs) / 1000;
    const targets = this.targets.map((t) => {
      const ts = targetSummary(t, windowS, elapsedMs / 1000);
      return t.series && this.seriesWindowMs !== undefined
        ? { ...ts, series: seriesOf(t.series, this.seriesWindowMs, elapsedMs) }
        : ts;
    });
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
        vm: t.vm,
        model: t.closed ? LoadModel.CLOSED : LoadModel.OPEN,
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

  /** Cancels everything scheduled: no request starts after this. */
  private endAll(): void {
    this.windowOver = true;
    if (this.windowTimer) this.clock.cancel(this.windowTimer);
    this.windowTimer = undefined;
    for (const t of this.targets) {
      if (t.open) {
        if (t.open.nextTimer) this.clock.cancel(t.open.nextTimer);
        t.open.nextTimer = undefined;
        t.open.chainDone = true;
      }
      for (const u of t.closed?.users ?? []) {
        if (u.timer) this.clock.cancel(u.timer);
        u.timer = undefined;
        // A user waiting for its reply ends when the reply (or its timeout) comes.
        if (!u.busy) this.endUser(t, u);
      }
    }
  }

  // Open targets.

  private firstArrival(o: OpenState): number {
    // A Poisson process is memoryless, so its first arrival is one gap after the start.
    return o.arrival === Arrival.POISSON ? this.startMs + o.rng.exp(1000 / o.ratePerS) : this.startMs;
  }

  private nextArrival(t: TargetState, o: OpenState, prevMs: number): number {
    if (o.arrival === Arrival.POISSON) return prevMs + o.rng.exp(1000 / o.ratePerS);
    // From the index rather than by adding gaps, so float error never adds up: exactly
    // rate × duration arrivals when that is a whole number.
    return this.startMs + (t.arrivals * 1000) / o.ratePerS;
  }

  /** One timer per target at a time; each arrival schedules the next from its *intended* time. */
  private scheduleArrival(t: TargetState, o: OpenState, atMs: number): void {
    if (atMs < this.endMs) {
      o.nextTimer = this.clock.at(atMs, () => this.onArrival(t, o, atMs));
    } else {
      // The chain ends at the end of the window, so run() never resolves early.
      o.nextTimer = this.clock.at(this.endMs, () => {
        o.nextTimer = undefined;
        o.chainDone = true;
        this.maybeFinish();
      });
    }
  }

  private onArrival(t: TargetState, o: OpenState, intendedMs: number): void {
    o.nextTimer = undefined;
    if (this.stopped) return;
    t.arrivals++;
    if (t.inFlight >= this.maxInFlight) t.dropped++;
    else this.dispatch(t, intendedMs, intendedMs, undefined);
    this.scheduleArrival(t, o, this.nextArrival(t, o, intendedMs));
  }

  // Closed targets.

  private think(c: ClosedState): number {
    return c.thinkMs > 0 ? c.rng.exp(c.thinkMs) : 0;
  }

  /** The user's next request at atMs, unless that is past the window. */
  private scheduleUser(t: TargetState, u: User, atMs: number): void {
    if (this.stopped || atMs >= this.endMs) {
      this.endUser(t, u);
      return;
    }
    u.timer = this.clock.at(atMs, () => {
      u.timer = undefined;
      if (this.stopped) {
        this.endUser(t, u);
        this.maybeFinish();
        return;
      }
      t.arrivals++;
      // Latency runs from the actual send: a closed user never meant to send earlier.
      u.busy = true;
      this.dispatch(t, this.clock.now(), atMs, u);
    });
  }

  private afterRequest(t: TargetState, u: User): void {
    u.busy = false;
    if (u.done) return;
    this.scheduleUser(t, u, this.clock.now() + this.think(t.closed!));
  }

  private endUser(t: TargetState, u: User): void {
    if (u.done) return;
    u.done = true;
    t.closed!.live--;
  }

  // Requests.

  private dispatch(t: TargetState, fromMs: number, intendedMs: number, user: User | undefined): void {
    const pending = t.source.next(user?.index);
    const { request } = pending;
    const lag = Math.max(0, this.clock.now() - intendedMs);
    t.lagSumMs += lag;
    t.lagMaxMs = Math.max(t.lagMaxMs, lag);
    t.sent++;
    t.inFlight++;
    t.byOp[request.op] = (t.byOp[request.op] ?? 0) + 1;
    t.bytesSent += request.bytes;
    const o: Outstanding = { target: t, pending, fromMs, user, timer: undefined, settled: false, timedOut: false };
    this.outstanding.add(o);
    o.timer = this.clock.at(fromMs + this.timeoutMs, () => {
      o.timer = undefined;
      if (o.settled) return;
      this.settle(o);
      o.timedOut = true;
      t.timeouts++;
      const w = this.windowNow(t);
      if (w) w.errors++;
      pending.gaveUp?.();
      if (user) this.afterRequest(t, user);
      this.maybeFinish();
    });
    let reply: Promise<IngressReply>;
    try {
      reply = this.send(t.vm, request);
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
      if (o.timedOut) {
        t.late++;
        o.pending.late?.(reply);
      }
      return;
    }
    this.settle(o);
    if (reply.ok) {
      const verdict = o.pending.ok?.(reply);
      if (verdict?.checked) t.checked++;
      if (verdict?.checked && verdict.problem !== undefined) {
        // The server said ok but returned what was never written: an integrity failure.
        t.failed++;
        t.errors.set(ErrorCode.IO, (t.errors.get(ErrorCode.IO) ?? 0) + 1);
        if (t.failed <= LOGGED_FAILURES) {
          this.logger?.warn(
            { vm: t.vm, app: t.app, op: o.pending.request.op, code: ErrorCode.IO, problem: verdict.problem },
            'integrity failure',
          );
        }
      } else {
        const latencyMs = Math.max(0, this.clock.now() - o.fromMs);
        t.ok++;
        t.status.set(reply.status, (t.status.get(reply.status) ?? 0) + 1);
        t.bytesReceived += reply.bytes;
        t.hist.recordValue(Math.round(latencyMs * 1000));
        t.latSumMs += latencyMs;
        t.latMaxMs = Math.max(t.latMaxMs, latencyMs);
        const w = this.windowNow(t);
        if (w) {
          w.ok++;
          w.latencies.push(latencyMs);
        }
      }
    } else {
      const w = this.windowNow(t);
      if (w) w.errors++;
      t.errors.set(reply.code, (t.errors.get(reply.code) ?? 0) + 1);
      o.pending.error?.(reply.code);
    }
    if (o.user) this.afterRequest(t, o.user);
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
    if (this.outstanding.size > 0) return;
    for (const t of this.targets) {
      if (t.open && !t.open.chainDone) return;
      if (t.closed && !(this.windowOver && t.closed.live === 0)) return;
    }
    this.finishedAtMs = this.clock.now();
    this.resolveRun?.(this.summary());
  }
}

/** The former name of LoadRunner, kept for its callers: it runs closed targets too. */
export class OpenLoop extends LoadRunner {}

function targetSummary(t: TargetState, windowS: number, elapsedS: number): TargetSummary {
  const h = t.hist;
  // HDR answers with the top of a value's bucket (3 significant digits); no percentile
  // can be above the exact max.
  const pct = (p: number): number =>
    h.totalCount > 0 ? round3(Math.min(h.getValueAtPercentile(p) / 1000, t.latMaxMs)) : 0;
  const errorCount = sumValues(t.errors);
  return {
    vm: t.vm,
    model: t.closed ? LoadModel.CLOSED : LoadModel.OPEN,
    app: t.app,
    ...(t.open ? { arrival: t.open.arrival, ratePerS: t.open.ratePerS } : {}),
    ...(t.closed ? { users: t.closed.users.length, thinkMs: t.closed.thinkMs } : {}),
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
    integrity: { checked: t.checked, failed: t.failed },
    offeredPerS: windowS > 0 ? round3(t.arrivals / windowS) : 0,
    // Over the load window, not the whole run: one VM's straggler (a request waiting for its
    // timeout after the window closed) must not dilute every other VM's figure.
    okPerS: windowS > 0 ? round3(t.ok / windowS) : elapsedS > 0 ? round3(t.ok / elapsedS) : 0,
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

/** Every window from the start to the last one that saw a reply (empty windows included: a stalled VM shows as a gap). */
function seriesOf(windows: Map<number, SeriesWindow>, windowMs: number, elapsedMs: number): SeriesPoint[] {
  const last = Math.min(Math.max(-1, ...windows.keys()), Math.ceil(elapsedMs / windowMs));
  const out: SeriesPoint[] = [];
  for (let i = 0; i <= last; i++) {
    const w = windows.get(i) ?? { ok: 0, errors: 0, latencies: [] };
    const lat = [...w.latencies].sort((a, b) => a - b);
    // Nearest-rank percentiles: exact on the window's own values.
    const pct = (p: number) =>
      lat.length ? round3(lat[Math.min(lat.length - 1, Math.ceil((p / 100) * lat.length) - 1)]!) : 0;
    out.push({
      tMs: i * windowMs,
      ok: w.ok,
      errors: w.errors,
      okPerS: round3((w.ok * 1000) / windowMs),
      p50: pct(50),
      p99: pct(99),
      max: lat.length ? round3(lat[lat.length - 1]!) : 0,
    });
  }
  return out;
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

/** Checks a target given in code (config.ts checks the same things with field paths). */
function checkTarget(spec: TargetSpec, i: number): void {
  const where = `target ${i} (${spec.vm})`;
  if (!spec.vm) throw badConfig(`target ${i}: vm is empty`);
  if (spec.model === LoadModel.CLOSED) {
    if (!(Number.isInteger(spec.users) && spec.users >= 1 && spec.users <= MAX_USERS))
      throw badConfig(`${where}: users must be an integer in [1, ${MAX_USERS}], got ${spec.users}`);
    if (!(Number.isFinite(spec.thinkMs) && spec.thinkMs >= 0))
      throw badConfig(`${where}: thinkMs must be >= 0, got ${spec.thinkMs}`);
  } else {
    if (spec.model !== undefined && spec.model !== LoadModel.OPEN)
      throw badConfig(`${where}: model must be 'open' or 'closed', got ${String(spec.model)}`);
    if (!(Number.isFinite(spec.ratePerS) && spec.ratePerS > 0))
      throw badConfig(`${where}: ratePerS must be > 0, got ${spec.ratePerS}`);
    if (spec.arrival !== undefined && spec.arrival !== Arrival.POISSON && spec.arrival !== Arrival.CONSTANT) {
      throw badConfig(`${where}: arrival must be 'poisson' or 'constant', got ${String(spec.arrival)}`);
    }
  }
  const problems = appProblems(spec.app ?? 'web', spec.mix, spec);
  if (problems.length > 0) {
    throw badConfig(`${where}: ${problems.map((p) => `${p.path.join('.')}: ${p.message}`).join('; ')}`);
  }
}
