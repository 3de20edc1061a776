import { describe, expect, it } from 'vitest';
import {
  createRng,
  ErrorCode,
  IngressRequest,
  VirtualClock,
  VmsimError,
  type Clock,
  type IngressReply,
  type TimerHandle,
  type WebRequest,
} from '@vmsim/shared';
import { DEFAULT_PATHS, POST_PATHS } from './apps.ts';
import { OpenLoop, type OpenLoopOptions, type OpenTargetSpec, type Send } from './load.ts';
import { parallelServer, SteppedClock } from './testing/stepped-clock.ts';

/** Models a load generator whose own event loop is blocked during [fromMs, toMs). */
class StalledClock implements Clock {
  private readonly base: Clock;
  private readonly fromMs: number;
  private readonly toMs: number;
  constructor(base: Clock, fromMs: number, toMs: number) {
    this.base = base;
    this.fromMs = fromMs;
    this.toMs = toMs;
  }
  now(): number {
    return this.base.now();
  }
  at(atMs: number, fn: () => void): TimerHandle {
    const blocked = atMs >= this.fromMs && atMs < this.toMs && this.now() < this.toMs;
    return this.base.at(blocked ? this.toMs : atMs, fn);
  }
  cancel(handle: TimerHandle): void {
    this.base.cancel(handle);
  }
}

const OK: IngressReply = { ok: true, status: 200, bytes: 1000 };

function target(over: Partial<OpenTargetSpec> = {}): OpenTargetSpec {
  return { vm: 'web1', ratePerS: 100, arrival: 'constant', mix: { GET: 1, POST: 0 }, ...over };
}

/** One server, FIFO, serviceMs per request; it serves nothing during [stallFrom, stallTo). */
function singleServer(clock: Clock, serviceMs: number, stallFrom = Infinity, stallTo = Infinity): Send {
  let freeAt = 0;
  return () =>
    new Promise((resolve) => {
      let start = Math.max(clock.now(), freeAt);
      if (start >= stallFrom && start < stallTo) start = stallTo;
      freeAt = start + serviceMs;
      clock.at(freeAt, () => resolve(OK));
    });
}

async function runLoop(
  opts: Omit<OpenLoopOptions, 'clock' | 'rng'> & { seed?: string; clock?: Clock },
  driver: SteppedClock,
) {
  const loop = new OpenLoop({ clock: driver, rng: createRng(opts.seed ?? 'seed-1'), ...opts });
  const done = loop.run();
  await driver.drain();
  return { loop, summary: await done };
}

function stats(xs: number[]): { mean: number; cv: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1);
  return { mean, cv: Math.sqrt(variance) / mean };
}

