/**
 * Time in the models is simulated milliseconds. A RealClock maps it onto wall time
 * (wall = simulated × timeScale); a VirtualClock runs it as a discrete-event simulation,
 * so the same pure cores are tested in virtual time and run in real time in services.
 */
export interface TimerHandle {
  readonly id: number;
}

export interface Clock {
  /** Simulated ms since the clock's origin. */
  now(): number;
  /** Runs fn once simulated time reaches atMs (immediately after the current task if it has). */
  at(atMs: number, fn: () => void): TimerHandle;
  cancel(handle: TimerHandle): void;
}

/** The longest delay setTimeout takes as it is. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class RealClock implements Clock {
  readonly timeScale: number;
  private readonly originWallMs: number;
  private readonly timers = new Map<number, NodeJS.Timeout | NodeJS.Immediate>();
  private nextId = 1;

  constructor(timeScale: number, originWallMs = performance.now()) {
    if (!(timeScale > 0)) throw new RangeError(`timeScale must be > 0, got ${timeScale}`);
    this.timeScale = timeScale;
    this.originWallMs = originWallMs;
  }

  now(): number {
    return (performance.now() - this.originWallMs) / this.timeScale;
  }

  /** Simulated ms → wall ms. */
  toWall(simMs: number): number {
    return simMs * this.timeScale;
  }

  /** Wall ms → simulated ms. */
  toSim(wallMs: number): number {
    return wallMs / this.timeScale;
  }

  at(atMs: number, fn: () => void): TimerHandle {
    const id = this.nextId++;
    this.schedule(id, atMs, fn);
    return { id };
  }

  private schedule(id: number, atMs: number, fn: () => void): void {
    const delayWall = (atMs - this.now()) * this.timeScale;
    const run = (): void => {
      // libuv measures timers against a cached, whole-ms loop time: one can fire up to 1 ms
      // early. Wait out the rest rather than run before the simulated due time.
      if (delayWall >= 0.5 && (atMs - this.now()) * this.timeScale >= 0.5) return this.schedule(id, atMs, fn);
      this.timers.delete(id);
      fn();
    };
    // Node's timers have 1 ms granularity; anything due within it runs on the next turn. Past
    // 2^31-1 ms setTimeout fires at once (with a warning): a longer wait goes in steps.
    const timer =
      delayWall < 0.5
        ? setImmediate(run)
        : delayWall > MAX_TIMER_MS
          ? setTimeout(() => this.schedule(id, atMs, fn), MAX_TIMER_MS)
          : setTimeout(run, delayWall);
    this.timers.set(id, timer);
  }

  cancel(handle: TimerHandle): void {
    const t = this.timers.get(handle.id);
    if (t === undefined) return;
    this.timers.delete(handle.id);
    if ('hasRef' in t && typeof (t as NodeJS.Timeout).refresh === 'function') clearTimeout(t as NodeJS.Timeout);
    else clearImmediate(t as NodeJS.Immediate);
  }

  /** Cancels every pending timer (on shutdown). */
  cancelAll(): void {
    for (const id of [...this.timers.keys()]) this.cancel({ id });
  }
}

interface VirtualEvent {
  at: number;
  seq: number;
  id: number;
  fn: () => void;
}

/** A discrete-event clock: time jumps from event to event, in (time, insertion) order. */
export class VirtualClock implements Clock {
  private current = 0;
  private seq = 0;
  private readonly heap: VirtualEvent[] = [];
  private readonly cancelled = new Set<number>();

  now(): number {
    return this.current;
  }

  at(atMs: number, fn: () => void): TimerHandle {
    const id = ++this.seq;
    this.push({ at: Math.max(atMs, this.current), seq: id, id, fn });
    return { id };
  }

  cancel(handle: TimerHandle): void {
    this.cancelled.add(handle.id);
  }

  get pending(): number {
    return this.heap.length - this.cancelled.size;
  }

  /** Runs events until none is due at or before untilMs; time ends at untilMs. */
  runUntil(untilMs: number): void {
    while (this.heap.length > 0 && this.heap[0]!.at <= untilMs) this.step();
    this.current = Math.max(this.current, untilMs);
  }

  /** Runs until no event is left, or maxEvents have run (a guard against endless models). */
  runAll(maxEvents = 10_000_000): number {
    let n = 0;
    while (this.heap.length > 0 && n < maxEvents) {
      if (this.step()) n++;
    }
    return n;
  }

  private step(): boolean {
    const ev = this.pop()!;
    if (this.cancelled.delete(ev.id)) return false;
    this.current = ev.at;
    ev.fn();
    return true;
  }

  private push(ev: VirtualEvent): void {
    const h = this.heap;
    h.push(ev);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (before(h[p]!, ev)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = ev;
  }

  private pop(): VirtualEvent | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        let mv = last;
        if (l < h.length && before(h[l]!, mv)) {
          m = l;
          mv = h[l]!;
        }
        if (r < h.length && before(h[r]!, mv)) m = r;
        if (m === i) break;
        h[i] = h[m]!;
        i = m;
      }
      h[i] = last;
    }
    return top;
  }
}

function before(a: VirtualEvent, b: VirtualEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
