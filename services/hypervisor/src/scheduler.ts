import type { Clock, TimerHandle } from '@vmsim/shared';
import { TokenBucket } from './token-bucket.ts';

export const POLICIES = ['fifo', 'fair'] as const;
export type Policy = (typeof POLICIES)[number];

export interface Job<T> {
  readonly vm: string;
  /** Estimated device time in simulated ms: what fair queueing charges the VM. */
  readonly cost: number;
  readonly payload: T;
  /** Bytes moved, for byte-rate limits (disk, network). */
  readonly bytes: number;
  readonly enqueuedAt: number;
  readonly seq: number;
  start: number;
  finish: number;
}

/** A rate a VM may use a device at: per simulated ms, with a bucket of `burst`. */
export interface RateLimit {
  ratePerMs: number;
  burst: number;
}

/** Per-VM controls on one device; `null` removes a limit. */
export interface FlowControls {
  weight?: number;
  /** Most jobs of the VM on the device at once (its vCPUs, for a CPU). */
  limit?: number;
  /** Device time (ms per ms: 0.5 is half of one core or disk) — a CPU cap. */
  cap?: RateLimit | null;
  /**
   * Device time guaranteed to the VM (ms per ms: 1.5 is one and a half cores) — a CPU
   * reservation. While the VM has reservation credit its requests go before those of VMs
   * without; it is a floor, not an extra on top of its share (see the class comment).
   */
  reservation?: RateLimit | null;
  bytes?: RateLimit | null;
  ops?: RateLimit | null;
}

interface Buckets {
  cap?: TokenBucket | undefined;
  bytes?: TokenBucket | undefined;
  ops?: TokenBucket | undefined;
}

interface Flow<T> {
  weight: number;
  limit: number;
  buckets: Buckets;
  /** Reservation credit: fills at the reserved rate, every dispatch of the VM takes from it. */
  reservation: TokenBucket | undefined;
  /** Held back by a rate limit since its last dispatch. */
  throttled: boolean;
  inFlight: number;
  lastFinish: number;
  queue: Job<T>[];
  head: number;
}

export interface SchedulerOptions<T> {
  name: string;
  policy: Policy;
  /** How many jobs the device accepts at once (cores, queue depth, ring). */
  capacity: number;
  clock: Clock;
  dispatch: (job: Job<T>, waitMs: number) => void;
  /**
   * Under `fair`, the device time (sum of the costs of jobs in flight, ms) past which no more
   * is dispatched, for devices that serve one job at a time behind a deep queue (a disk, a
   * NIC ring): what sits in the device's own queue is served in arrival order, so a deep
   * one would let a neighbour's backlog in front of everyone whatever the hypervisor's
   * order (as BFQ and mClock keep few requests outstanding). `fifo` fills the whole depth.
   */
  fairDepthMs?: number | undefined;
}

/**
 * Decides whose request reaches one device next. Queues live here, not in the device: the
 * device only ever holds `capacity` jobs. `fifo` serves in arrival order (no isolation: a
 * noisy neighbour's backlog delays everyone); `fair` is start-time fair queueing by weight
 * (Goyal et al., 1996), which gives backlogged VMs device time in proportion to their shares.
 *
 * A reservation (VMware's CPU reservation) is a floor: a VM gets max(reservation, what its
 * shares give it), and the shares divide what the reservations leave. A backlogged VM with
 * reservation credit (a token bucket filled at the reserved rate, drained by every dispatch
 * of the VM, reserved or not) goes first; among several, in the policy's order. Service it
 * gets that way is charged to its start tags like any other, so a VM whose shares already
 * give it more than its reservation runs out of credit and is served by plain SFQ (no share
 * on top of the floor). A VM reserved above its share runs ahead of the others' tags; that
 * lead is bounded (one credit burst), so it does not pay back its guaranteed time when the
 * reservation goes or its neighbours go idle. Reserved dispatches out of the policy's order
 * do not move the virtual time, which would charge newly busy VMs for them. Caps apply on
 * top: a throttled VM is not eligible, reserved or not.
 */
export class ResourceScheduler<T> {
  readonly name: string;
  policy: Policy;
  readonly capacity: number;
  private readonly fairDepthMs: number | undefined;
  /** Device time of the jobs in flight (their costs). */
  private outstandingCost = 0;
  private readonly clock: Clock;
  private readonly dispatchFn: (job: Job<T>, waitMs: number) => void;
  private readonly flows = new Map<string, Flow<T>>();
  private virtualTime = 0;
  private seq = 0;
  private running = 0;
  private queuedCount = 0;
  private wake: { at: number; handle: TimerHandle } | undefined;