describe('arrivals', () => {
  it.each(['a', 'b', 'c', 'd', 'e'])(
    'Poisson at 100/s over 100 s matches λT and exponential gaps (seed %s)',
    async (seed) => {
      const clock = new SteppedClock();
      const times: number[] = [];
      const send: Send = () => {
        times.push(clock.now());
        return Promise.resolve(OK);
      };
      const { summary } = await runLoop(
        { seed, targets: [target({ arrival: 'poisson' })], durationMs: 100_000, send },
        clock,
      );
      // λT = 10 000, σ = 100: 4 % is 4σ.
      expect(summary.totals.sent).toBe(times.length);
      expect(Math.abs(times.length - 10_000)).toBeLessThan(400);
      const gaps = times.slice(1).map((t, i) => t - times[i]!);
      const { mean, cv } = stats(gaps);
      expect(mean).toBeGreaterThan(9.6);
      expect(mean).toBeLessThan(10.4);
      // Exponential gaps have CV 1 (constant 0, uniform 0.58); the estimate's σ is ~1.4 %.
      expect(cv).toBeGreaterThan(0.94);
      expect(cv).toBeLessThan(1.06);
      // P(gap > mean) = 1/e for an exponential.
      const longer = gaps.filter((g) => g > 10).length / gaps.length;
      expect(Math.abs(longer - Math.exp(-1))).toBeLessThan(0.02);
      expect(times.every((t) => t >= 0 && t < 100_000)).toBe(true);
    },
  );

  it('runs several targets at their own rates', async () => {
    const clock = new SteppedClock();
    const counts = new Map<string, number>();
    const send: Send = (vm) => {
      counts.set(vm, (counts.get(vm) ?? 0) + 1);
      return Promise.resolve(OK);
    };
    const targets = [
      target({ vm: 'a', ratePerS: 20, arrival: 'poisson' }),
      target({ vm: 'b', ratePerS: 200, arrival: 'poisson' }),
    ];
    const { summary } = await runLoop({ targets, durationMs: 50_000, send }, clock);
    // λT = 1000 (σ 32) and 10 000 (σ 100).
    expect(Math.abs(counts.get('a')! - 1000)).toBeLessThan(130);
    expect(Math.abs(counts.get('b')! - 10_000)).toBeLessThan(400);
    expect(summary.targets.map((t) => t.sent)).toEqual([counts.get('a'), counts.get('b')]);
  });

  it.each([
    [50, 10_000, 500],
    [3, 10_000, 30],
    [3, 1_500, 5],
    [1000, 1_000, 1000],
  ])('constant at %d/s over %d ms sends exactly %d, evenly spaced', async (ratePerS, durationMs, expected) => {
    const clock = new SteppedClock();
    const times: number[] = [];
    const send: Send = () => {
      times.push(clock.now());
      return Promise.resolve(OK);
    };
    const { summary } = await runLoop({ targets: [target({ ratePerS })], durationMs, send }, clock);
    expect(times.length).toBe(expected);
    expect(summary.targets[0]!.sent).toBe(expected);
    for (let i = 0; i < times.length; i++) expect(times[i]).toBeCloseTo((i * 1000) / ratePerS, 9);
  });

  it('is deterministic for a seed and differs between seeds', async () => {
    const once = async (seed: string) => {
      const clock = new SteppedClock();
      const send = parallelServer(clock, (i) => 1 + (i % 7));
      const mix = { GET: 1, POST: 1 };
      return (await runLoop({ seed, targets: [target({ arrival: 'poisson', mix })], durationMs: 5_000, send }, clock))
        .summary;
    };
    const [a, b, c] = [await once('x'), await once('x'), await once('y')];
    expect(b).toEqual(a);
    expect(c.targets[0]!.bytesSent).not.toBe(a.targets[0]!.bytesSent);
  });
});

describe('coordinated omission', () => {
  it('a server stalled for 1 s does not slow the arrivals, and the queued requests show it', async () => {
    const clock = new SteppedClock();
    const sendTimes: number[] = [];
    const server = singleServer(clock, 5, 2_000, 3_000);
    const send: Send = (vm, req) => {
      sendTimes.push(clock.now());
      return server(vm, req);
    };
    const { summary } = await runLoop({ targets: [target({ ratePerS: 100 })], durationMs: 10_000, send }, clock);
    const t = summary.targets[0]!;
    // Open loop: the 100 arrivals due during the stall were all sent on time.
    expect(sendTimes.filter((s) => s >= 2_000 && s < 3_000).length).toBe(100);
    expect(t.sent).toBe(1_000);
    expect(t.ok).toBe(1_000);
    // The request due at 2000 is served at 3000-3005; the backlog then drains for ~1 s,
    // so ~20 % of requests are slow. A closed-loop client would have sent one request
    // during the stall and reported p99 ≈ 5 ms.
    expect(t.latencyMs.max).toBe(1_005);
    // Histogram figures have 3 significant digits.
    expect(t.latencyMs.p50).toBeCloseTo(5, 1);
    expect(t.latencyMs.p90).toBeGreaterThan(450);
    expect(t.latencyMs.p99).toBeGreaterThan(900);
  });

  it('latency runs from the intended send time when the generator itself stalls', async () => {
    const base = new SteppedClock();
    const clock = new StalledClock(base, 2_000, 3_000);
    // The server answers every request in 5 ms; only the client was late.
    const send = parallelServer(base, () => 5);
    const loop = new OpenLoop({
      clock,
      rng: createRng('s'),
      targets: [target({ ratePerS: 100 })],
      durationMs: 10_000,
      send,
    });
    const done = loop.run();
    await base.drain();
    const t = (await done).targets[0]!;
    // Nothing was skipped: the late arrivals went out in a burst at 3000.
    expect(t.sent).toBe(1_000);
    expect(t.dispatchLagMs.max).toBe(1_000);
    // Measured from the actual send, every latency would be 5 ms.
    expect(t.latencyMs.max).toBe(1_005);
    expect(t.latencyMs.p99).toBeGreaterThan(900);
    expect(t.latencyMs.p50).toBeCloseTo(5, 1);
  });

  it('timeouts also run from the intended send time', async () => {
    const base = new SteppedClock();
    const clock = new StalledClock(base, 2_000, 3_000);
    const send = parallelServer(base, () => 5);
    const loop = new OpenLoop({
      clock,
      rng: createRng('s'),
      targets: [target({ ratePerS: 100 })],
      durationMs: 10_000,
      timeoutMs: 500,
      send,
    });
    const done = loop.run();
    await base.drain();
    const t = (await done).targets[0]!;
    // Due at 2000..2500 and answered at 3005: more than 500 ms after they were due.
    expect(t.timeouts).toBe(51);
    expect(t.ok).toBe(949);
    expect(t.latencyMs.max).toBeLessThanOrEqual(500);
  });
});

