import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ManagementClient,
  VmEvent,
  anyVmEventSubject,
  decode,
  namespace,
  waitFor,
  type FaultSpec,
  type NatsConnection,
  type VmInfo,
  type WatchdogConfig,
} from '@vmsim/shared';
import { createBusSender } from '@vmsim/client-gen';
import { startTestStack, type TestStack } from './helpers/stack.ts';

const TIME_SCALE = 2;
const HEARTBEAT_MS = 100;
/** Short for the test (the default is 10 s): 15 heartbeats. */
const WATCHDOG_MS = 1500;
/** The neighbour's p99 bound during any fault window, wall ms (a GET takes a few ms). */
const NEIGHBOUR_P99_MS = 1000;

const GET = { app: 'web', op: 'GET', path: '/', bytes: 200 } as const;

/** Closed-loop clients on one VM, two users, paced; their latency and errors until ended. */
function clients(send: ReturnType<typeof createBusSender>, vm: string) {
  let stop = false;
  const lat: number[] = [];
  const errors: string[] = [];
  const user = async (): Promise<void> => {
    while (!stop) {
      const t = performance.now();
      const r = await send(vm, GET);
      lat.push(performance.now() - t);
      if (!r.ok) errors.push(`${r.code}: ${r.message}`);
      await new Promise((res) => setTimeout(res, 20));
    }
  };
  const users = [user(), user()];
  return {
    end: async () => {
      stop = true;
      await Promise.all(users);
      const s = [...lat].sort((a, b) => a - b);
      return { n: s.length, errors, p99: s[Math.min(s.length - 1, Math.floor(0.99 * s.length))] ?? 0 };
    },
  };
}

/** Detection as the chaos report counts it: a watchdog event, a degraded event, or a crash/failure. */
const isDetection = (e: VmEvent): boolean =>
  e.kind === 'watchdog' ||
  (e.kind === 'health' && e.health === 'degraded') ||
  ((e.kind ?? 'state') === 'state' && (e.to === 'crashed' || e.to === 'failed'));

/**
 * Every VM fault kind into one victim VM while a neighbour serves clients: the detection event
 * (kind and reason), recovery, and the neighbour's service during the fault window.
 */
