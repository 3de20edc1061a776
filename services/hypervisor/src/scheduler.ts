import type { Clock } from '@vmsim/shared';

export const POLICIES = ['fifo', 'fair'] as const;
export type Policy = (typeof POLICIES)[number];

export interface Job<T> {
  readonly vm: string;
  /** Estimated device time in simulated ms: what fair queueing charges the VM. */
  readonly cost: number;
  readonly payload: T;
  readonly enqueuedAt: number;
  readonly seq: number;
  start: number;
  finish: number;
}

interface Flow<T> {
  weight: number;
  limit: number;
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
}

/**
 * Decides whose request reaches one device next. Queues live here, not in the device: the
 * device only ever holds `capacity` jobs. `fifo` serves in arrival order (no isolation: a
 * noisy neighbour's backlog delays everyone); `fair` is start-time fair queueing by weight
 * (Goyal et al., 1996), which gives backlogged VMs device time in proportion to their shares.
 */
export class ResourceScheduler<T> {
  readonly name: string;
  policy: Policy;
  readonly capacity: number;
  private readonly clock: Clock;
  private readonly dispatchFn: (job: Job<T>, waitMs: number) => void;
  private readonly flows = new Map<string, Flow<T>>();
  private virtualTime = 0;
  private seq = 0;
  private running = 0;
  private queuedCount = 0;

  constructor(opts: SchedulerOptions<T>) {
    this.name = opts.name;
    this.policy = opts.policy;
    this.capacity = opts.capacity;
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
      f = { weight: 100, limit: Infinity, inFlight: 0, lastFinish: 0, queue: [], head: 0 };
      this.flows.set(vm, f);
    }
    return f;
  }

  /** Sets a VM's share (weight) and the most jobs it may hold on the device at once. */
  configureVm(vm: string, opts: { weight?: number; limit?: number }): void {
    const f = this.flow(vm);
    if (opts.weight !== undefined) {
      if (!(opts.weight > 0)) throw new RangeError(`weight must be > 0, got ${opts.weight}`);
      f.weight = opts.weight;
    }
    if (opts.limit !== undefined) f.limit = Math.max(1, opts.limit);
    this.pump();
  }

  queuedFor(vm: string): number {
    const f = this.flows.get(vm);
    return f ? f.queue.length - f.head : 0;
  }

  submit(vm: string, cost: number, payload: T): void {
    const f = this.flow(vm);
    const now = this.clock.now();
    const backlogged = f.queue.length - f.head > 0;
    const start = backlogged ? f.lastFinish : Math.max(this.virtualTime, f.lastFinish);
    const finish = start + cost / f.weight;
    f.lastFinish = finish;
    f.queue.push({ vm, cost, payload, enqueuedAt: now, seq: this.seq++, start, finish });
    this.queuedCount++;
    this.pump();
  }

  /** The device finished a job of `vm`: its slot is free again. */
  complete(vm: string): void {
    const f = this.flows.get(vm);
    if (!f || f.inFlight === 0) throw new Error(`${this.name}: no job of ${vm} in flight`);
    f.inFlight--;
    this.running--;
    this.pump();
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
    while (this.running < this.capacity && this.queuedCount > 0) {
      let best: Flow<T> | undefined;
      let bestJob: Job<T> | undefined;
      for (const f of this.flows.values()) {
        if (f.head >= f.queue.length || f.inFlight >= f.limit) continue;
        const j = f.queue[f.head]!;
        if (!bestJob || this.before(j, bestJob)) {
          best = f;
          bestJob = j;
        }
      }
      if (!best || !bestJob) return;
      best.head++;
      if (best.head > 1024 && best.head * 2 > best.queue.length) {
        best.queue = best.queue.slice(best.head);
        best.head = 0;
      }
      this.queuedCount--;
      best.inFlight++;
      this.running++;
      if (bestJob.start > this.virtualTime) this.virtualTime = bestJob.start;
      this.dispatchFn(bestJob, this.clock.now() - bestJob.enqueuedAt);
    }
  }

  private before(a: Job<T>, b: Job<T>): boolean {
    if (this.policy === 'fair' && a.start !== b.start) return a.start < b.start;
    return a.seq < b.seq;
  }
}
