import { describe, expect, it } from 'vitest';
import {
  createRng,
  ErrorCode,
  RandomStreams,
  VirtualClock,
  type IngressReply,
  type IngressRequest,
} from '@vmsim/shared';
import { LoadRunner, type ClosedTargetSpec, type LoadRunnerOptions, type Send, type TargetSpec } from './load.ts';
import { FakeGuest } from './testing/fake-guest.ts';
import { parallelServer, SteppedClock } from './testing/stepped-clock.ts';

const OK: IngressReply = { ok: true, status: 200, bytes: 500 };

function closed(over: Partial<ClosedTargetSpec> = {}): ClosedTargetSpec {
  return { model: 'closed', vm: 'web1', users: 10, thinkMs: 100, ...over };
}

async function runWith(
  opts: Omit<LoadRunnerOptions, 'clock' | 'rng'> & { seed?: string },
  clock: SteppedClock,
): Promise<{ runner: LoadRunner; summary: Awaited<ReturnType<LoadRunner['run']>> }> {
  const runner = new LoadRunner({ clock, rng: createRng(opts.seed ?? 'seed-1'), ...opts });
  const done = runner.run();
  await clock.drain();
  return { runner, summary: await done };
}

describe('closed model', () => {
  it.each(['a', 'b', 'c', 'd'])(
    'throughput follows N / (R + Z) with exponential think times (seed %s)',
    async (seed) => {
      const clock = new SteppedClock();
      const [N, R, Z] = [20, 50, 450];
      // Per user: when each reply came and when the user sent next, to measure its thinking.
      const lastReply = new Map<number, number>();
      const thinks: number[] = [];
      let inFlight = 0;
      let maxInFlight = 0;
      const server = parallelServer(clock, () => R);
      const send: Send = async (vm, req) => {
        const player = req.app === 'game' ? Number(req.player.split('-p')[1]) : -1;
        const prev = lastReply.get(player);
        if (prev !== undefined) thinks.push(clock.now() - prev);
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        const r = await server(vm, req);
        inFlight--;
        lastReply.set(player, clock.now());
        return r;
      };
      const T = 200_000;
      const { summary } = await runWith(
        { seed, targets: [closed({ app: 'game', users: N, thinkMs: Z })], durationMs: T, send },
        clock,
      );
      const t = summary.targets[0]!;
      const law = N / ((R + Z) / 1000);
      // 8000 cycles; the count's σ is about 1 %.
      expect(Math.abs(t.okPerS - law) / law).toBeLessThan(0.04);
      expect(t.ok).toBe(t.sent);
      expect(t.model).toBe('closed');
      expect(t.users).toBe(N);
      expect(t.thinkMs).toBe(Z);
      // Latency runs from the send: exactly R.
      expect(t.latencyMs).toMatchObject({ p50: R, p99: R, max: R, mean: R });
      // A user never has two requests out.
      expect(maxInFlight).toBeLessThanOrEqual(N);
      const mean = thinks.reduce((a, b) => a + b, 0) / thinks.length;
      const cv = Math.sqrt(thinks.reduce((a, b) => a + (b - mean) ** 2, 0) / (thinks.length - 1)) / mean;
      expect(Math.abs(mean - Z) / Z).toBeLessThan(0.05);
      expect(cv).toBeGreaterThan(0.93);
      expect(cv).toBeLessThan(1.07);
      // Nothing is sent after the window; the run ends with the last reply.
      expect(summary.elapsedMs).toBeGreaterThanOrEqual(T);
      expect(summary.elapsedMs).toBeLessThanOrEqual(T + R);
    },
  );

  it('without think time every user sends back to back: exactly N / R', async () => {
    const clock = new SteppedClock();
    const { summary } = await runWith(
      { targets: [closed({ users: 5, thinkMs: 0 })], durationMs: 10_000, send: parallelServer(clock, () => 10) },
      clock,
    );
    const t = summary.targets[0]!;
    expect(t.sent).toBe(5_000);
    expect(t.okPerS).toBe(500);
    expect(summary.elapsedMs).toBe(10_000);
  });

  it('keeps a latency time series per window that shows when the server slowed down', async () => {
    const clock = new SteppedClock();
    // 10 ms per request for the first 5 s, 40 ms after: a noisy neighbour arriving halfway.
    const server: Send = () =>
      new Promise((resolve) =>
        clock.at(clock.now() + (clock.now() < 5_000 ? 10 : 40), () => resolve({ ok: true, status: 200, bytes: 1 })),
      );
    const { summary } = await runWith(
      { targets: [closed({ users: 5, thinkMs: 0 })], durationMs: 10_000, send: server, seriesWindowMs: 1_000 },
      clock,
    );
    const series = summary.targets[0]!.series!;
    // The last requests, sent just before the end, complete in an eleventh window.
    expect(series.map((p) => p.tMs)).toEqual([0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000]);
    for (const p of series.slice(1, 5)) expect([p.p50, p.p99, p.okPerS]).toEqual([10, 10, 500]);
    for (const p of series.slice(6, 10)) expect([p.p50, p.p99, p.okPerS]).toEqual([40, 40, 125]);
    expect(series.reduce((a, p) => a + p.ok, 0)).toBe(summary.targets[0]!.ok);
    expect(series.every((p) => p.errors === 0)).toBe(true);
  });

  it("one VM's straggler does not dilute another VM's throughput", async () => {
    const clock = new SteppedClock();
    // web2's last request hangs until its timeout, far past the end of the window.
    const send: Send = (vm) =>
      new Promise((resolve) =>
        clock.at(clock.now() + (vm === 'web2' && clock.now() > 9_900 ? 60_000 : 10), () =>
          resolve({ ok: true, status: 200, bytes: 1 }),
        ),
      );
    const { summary } = await runWith(
      {
        targets: [closed({ users: 5, thinkMs: 0 }), closed({ vm: 'web2', users: 1, thinkMs: 0 })],
        durationMs: 10_000,
        timeoutMs: 30_000,
        send,
      },
      clock,
    );
    expect(summary.elapsedMs).toBeGreaterThan(30_000);
    expect(summary.targets[0]!.okPerS).toBe(500);
  });

  it('a timed-out user moves on; its late reply is not an ok', async () => {
    const clock = new SteppedClock();
    // Every request takes 300 ms, past the 200 ms timeout.
    const { summary, runner } = await runWith(
      {
        targets: [closed({ users: 2, thinkMs: 0 })],
        durationMs: 1_000,
        timeoutMs: 200,
        send: parallelServer(clock, () => 300),
      },
      clock,
    );
    const t = summary.targets[0]!;
    // Sends at 0, 200, 400, 600, 800 per user.
    expect(t.sent).toBe(10);
    expect(t.timeouts).toBe(10);
    expect(t.ok).toBe(0);
    expect(summary.elapsedMs).toBe(1_000);
    expect(runner.summary().targets[0]!.late).toBe(10);
  });

  it('counts error replies by code and goes on', async () => {
    const clock = new SteppedClock();
    const send = parallelServer(
      clock,
      () => 10,
      (i): IngressReply => (i % 4 === 0 ? { ok: false, code: ErrorCode.OVERLOAD, message: 'busy' } : OK),
    );
    const { summary } = await runWith({ targets: [closed({ users: 1, thinkMs: 0 })], durationMs: 1_000, send }, clock);
    const t = summary.targets[0]!;
    expect(t.sent).toBe(100);
    expect(t.errors).toEqual({ [ErrorCode.OVERLOAD]: 25 });
    expect(t.ok).toBe(75);
  });

  it('stop() lets users finish their request, stop({abandonInFlight}) gives up on it', async () => {
    const clock = new SteppedClock();
    const runner = new LoadRunner({
      clock,
      rng: createRng('s'),
      targets: [closed({ users: 4, thinkMs: 0 })],
      durationMs: 60_000,
      send: parallelServer(clock, () => 100),
    });
    const done = runner.run();
    clock.at(250, () => runner.stop());
    await clock.drain();
    const s = await done;
    expect(s.stopped).toBe(true);
    expect(s.elapsedMs).toBe(300);
    expect(s.targets[0]!.ok).toBe(12);

    const clock2 = new SteppedClock();
    const hung = new LoadRunner({
      clock: clock2,
      rng: createRng('s'),
      targets: [closed({ users: 4, thinkMs: 0 })],
      durationMs: 60_000,
      send: () => new Promise<IngressReply>(() => undefined),
    });
    const done2 = hung.run();
    clock2.at(50, () => hung.stop({ abandonInFlight: true }));
    await clock2.drain();
    const s2 = await done2;
    expect(s2.elapsedMs).toBe(50);
    expect(s2.targets[0]!.abandoned).toBe(4);
    expect(s2.totals.inFlight).toBe(0);
  });

  it('stop() before run() gives an empty, finished run', async () => {
    const runner = new LoadRunner({
      clock: new SteppedClock(),
      rng: createRng('s'),
      targets: [closed()],
      durationMs: 1_000,
      send: () => Promise.resolve(OK),
    });
    runner.stop();
    const s = await runner.run();
    expect(s.done).toBe(true);
    expect(s.totals.sent).toBe(0);
  });

  it('is deterministic for a seed and differs between seeds', async () => {
    const once = async (seed: string) => {
      const clock = new SteppedClock();
      const send = parallelServer(clock, (i) => 5 + (i % 11));
      const targets: TargetSpec[] = [closed({ app: 'db', users: 8, thinkMs: 20 }), { vm: 'w', ratePerS: 50 }];
      return (await runWith({ seed, targets, durationMs: 3_000, send }, clock)).summary;
    };
    const [a, b, c] = [await once('x'), await once('x'), await once('y')];
    expect(b).toEqual(a);
    expect(c.targets[0]!.bytesSent).not.toBe(a.targets[0]!.bytesSent);
  });
});