describe('VM faults: detection, recovery, and a neighbour that keeps serving', () => {
  let t: TestStack;
  let nc: NatsConnection;
  let api: ManagementClient;
  let send: ReturnType<typeof createBusSender>;
  /** Short timeout: a request into a silent guest must not hold up the recovery probe. */
  let probe: ReturnType<typeof createBusSender>;
  const events: VmEvent[] = [];
  const figures: string[] = [];
  let neighbourLagMax = 0;
  const info = (name: string): Promise<VmInfo> => api.call('info', { name });

  beforeAll(async () => {
    t = await startTestStack({
      timeScale: TIME_SCALE,
      env: { VMSIM_HEARTBEAT_MS: String(HEARTBEAT_MS), VMSIM_WATCHDOG_MS: String(WATCHDOG_MS) },
    });
    ({ nc, api } = t);
    nc.subscribe(anyVmEventSubject(namespace(t.ns), 'host1'), {
      callback: (_e, m) => void events.push(decode(m.data, VmEvent, 'VM event')),
    });
    send = createBusSender(nc, namespace(t.ns), 'host1', { timeoutMs: 5_000 });
    probe = createBusSender(nc, namespace(t.ns), 'host1', { timeoutMs: 500 });
    // A limit below its size: a leak is OOM-killed. Restarts forgotten after 1 s: no growing backoff.
    await api.call('define', {
      name: 'victim',
      os: 'bsd',
      memoryMiB: 512,
      memLimitMiB: 320,
      diskGiB: 0.25,
      crashPolicy: 'restart',
      maxRestarts: 20,
      restartWindowMs: 1000,
    });
    await api.call('define', { name: 'neighbour', os: 'bsd', memoryMiB: 512, diskGiB: 0.25 });
    await api.call('start', { name: 'victim' });
    await api.call('start', { name: 'neighbour' });
    await waitFor(
      async () => (await info('victim')).state === 'running' && (await info('neighbour')).state === 'running',
      60_000,
      'victim and neighbour running',
    );
  }, 90_000);

  afterAll(async () => {
    if (figures.length) {
      console.log(
        `fault figures (wall ms):\n${figures.join('\n')}\nneighbour guest event-loop lag, max of p99s: ${neighbourLagMax.toFixed(0)} ms`,
      );
    }
    await t?.stop();
  });

  async function serves(vm: string, timeoutMs: number): Promise<number> {
    await waitFor(async () => (await probe(vm, GET)).ok, timeoutMs, `${vm} serves a request`, 50);
    return Date.now();
  }

  async function setWatchdog(w: WatchdogConfig): Promise<void> {
    await api.call('tune', { name: 'victim', watchdog: w });
  }

  /**
   * Injects `spec` into the victim with the neighbour under load; waits for the detection
   * event, runs `recover` (which resolves at the wall time the victim is back), and checks the
   * neighbour's service over the whole window.
   */
  async function faultCase(
    spec: FaultSpec,
    expectDetection: (e: VmEvent) => void,
    recover: () => Promise<number>,
  ): Promise<{ detection: VmEvent; detectMs: number; recoverMs: number }> {
    const from = events.length;
    const neighbour = clients(send, 'neighbour');
    // The neighbour's own event-loop lag (p99 per heartbeat), for the watchdog's margin.
    const lags: number[] = [];
    const lagTimer = setInterval(
      () =>
        void info('neighbour').then(
          (v) => v.guestLagMs !== null && lags.push(v.guestLagMs),
          () => undefined,
        ),
      200,
    );
    const t0 = Date.now();
    await api.call('fault', { name: 'victim', ...spec });
    let detection: VmEvent | undefined;
    await waitFor(
      () => (detection = events.slice(from).find((e) => e.vm === 'victim' && isDetection(e))) !== undefined,
      30_000,
      `detection of ${spec.kind}`,
    ).catch(async (e: unknown) => {
      const seen = events.slice(from).filter((x) => x.vm === 'victim');
      throw new Error(
        `${(e as Error).message}; victim events: ${JSON.stringify(seen)}; info: ${JSON.stringify(await info('victim'))}`,
        { cause: e },
      );
    });
    const back = await recover();
    const n = await neighbour.end();
    clearInterval(lagTimer);
    const maxLag = Math.max(0, ...lags);
    neighbourLagMax = Math.max(neighbourLagMax, maxLag);
    const injected = events.slice(from).find((e) => e.kind === 'fault' && e.fault?.phase === 'injected');
    expect(injected?.fault?.kind).toBe(spec.kind);
    try {
      expectDetection(detection!);
    } catch (e) {
      throw new Error(`${(e as Error).message}; detection event: ${JSON.stringify(detection)}`, { cause: e });
    }
    const detectMs = detection!.t - t0;
    const recoverMs = back - t0;
    figures.push(
      `${spec.kind.padEnd(10)} detected after ${detectMs} ms by ${detection!.kind ?? 'state'} (${detection!.reason}); ` +
        `served again after ${recoverMs} ms; neighbour ${n.n} requests, ${n.errors.length} errors, p99 ${n.p99.toFixed(0)} ms, ` +
        `guest lag max ${maxLag.toFixed(0)} ms`,
    );
    expect(n.errors).toEqual([]);
    expect(n.n).toBeGreaterThan(10);
    expect(n.p99).toBeLessThan(NEIGHBOUR_P99_MS);
    // Far below the watchdog's limit: a loaded guest is not mistaken for a hung one.
    expect(maxLag).toBeLessThan(WATCHDOG_MS / 3);
    return { detection: detection!, detectMs, recoverMs };
  }

  /** Waits for the victim's health to come back (a `recovered` event after `from`) and for it to serve. */
  async function healthRecovered(from: number): Promise<number> {
    let recovered: VmEvent | undefined;
    await waitFor(
      () =>
        (recovered = events
          .slice(from)
          .find((e) => e.vm === 'victim' && e.kind === 'health' && e.health === 'recovered')) !== undefined,
      30_000,
      'victim health recovered',
    );
    const cleared = events.slice(from).find((e) => e.vm === 'victim' && e.fault?.phase === 'cleared');
    expect(cleared).toBeDefined();
    expect(recovered!.t).toBeGreaterThanOrEqual(cleared!.t);
    figures.push(
      `  (${cleared!.fault!.kind}: cleared → recovered ${recovered!.t - cleared!.t} ms: ${recovered!.reason})`,
    );
    return serves('victim', 10_000);
  }

  it('slow, hog and garbage: no watchdog sees them; the VM is flagged degraded from its own figures', async () => {
    // The victim's own clients give its detector hypercalls to measure; a baseline first.
    const victimLoad = clients(send, 'victim');
    // Not readiness: eight health intervals (500 ms) of normal figures for the detector's baseline.
    await new Promise((r) => setTimeout(r, 4_000));

    let from = events.length;
    await faultCase(
      { kind: 'slow', delayMs: 5, durationMs: 1500 },
      (e) => expect(e.reason).toMatch(/^hypercall wait \d+(\.\d+)? ms per call/),
      () => healthRecovered(from),
    );
    expect(events.slice(from).some((e) => e.fault?.phase === 'cleared' && /elapsed/.test(e.reason))).toBe(true);

    from = events.length;
    await faultCase(
      { kind: 'hog', target: 'cpu', durationMs: 1500 },
      (e) => expect(e.reason).toMatch(/hypercall wait|guest event-loop lag/),
      () => healthRecovered(from),
    );
    expect(events.slice(from).some((e) => e.kind === 'stress' && e.stress === 'cpu')).toBe(true);

    from = events.length;
    const bad0 = (await info('victim')).badMessages;
    await faultCase(
      { kind: 'garbage', durationMs: 1500 },
      (e) => expect(e.reason).toMatch(/rejected messages \d+\/s/),
      () => healthRecovered(from),
    );
    const v = await info('victim');
    expect(v.badMessages - bad0).toBeGreaterThan(500);
    expect(v.state).toBe('running');
    expect(v.fault).toBeNull();
    const lag = (await api.call('ping', {})).lagMs;
    figures.push(`garbage: ${v.badMessages - bad0} bad messages rejected; hypervisor lag p99 ${lag.toFixed(0)} ms`);
    await victimLoad.end();
  }, 90_000);

  it('crash, kill and leak end the guest: crashed, then the crash policy restarts it', async () => {
    await faultCase(
      { kind: 'crash' },
      (e) => {
        expect(e.to).toBe('crashed');
        expect(e.reason).toMatch(/exited with code 70: fault injected: crash/);
      },
      () => serves('victim', 30_000),
    );
    await faultCase(
      { kind: 'kill' },
      (e) => {
        expect(e.to).toBe('crashed');
        expect(e.reason).toMatch(/killed by SIGKILL/);
      },
      () => serves('victim', 30_000),
    );
    await faultCase(
      { kind: 'leak' },
      (e) => {
        expect(e.to).toBe('crashed');
        expect(e.reason).toMatch(/^oom: guest touched \d+ MiB > limit 320 MiB/);
      },
      () => serves('victim', 30_000),
    );
    expect((await info('victim')).memory.oomKills).toBe(1);
  }, 90_000);

  it('hang, pause and disconnect stop the heartbeats: the watchdog acts as configured', async () => {
    const watchdogReason = (action: string) => (e: VmEvent) => {
      expect(e.kind).toBe('watchdog');
      expect(e.reason).toMatch(
        new RegExp(
          `^watchdog: no heartbeat for \\d+ ms \\(\\d+ missed at ${HEARTBEAT_MS} ms, limit ${WATCHDOG_MS} ms\\): ${action}$`,
        ),
      );
    };
    // reset: killed, restarted by the crash policy.
    await faultCase({ kind: 'hang' }, watchdogReason('reset'), () => serves('victim', 30_000));

    // none: an event only; the pause fault is then cleared by resume and the guest serves on, same pid.
    await setWatchdog({ action: 'none' });
    const pid = (await info('victim')).pid;
    await faultCase({ kind: 'pause' }, watchdogReason('none'), async () => {
      expect((await info('victim')).state).toBe('running');
      await api.call('fault', { name: 'victim', kind: 'resume' });
      return serves('victim', 10_000);
    });
    expect((await info('victim')).pid).toBe(pid);

    // none again: the guest reconnects with a new connection after its 1.5 simulated s.
    await faultCase({ kind: 'disconnect', durationMs: 1500 }, watchdogReason('none'), () => serves('victim', 15_000));
    expect((await info('victim')).pid).toBe(pid);

    // pause: SIGSTOP and state paused; resumed, it finishes its hang and serves.
    await setWatchdog({ action: 'pause' });
    await faultCase({ kind: 'hang', durationMs: 1000 }, watchdogReason('pause'), async () => {
      await waitFor(async () => (await info('victim')).state === 'paused', 5_000, 'victim paused');
      await api.call('resume', { name: 'victim' });
      return serves('victim', 10_000);
    });

    // poweroff: stopped; a start brings it back.
    await setWatchdog({ action: 'poweroff' });
    await faultCase({ kind: 'hang' }, watchdogReason('poweroff'), async () => {
      await waitFor(async () => (await info('victim')).state === 'stopped', 5_000, 'victim stopped');
      await api.call('start', { name: 'victim' });
      return serves('victim', 30_000);
    });
    const n = await info('neighbour');
    expect(n.state).toBe('running');
    expect(n.restarts).toBe(0);
    expect(events.filter((e) => e.vm === 'neighbour' && (e.kind === 'watchdog' || e.kind === 'health'))).toEqual([]);
  }, 90_000);

  it('crash policies: restart with growing backoff until failed past maxRestarts; destroy; preserve', async () => {
    const from = events.length;
    const stateEvents = (vm: string) =>
      events.slice(from).filter((e) => e.vm === vm && (e.kind ?? 'state') === 'state');
    await api.call('define', {
      name: 'fragile',
      os: 'bsd',
      memoryMiB: 256,
      diskGiB: 0.25,
      crashPolicy: 'restart',
      maxRestarts: 2,
      restartWindowMs: 60_000,
    });
    await api.call('define', { name: 'gone', os: 'bsd', memoryMiB: 256, diskGiB: 0.25, crashPolicy: 'destroy' });
    await api.call('define', { name: 'kept', os: 'bsd', memoryMiB: 256, diskGiB: 0.25, crashPolicy: 'preserve' });
    for (const vm of ['fragile', 'gone', 'kept']) await api.call('start', { name: vm });
    const running = (vm: string) => async () => (await info(vm)).state === 'running';
    for (const vm of ['fragile', 'gone', 'kept']) await waitFor(running(vm), 30_000, `${vm} running`);

    // Two crashes are restarted (0.5 s, then 1 s of backoff); the third within the window fails it.
    const crashedAt: number[] = [];
    const restartedAt: number[] = [];
    for (let i = 0; i < 3; i++) {
      await waitFor(running('fragile'), 30_000, 'fragile running again');
      await api.call('fault', { name: 'fragile', kind: 'kill' });
      await waitFor(
        () => stateEvents('fragile').filter((e) => e.to === 'crashed').length > i,
        10_000,
        `fragile crash #${i + 1}`,
      );
      crashedAt.push(stateEvents('fragile').filter((e) => e.to === 'crashed')[i]!.t);
      if (i < 2) {
        await waitFor(
          () => stateEvents('fragile').filter((e) => e.to === 'starting').length > i + 1,
          10_000,
          `fragile restart #${i + 1}`,
        );
        restartedAt.push(stateEvents('fragile').filter((e) => e.to === 'starting')[i + 1]!.t);
      }
    }
    await waitFor(async () => (await info('fragile')).state === 'failed', 10_000, 'fragile failed');
    const failed = stateEvents('fragile').find((e) => e.to === 'failed')!;
    expect(failed.reason).toMatch(/crashed 3 times within 60000 ms \(at most 2 restarts\)/);
    const backoffs = restartedAt.map((t, i) => t - crashedAt[i]!);
    expect(backoffs[0]).toBeGreaterThanOrEqual(450);
    expect(backoffs[1]).toBeGreaterThanOrEqual(950);
    expect(backoffs[1]! - backoffs[0]!).toBeGreaterThan(300);
    expect((await info('fragile')).restarts).toBe(2);

    // destroy: powered off, not restarted; preserve: stays crashed for inspection.
    await api.call('fault', { name: 'gone', kind: 'kill' });
    await api.call('fault', { name: 'kept', kind: 'kill' });
    await waitFor(async () => (await info('gone')).state === 'stopped', 10_000, 'gone stopped');
    await waitFor(async () => (await info('kept')).state === 'crashed', 10_000, 'kept crashed');
    expect(stateEvents('gone').at(-1)!.reason).toMatch(/crash policy destroy/);
    // Nothing restarts them behind our back.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await info('gone')).state).toBe('stopped');
    expect((await info('kept')).state).toBe('crashed');
    expect((await info('neighbour')).restarts).toBe(0);
  }, 90_000);
});