describe('timeouts', () => {
  it('counts timeouts and never counts a late reply as ok', async () => {
    const clock = new SteppedClock();
    // Every odd request takes 150 ms, past the 100 ms timeout; even ones take 20 ms.
    const send = parallelServer(clock, (i) => (i % 2 === 1 ? 150 : 20));
    const { loop, summary } = await runLoop(
      { targets: [target({ ratePerS: 10 })], durationMs: 2_000, timeoutMs: 100, send },
      clock,
    );
    const t = summary.targets[0]!;
    expect(t.sent).toBe(20);
    expect(t.ok).toBe(10);
    expect(t.timeouts).toBe(10);
    expect(t.inFlight).toBe(0);
    expect(t.latencyMs.count).toBe(10);
    expect(t.latencyMs.max).toBe(20);
    // The last late reply comes after run() resolved; it is still not an ok.
    const after = loop.summary().targets[0]!;
    expect(after.late).toBe(10);
    expect(after.ok).toBe(10);
  });

  it('resolves run() when replies never come', async () => {
    const clock = new SteppedClock();
    const send: Send = () => new Promise<IngressReply>(() => undefined);
    const { summary } = await runLoop(
      { targets: [target({ ratePerS: 10 })], durationMs: 1_000, timeoutMs: 250, send },
      clock,
    );
    expect(summary.done).toBe(true);
    expect(summary.targets[0]!.timeouts).toBe(10);
    expect(summary.targets[0]!.ok).toBe(0);
    // The last request is due at 900 and times out at 1150.
    expect(summary.elapsedMs).toBe(1_150);
  });
});

describe('in-flight cap', () => {
  it('drops arrivals beyond the cap instead of sending them', async () => {
    const clock = new SteppedClock();
    let calls = 0;
    const server = parallelServer(clock, () => 1_000);
    const send: Send = (vm, req) => {
      calls++;
      return server(vm, req);
    };
    const { summary } = await runLoop(
      { targets: [target({ ratePerS: 100 })], durationMs: 1_000, maxInFlight: 10, send },
      clock,
    );
    const t = summary.targets[0]!;
    expect(calls).toBe(10);
    expect(t.sent).toBe(10);
    expect(t.dropped).toBe(90);
    expect(t.arrivals).toBe(100);
    expect(t.ok).toBe(10);
  });

  it('frees a slot when its request times out', async () => {
    const clock = new SteppedClock();
    const send: Send = () => new Promise<IngressReply>(() => undefined);
    // Arrivals every 100 ms, each outstanding for 150 ms: every other one finds the slot taken.
    const { summary } = await runLoop(
      { targets: [target({ ratePerS: 10 })], durationMs: 1_000, maxInFlight: 1, timeoutMs: 150, send },
      clock,
    );
    const t = summary.targets[0]!;
    expect(t.sent).toBe(5);
    expect(t.dropped).toBe(5);
    expect(t.timeouts).toBe(5);
  });
});