describe('random streams', () => {
  it("with streams, a target's draws depend only on the seed, its index and its VM", async () => {
    const requestsOf = async (targets: TargetSpec[], seed: string) => {
      const clock = new SteppedClock();
      const sent: IngressRequest[] = [];
      const server = parallelServer(clock, () => 7);
      const runner = new LoadRunner({
        clock,
        streams: new RandomStreams(seed),
        targets,
        durationMs: 2_000,
        send: (vm, req) => {
          if (vm === 'a') sent.push(req);
          return server(vm, req);
        },
      });
      const done = runner.run();
      await clock.drain();
      await done;
      return sent;
    };
    const a: TargetSpec = { vm: 'a', app: 'db', ratePerS: 200 };
    const alone = await requestsOf([a], 's1');
    // Another target beside it, closed, at another VM: same requests for 'a'.
    const together = await requestsOf([a, closed({ vm: 'b', users: 3, thinkMs: 5 })], 's1');
    expect(together).toEqual(alone);
    expect(await requestsOf([a], 's2')).not.toEqual(alone);
  });

  it('needs streams or rng', () => {
    expect(
      () =>
        new LoadRunner({
          clock: new VirtualClock(),
          targets: [closed()],
          durationMs: 1,
          send: () => Promise.resolve(OK),
        }),
    ).toThrow(/streams or rng/);
  });
});

