import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  ManagementClient,
  RandomStreams,
  RealClock,
  namespace,
  waitFor,
  type NatsConnection,
} from '@vmsim/shared';
import { LoadRunner, createBusSender } from '@vmsim/client-gen';
import { startTestStack, type TestStack } from './helpers/stack.ts';

const TIME_SCALE = 2;

/** Resource controls changed while a VM runs take effect on its next requests. */
describe('tuning a running VM', () => {
  let t: TestStack;
  let nc: NatsConnection;
  let api: ManagementClient;
  let ns: string;

  beforeAll(async () => {
    t = await startTestStack({ timeScale: TIME_SCALE });
    ({ nc, api, ns } = t);
    await api.call('define', { name: 'web1', memoryMiB: 512, diskGiB: 0.25, os: 'bsd' });
    await api.call('start', { name: 'web1' });
    await waitFor(async () => (await api.call('info', { name: 'web1' })).state === 'running', 60_000, 'web1 running');
  });

  afterAll(async () => {
    await t?.stop();
  });

  /** Closed-model throughput of web1 (ok per simulated second) and the CPU queue wait it saw. */
  async function measure(seed: string): Promise<{ okPerS: number; cpuWaitMs: number }> {
    const before = (await api.call('info', { name: 'web1' })).hypercalls.byOp['cpu']!.waitMs;
    const clock = new RealClock(TIME_SCALE);
    const s = await new LoadRunner({
      clock,
      streams: new RandomStreams(seed),
      targets: [{ vm: 'web1', app: 'web', model: 'closed', users: 4, thinkMs: 1, mix: { GET: 1, POST: 0 } }],
      durationMs: 1_500,
      timeoutMs: 10_000,
      send: createBusSender(nc, namespace(ns), 'host1', { timeoutMs: 30_000 }),
    }).run();
    const t = s.targets[0]!;
    expect(t.errorCount + t.timeouts).toBe(0);
    const after = (await api.call('info', { name: 'web1' })).hypercalls.byOp['cpu']!.waitMs;
    return { okPerS: t.okPerS, cpuWaitMs: after - before };
  }

  it('a CPU cap set on a running VM throttles it, and lifting it restores its throughput', async () => {
    const free = await measure('a');
    const tuned = await api.call('tune', { name: 'web1', cpuCapPct: 1 });
    expect(tuned.definition.cpuCapPct).toBe(1);
    const capped = await measure('b');
    // Each GET needs ≈0.06-0.1 ms of CPU: 1% of a core allows at most ~100-170 per second.
    expect(capped.okPerS).toBeLessThan(free.okPerS / 2);
    expect(capped.okPerS).toBeLessThan(200);
    expect(capped.cpuWaitMs).toBeGreaterThan(free.cpuWaitMs);
    await api.call('tune', { name: 'web1', cpuCapPct: null });
    const lifted = await measure('c');
    expect(lifted.okPerS).toBeGreaterThan(capped.okPerS * 2);
  });

  it('refuses CPU reservations the VM cannot use or the host cannot keep, naming the figures', async () => {
    // web1 has one vCPU.
    await expect(api.call('tune', { name: 'web1', cpuReservationPct: 150 })).rejects.toMatchObject({
      code: ErrorCode.OUT_OF_RANGE,
      message: expect.stringMatching(/at most 100%/),
    });
    expect((await api.call('tune', { name: 'web1', cpuReservationPct: 50 })).definition.cpuReservationPct).toBe(50);
    // A stopped VM may hold any reservation its vCPUs allow; starting it must fit the cores.
    await api.call('define', {
      name: 'big',
      memoryMiB: 256,
      diskGiB: 0.125,
      os: 'bsd',
      vcpus: 4,
      cpuReservationPct: 380,
    });
    await expect(api.call('start', { name: 'big' })).rejects.toMatchObject({
      code: ErrorCode.NO_CPU,
      message: expect.stringMatching(
        /VM big wants a CPU reservation of 380% but only 349\.\d% of 399\.\d% reservable are free \(4 cores × 100% − 0\.\d% .*running VMs hold 50%\)/,
      ),
    });
    expect((await api.call('info', { name: 'big' })).state).toBe('defined');
    await api.call('undefine', { name: 'big' });
    await api.call('tune', { name: 'web1', cpuReservationPct: null });
  });
});