describe('errors', () => {
  it('counts errors by code, including a send that throws or rejects', async () => {
    const clock = new SteppedClock();
    let i = 0;
    const send: Send = () => {
      const k = i++;
      switch (k % 5) {
        case 0:
          return Promise.resolve({ ok: true, status: k % 10 === 0 ? 200 : 404, bytes: 100 });
        case 1:
          return Promise.resolve({ ok: false, code: ErrorCode.OVERLOAD, message: 'busy' });
        case 2:
          return Promise.resolve({ ok: false, code: ErrorCode.VM_NOT_RUNNING, message: 'stopped' });
        case 3:
          throw new Error('boom');
        default:
          return Promise.reject(new VmsimError(ErrorCode.IO, 'disk'));
      }
    };
    const { summary } = await runLoop({ targets: [target({ ratePerS: 40 })], durationMs: 1_000, send }, clock);
    const t = summary.targets[0]!;
    expect(t.sent).toBe(40);
    expect(t.ok).toBe(8);
    expect(t.status).toEqual({ '200': 4, '404': 4 });
    expect(t.bytesReceived).toBe(800);
    expect(t.errors).toEqual({
      [ErrorCode.INTERNAL]: 8,
      [ErrorCode.IO]: 8,
      [ErrorCode.OVERLOAD]: 8,
      [ErrorCode.VM_NOT_RUNNING]: 8,
    });
    expect(t.errorCount).toBe(32);
    expect(t.latencyMs.count).toBe(8);
    expect(summary.totals.errors).toBe(32);
  });
});

describe('requests', () => {
  it('respects the mix weights and builds valid requests', async () => {
    const clock = new SteppedClock();
    const requests: WebRequest[] = [];
    const send: Send = (_vm, req) => {
      if (req.app === 'web') requests.push(req);
      return Promise.resolve(OK);
    };
    const { summary } = await runLoop(
      { targets: [target({ ratePerS: 400, mix: { GET: 3, POST: 1 } })], durationMs: 10_000, send },
      clock,
    );
    expect(requests.length).toBe(4_000);
    const posts = requests.filter((r) => r.op === 'POST');
    // Expected 0.25, σ ≈ 0.007.
    expect(Math.abs(posts.length / requests.length - 0.25)).toBeLessThan(0.025);
    expect(summary.targets[0]!.byOp).toEqual({ GET: requests.length - posts.length, POST: posts.length });
    // Checked in bulk: one expect per request would dominate the run time.
    const bad: string[] = [];
    let byteSum = 0;
    let byteCount = 0;
    for (const r of requests) {
      if (!IngressRequest.safeParse(r).success) bad.push(`invalid ${JSON.stringify(r)}`);
      if (r.op === 'GET') {
        if (!DEFAULT_PATHS.includes(r.path) || r.body !== undefined || r.bytes < 300 || r.bytes > 600)
          bad.push(`GET ${r.path} ${r.bytes}`);
      } else {
        const n = r.body?.length ?? -1;
        const headers = r.bytes - n;
        if (!POST_PATHS.includes(r.path) || n < 256 || n > 8_192 || headers < 300 || headers > 600)
          bad.push(`POST ${r.path} ${n} ${r.bytes}`);
        for (const b of r.body ?? []) byteSum += b;
        byteCount += n;
      }
    }
    expect(bad).toEqual([]);
    // Real random bodies: the byte mean of a uniform byte is 127.5.
    expect(Math.abs(byteSum / byteCount - 127.5)).toBeLessThan(2);
    expect(summary.targets[0]!.bytesSent).toBe(requests.reduce((a, r) => a + r.bytes, 0));
    // Every default path is asked for.
    expect(new Set(requests.filter((r) => r.op === 'GET').map((r) => r.path)).size).toBe(DEFAULT_PATHS.length);
  });

  it.each([
    [{ GET: 1, POST: 0 }, 0],
    [{ GET: 0, POST: 1 }, 1],
  ])('mix %o gives a POST share of %d', async (mix, share) => {
    const clock = new SteppedClock();
    const ops: string[] = [];
    const send: Send = (_vm, req) => {
      ops.push(req.op);
      return Promise.resolve(OK);
    };
    await runLoop({ targets: [target({ mix })], durationMs: 2_000, send }, clock);
    expect(ops.filter((o) => o === 'POST').length / ops.length).toBe(share);
  });

  it('uses the target paths when given', async () => {
    const clock = new SteppedClock();
    const paths = new Set<string>();
    const send: Send = (_vm, req) => {
      if (req.app === 'web') paths.add(req.path);
      return Promise.resolve(OK);
    };
    await runLoop({ targets: [target({ paths: ['/a', '/b'] })], durationMs: 1_000, send }, clock);
    expect([...paths].sort()).toEqual(['/a', '/b']);
  });
});