describe('open and closed targets in one run', () => {
  it('runs both, ends, and summarizes each', async () => {
    const clock = new SteppedClock();
    const seen = new Map<string, IngressRequest[]>();
    const guest = new FakeGuest(clock, { delayMs: () => 20 });
    const send: Send = (vm, req) => {
      const list = seen.get(vm) ?? [];
      seen.set(vm, list);
      list.push(req);
      return guest.send(vm, req);
    };
    const targets: TargetSpec[] = [
      { vm: 'web1', ratePerS: 100, arrival: 'constant' },
      { model: 'closed', vm: 'db1', app: 'db', users: 10, thinkMs: 80 },
      { model: 'open', vm: 'game1', app: 'game', ratePerS: 30, players: 4 },
    ];
    const { runner, summary } = await runWith({ targets, durationMs: 5_000, send }, clock);
    expect(summary.done).toBe(true);
    expect(runner.done).toBe(true);
    const [web, db, game] = summary.targets;
    expect(web).toMatchObject({ vm: 'web1', model: 'open', app: 'web', arrival: 'constant', ratePerS: 100, sent: 500 });
    expect(web!.users).toBeUndefined();
    // 10 users cycling every 100 ms on average.
    expect(db).toMatchObject({ vm: 'db1', model: 'closed', app: 'db', users: 10, thinkMs: 80 });
    expect(db!.ratePerS).toBeUndefined();
    expect(Math.abs(db!.okPerS - 100) / 100).toBeLessThan(0.1);
    expect(Object.keys(db!.byOp)).toEqual(['GET', 'PUT', 'SCAN']);
    expect(game).toMatchObject({ vm: 'game1', model: 'open', app: 'game' });
    expect(game!.byOp['JOIN']).toBe(4);
    expect(guest.invalid).toEqual([]);
    expect(guest.refused).toEqual([]);
    expect(db!.integrity.checked).toBeGreaterThan(0);
    for (const t of summary.targets) {
      expect(t.ok).toBe(t.sent);
      expect(t.inFlight).toBe(0);
      expect(seen.get(t.vm)!.every((r) => r.app === t.app)).toBe(true);
    }
    expect(summary.totals.sent).toBe(web!.sent + db!.sent + game!.sent);
    expect(summary.elapsedMs).toBeGreaterThanOrEqual(5_000);
    expect(summary.elapsedMs).toBeLessThanOrEqual(5_020);
    const snap = runner.snapshot();
    expect(snap.targets.map((t) => t.model)).toEqual(['open', 'closed', 'open']);
    expect(JSON.parse(JSON.stringify(summary))).toEqual(summary);
  });

  it('rejects a bad configuration with the field named', () => {
    const base = { clock: new VirtualClock(), rng: createRng('s'), durationMs: 1_000, send: () => Promise.resolve(OK) };
    const make = (t: TargetSpec) => () => new LoadRunner({ ...base, targets: [t] });
    expect(make(closed({ users: 0 }))).toThrow(/users/);
    expect(make(closed({ users: 1.5 }))).toThrow(/users/);
    expect(make(closed({ thinkMs: -1 }))).toThrow(/thinkMs/);
    expect(make(closed({ thinkMs: Number.NaN }))).toThrow(/thinkMs/);
    expect(make(closed({ app: 'db', mix: { POST: 1 } }))).toThrow(/mix\.POST/);
    expect(make(closed({ app: 'db', mix: { GET: 0 } }))).toThrow(/mix/);
    expect(make({ vm: 'a', ratePerS: 1, app: 'web', keys: 10 })).toThrow(/keys: only for app 'db'/);
    expect(make({ vm: 'a', ratePerS: 1, app: 'nope' as 'web' })).toThrow(/app/);
  });
});
