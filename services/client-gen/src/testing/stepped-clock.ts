import { VirtualClock, type Clock, type IngressReply, type TimerHandle } from '@vmsim/shared';
import type { Send } from '../load.ts';

/**
 * A VirtualClock that also remembers when its events are due, so a test can stop at each
 * of those instants and let promise continuations run before time moves on (the plain
 * VirtualClock runs its events back to back, before any microtask). For unit tests.
 */
export class SteppedClock implements Clock {
  private readonly inner = new VirtualClock();
  private readonly due: number[] = [];

  now(): number {
    return this.inner.now();
  }

  at(atMs: number, fn: () => void): TimerHandle {
    heapPush(this.due, Math.max(atMs, this.now()));
    return this.inner.at(atMs, fn);
  }

  cancel(handle: TimerHandle): void {
    this.inner.cancel(handle);
  }

  /** Runs every event at its time, flushing promise continuations after each instant. */
  async drain(): Promise<void> {
    while (this.due.length > 0) {
      const t = heapPop(this.due);
      if (t < this.now()) continue;
      this.inner.runUntil(t);
      for (let i = 0; i < 20; i++) await Promise.resolve();
    }
  }
}

/** A server with unlimited parallelism: request i takes delayMs(i) and is answered with reply(i). */
export function parallelServer(
  clock: Clock,
  delayMs: (i: number) => number,
  reply: (i: number) => IngressReply = () => ({ ok: true, status: 200, bytes: 1000 }),
): Send {
  let i = 0;
  return () => {
    const k = i++;
    return new Promise((resolve) => clock.at(clock.now() + delayMs(k), () => resolve(reply(k))));
  };
}

function heapPush(h: number[], v: number): void {
  h.push(v);
  let i = h.length - 1;
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (h[p]! <= v) break;
    h[i] = h[p]!;
    i = p;
  }
  h[i] = v;
}

function heapPop(h: number[]): number {
  const top = h[0]!;
  const last = h.pop()!;
  if (h.length > 0) {
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && h[l]! < (m === i ? last : h[m]!)) m = l;
      if (r < h.length && h[r]! < (m === i ? last : h[m]!)) m = r;
      if (m === i) break;
      h[i] = h[m]!;
      i = m;
    }
    h[i] = last;
  }
  return top;
}