describe('lifecycle', () => {
  it('stop() ends the arrivals, waits for outstanding requests and is safe twice', async () => {
    const clock = new SteppedClock();
    const send = parallelServer(clock, () => 50);
    const loop = new OpenLoop({
      clock,
      rng: createRng('s'),
      targets: [target({ ratePerS: 100 })],
      durationMs: 10_000,
      send,
    });
    const done = loop.run();
    clock.at(1_005, () => {
      loop.stop();
      loop.stop();
    });
    await clock.drain();
    const s = await done;
    expect(s.stopped).toBe(true);
    expect(s.targets[0]!.sent).toBe(101);
    expect(s.targets[0]!.ok).toBe(101);
    expect(s.elapsedMs).toBe(1_050);
    expect(loop.run()).toBe(done);
  });

  it('stop({abandonInFlight}) resolves at once and counts what was outstanding', async () => {
    const clock = new SteppedClock();
    const send: Send = () => new Promise<IngressReply>(() => undefined);
    const loop = new OpenLoop({
      clock,
      rng: createRng('s'),
      targets: [target({ ratePerS: 100 })],
      durationMs: 10_000,
      send,
    });
    const done = loop.run();
    clock.at(95, () => loop.stop({ abandonInFlight: true }));
    await clock.drain();
    const s = await done;
    expect(s.elapsedMs).toBe(95);
    expect(s.targets[0]!.abandoned).toBe(10);
    expect(s.targets[0]!.timeouts).toBe(0);
    expect(s.totals.inFlight).toBe(0);
  });

  it('stop() before run() gives an empty, finished run', async () => {
    const clock = new SteppedClock();
    const loop = new OpenLoop({
      clock,
      rng: createRng('s'),
      targets: [target()],
      durationMs: 1_000,
      send: () => Promise.resolve(OK),
    });
    loop.stop();
    const s = await loop.run();
    expect(s.done).toBe(true);
    expect(s.totals.sent).toBe(0);
  });

  it('snapshot() shows progress and summary() is plain JSON', async () => {
    const clock = new SteppedClock();
    const send = parallelServer(clock, () => 10);
    const loop = new OpenLoop({
      clock,
      rng: createRng('s'),
      targets: [target({ ratePerS: 10 })],
      durationMs: 1_000,
      send,
    });
    const done = loop.run();
    const seen: number[] = [];
    clock.at(505, () => seen.push(loop.snapshot().targets[0]!.sent, loop.snapshot().targets[0]!.ok));
    await clock.drain();
    const s = await done;
    expect(seen).toEqual([6, 5]);
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
    expect(s.targets[0]!.latencyMs).toEqual({ count: 10, p50: 10, p90: 10, p99: 10, p999: 10, max: 10, mean: 10 });
  });

  it('rejects a bad configuration', () => {
    const base = { clock: new VirtualClock(), rng: createRng('s'), durationMs: 1_000, send: () => Promise.resolve(OK) };
    expect(() => new OpenLoop({ ...base, targets: [] })).toThrow(VmsimError);
    expect(() => new OpenLoop({ ...base, targets: [target({ ratePerS: 0 })] })).toThrow(/ratePerS/);
    expect(() => new OpenLoop({ ...base, targets: [target({ mix: { GET: 0, POST: 0 } })] })).toThrow(/mix/);
    expect(() => new OpenLoop({ ...base, targets: [target()], timeoutMs: 0 })).toThrow(/timeoutMs/);
    expect(() => new OpenLoop({ ...base, targets: [target()], maxInFlight: 0 })).toThrow(/maxInFlight/);
  });
});