  constructor(opts: SchedulerOptions<T>) {
    this.name = opts.name;
    this.policy = opts.policy;
    this.capacity = opts.capacity;
    this.fairDepthMs = opts.fairDepthMs;
    this.clock = opts.clock;
    this.dispatchFn = opts.dispatch;
  }

  get inFlight(): number {
    return this.running;
  }

  get queued(): number {
    return this.queuedCount;
  }

  private flow(vm: string): Flow<T> {
    let f = this.flows.get(vm);
    if (!f) {
      f = {
        weight: 100,
        limit: Infinity,
        buckets: {},
        reservation: undefined,
        throttled: false,
        inFlight: 0,
        lastFinish: 0,
        queue: [],
        head: 0,
      };
      this.flows.set(vm, f);
    }
    return f;
  }

  /**
   * Sets a VM's share (weight), the most jobs it may hold on the device at once, and its
   * rate limits (a cap on device time, bytes and operations per ms, as token buckets).
   * Changes apply to the next dispatch, so they can be made while the VM runs.
   */
  configureVm(vm: string, c: FlowControls): void {
    const f = this.flow(vm);
    if (c.weight !== undefined) {
      if (!(c.weight > 0)) throw new RangeError(`weight must be > 0, got ${c.weight}`);
      f.weight = c.weight;
    }
    if (c.limit !== undefined) f.limit = Math.max(1, c.limit);
    const now = this.clock.now();
    for (const key of ['cap', 'bytes', 'ops'] as const) {
      const l = c[key];
      if (l === undefined) continue;
      f.buckets[key] = l === null ? undefined : new TokenBucket(l.ratePerMs, l.burst, now);
    }
    if (c.reservation !== undefined) {
      // The floor forgets debt run up by service above the reservation: a VM that was busy on
      // its shares alone gets its guarantee back within one burst's worth of time.
      const r = c.reservation;
      f.reservation = r === null ? undefined : new TokenBucket(r.ratePerMs, r.burst, now, -r.burst);
    }
    this.pump();
  }

  /** The controls a VM has on this device now. */
  controlsOf(vm: string): {
    weight: number;
    limit: number;
    cap: RateLimit | null;
    reservation: RateLimit | null;
    bytes: RateLimit | null;
    ops: RateLimit | null;
  } {
    const f = this.flow(vm);
    const rate = (b: TokenBucket | undefined) => (b ? { ratePerMs: b.ratePerMs, burst: b.burst } : null);
    return {
      weight: f.weight,
      limit: f.limit,
      cap: rate(f.buckets.cap),
      reservation: rate(f.reservation),
      bytes: rate(f.buckets.bytes),
      ops: rate(f.buckets.ops),
    };
  }

  queuedFor(vm: string): number {
    const f = this.flows.get(vm);
    return f ? f.queue.length - f.head : 0;
  }

  submit(vm: string, cost: number, payload: T, bytes = 0): void {
    const f = this.flow(vm);
    const now = this.clock.now();
    const backlogged = f.queue.length - f.head > 0;
    const start = backlogged ? f.lastFinish : Math.max(this.virtualTime, f.lastFinish);
    const finish = start + cost / f.weight;
    f.lastFinish = finish;
    f.queue.push({ vm, cost, payload, bytes, enqueuedAt: now, seq: this.seq++, start, finish });
    this.queuedCount++;
    this.pump();
  }

  /** The device finished a job of `vm` (of `cost`, as submitted): its slot is free again. */
  complete(vm: string, cost = 0): void {
    const f = this.flows.get(vm);
    if (!f || f.inFlight === 0) throw new Error(`${this.name}: no job of ${vm} in flight`);
    f.inFlight--;
    this.running--;
    this.outstandingCost = this.running === 0 ? 0 : Math.max(0, this.outstandingCost - cost);
    this.pump();
  }

  /** Whether the device may take another job now. */
  private hasRoom(): boolean {
    if (this.running >= this.capacity) return false;
    // Two jobs at least: the next one is already in the device while the last one's
    // completion travels back, so the device does not idle for a round trip of the bus.
    if (this.policy !== 'fair' || this.fairDepthMs === undefined || this.running < 2) return true;
    return this.outstandingCost < this.fairDepthMs;
  }

  /** Forgets a VM's queued jobs (it crashed or was destroyed); returns them. In-flight ones still complete. */
  drop(vm: string): Job<T>[] {
    const f = this.flows.get(vm);
    if (!f) return [];
    const dropped = f.queue.slice(f.head);
    this.queuedCount -= dropped.length;
    f.queue = [];
    f.head = 0;
    if (f.inFlight === 0) this.flows.delete(vm);
    return dropped;
  }

  private pump(): void {
    const now = this.clock.now();
    while (this.queuedCount > 0 && this.hasRoom()) {
      let best: Flow<T> | undefined;
      let bestJob: Job<T> | undefined;
      let bestReserved = false;
      /** What the policy alone would pick. */
      let plainJob: Job<T> | undefined;
      let throttledUntil = Infinity;
      for (const f of this.flows.values()) {
        if (f.head >= f.queue.length || f.inFlight >= f.limit) continue;
        const readyAt = this.readyAt(f, now);
        if (readyAt > now) {
          throttledUntil = Math.min(throttledUntil, readyAt);
          f.throttled = true;
          continue;
        }
        if (f.throttled) this.rebase(f);
        const j = f.queue[f.head]!;
        const reserved = f.reservation?.ready(now) ?? false;
        if (!plainJob || this.before(j, plainJob)) plainJob = j;
        if (!bestJob || (reserved && !bestReserved) || (reserved === bestReserved && this.before(j, bestJob))) {
          best = f;
          bestJob = j;
          bestReserved = reserved;
        }
      }
      if (!best || !bestJob) {
        // Only rate-limited VMs have work: come back when the first of them may go on.
        if (throttledUntil < Infinity) this.wakeAt(throttledUntil);
        return;
      }
      best.head++;
      if (best.head > 1024 && best.head * 2 > best.queue.length) {
        best.queue = best.queue.slice(best.head);
        best.head = 0;
      }
      this.queuedCount--;
      best.inFlight++;
      this.running++;
      this.outstandingCost += bestJob.cost;
      const plain = bestJob === plainJob;
      if (plain && bestJob.start > this.virtualTime) this.virtualTime = bestJob.start;
      best.reservation?.take(bestJob.cost, now);
      if (!plain) this.boundLead(best);
      best.buckets.cap?.take(bestJob.cost, now);
      best.buckets.bytes?.take(bestJob.bytes, now);
      best.buckets.ops?.take(1, now);
      this.dispatchFn(bestJob, now - bestJob.enqueuedAt);
    }
  }

  /**
   * A flow a rate limit held back must not come back with the old start tags of its queue:
   * they would let it catch up on the time it was throttled, starving the others. Its
   * queue moves up to the current virtual time (what it would get had it just arrived).
   */
  private rebase(f: Flow<T>): void {
    f.throttled = false;
    const head = f.queue[f.head];
    if (!head || head.start >= this.virtualTime) return;
    const shift = this.virtualTime - head.start;
    for (let i = f.head; i < f.queue.length; i++) {
      const j = f.queue[i]!;
      j.start += shift;
      j.finish += shift;
    }
    f.lastFinish += shift;
  }

  /**
   * A VM served by its reservation ahead of its share runs ahead of the virtual time; keep
   * that lead within one credit burst, so it never owes the guaranteed time back.
   */
  private boundLead(f: Flow<T>): void {
    if (!f.reservation) return;
    const head = f.queue[f.head];
    const next = head ? head.start : f.lastFinish;
    const shift = next - (this.virtualTime + f.reservation.burst / f.weight);
    if (shift <= 0) return;
    for (let i = f.head; i < f.queue.length; i++) {
      const j = f.queue[i]!;
      j.start -= shift;
      j.finish -= shift;
    }
    f.lastFinish -= shift;
  }

  /** When a flow's rate limits next let it dispatch. */
  private readyAt(f: Flow<T>, now: number): number {
    const b = f.buckets;
    if (!b.cap && !b.bytes && !b.ops) return now;
    return Math.max(b.cap?.readyAt(now) ?? now, b.bytes?.readyAt(now) ?? now, b.ops?.readyAt(now) ?? now);
  }

  private wakeAt(at: number): void {
    if (this.wake && this.wake.at <= at) return;
    if (this.wake) this.clock.cancel(this.wake.handle);
    const handle = this.clock.at(at, () => {
      this.wake = undefined;
      this.pump();
    });
    this.wake = { at, handle };
  }

  private before(a: Job<T>, b: Job<T>): boolean {
    if (this.policy === 'fair' && a.start !== b.start) return a.start < b.start;
    return a.seq < b.seq;
  }
}
