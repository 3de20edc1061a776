import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  ManagementClient,
  RandomStreams,
  RealClock,
  namespace,
  waitFor,
  type NatsConnection,
  type VmInfo,
} from '@vmsim/shared';
import { LoadRunner, createBusSender } from '@vmsim/client-gen';
import { EventLog } from './helpers/events.ts';
import { startTestStack, type TestStack } from './helpers/stack.ts';

const TIME_SCALE = 4;

/** The isolation benchmark's stressors, started and stopped on demand in a running VM. */
describe('stressors', () => {
  let t: TestStack;
  let nc: NatsConnection;
  let api: ManagementClient;
  let ns: string;
  let events: EventLog;
  const info = (name: string): Promise<VmInfo> => api.call('info', { name });

  beforeAll(async () => {
    t = await startTestStack({ timeScale: TIME_SCALE, env: { VMSIM_HEARTBEAT_MS: '200' } });
    ({ nc, api, ns } = t);
    events = new EventLog(nc, ns, 'host1');
    await api.call('define', { name: 'web1', memoryMiB: 512, diskGiB: 0.25, os: 'bsd' });
    // As many vCPUs as the host has cores, and a disk with a scratch area for the disk stressor.
    await api.call('define', { name: 'noisy', memoryMiB: 512, diskGiB: 1, os: 'bsd', vcpus: 4 });
    await api.call('define', { name: 'idle', memoryMiB: 256, diskGiB: 0.25, os: 'bsd' });
    await api.call('start', { name: 'web1' });
    await api.call('start', { name: 'noisy' });
    await waitFor(
      async () => (await info('web1')).state === 'running' && (await info('noisy')).state === 'running',
      60_000,
      'web1 and noisy running',
    );
    await api.call('policy', { policy: 'fifo' });
  });

  afterAll(async () => {
    await t?.stop();
  });

  /** Closed-model load on web1 for a short while; returns its CPU queue wait per burst (simulated ms). */
  async function web1CpuWaitPerCall(seed: string): Promise<{ waitPerCall: number; calls: number }> {
    const before = (await info('web1')).hypercalls.byOp['cpu']!;
    const s = await new LoadRunner({
      clock: new RealClock(TIME_SCALE),
      streams: new RandomStreams(seed),
      targets: [{ vm: 'web1', app: 'web', model: 'closed', users: 2, thinkMs: 2, mix: { GET: 1, POST: 0 } }],
      durationMs: 400,
      timeoutMs: 10_000,
      send: createBusSender(nc, namespace(ns), 'host1', { timeoutMs: 30_000 }),
    }).run();
    expect(s.targets[0]!.errorCount + s.targets[0]!.timeouts).toBe(0);
    const after = (await info('web1')).hypercalls.byOp['cpu']!;
    const calls = after.count - before.count;
    return { waitPerCall: (after.waitMs - before.waitMs) / calls, calls };
  }

  it('a cpu stressor takes every core it can: under fifo its neighbour waits; unstress ends it', async () => {
    const quiet = await web1CpuWaitPerCall('a');
    expect(quiet.calls).toBeGreaterThan(50);

    const started = await api.call('stress', { name: 'noisy', kind: 'cpu' });
    expect(started.stress).toBe('cpu');
    await waitFor(async () => ((await info('noisy')).app['stress.ops'] ?? 0) > 200, 30_000, 'noisy stress.ops > 200');
    const n = await info('noisy');
    expect(n.stress).toBe('cpu');
    expect(n.app['stress.running']).toBe(1);
    expect(n.app['stress.errors']).toBe(0);
    // Eight bursts per vCPU: its 4 vCPUs busy and a deep run queue waiting.
    expect(n.app['stress.maxInFlight']).toBe(32);

    const stressed = await web1CpuWaitPerCall('b');
    // Each of web1's bursts queues behind the stressor's backlog of 0.5 ms bursts.
    expect(stressed.waitPerCall).toBeGreaterThan(0.2);
    expect(stressed.waitPerCall).toBeGreaterThan(5 * quiet.waitPerCall);
    // Fair queueing puts web1's burst ahead of the backlog: it waits for the next free core only.
    await api.call('policy', { policy: 'fair' });
    const fair = await web1CpuWaitPerCall('b2');
    await api.call('policy', { policy: 'fifo' });
    expect(fair.waitPerCall).toBeLessThan(stressed.waitPerCall * 0.75);

    const stopped = await api.call('unstress', { name: 'noisy' });
    expect(stopped.stress).toBeNull();
    await waitFor(
      async () => {
        const a = (await info('noisy')).app;
        return a['stress.running'] === 0 && a['stress.inFlight'] === 0;
      },
      30_000,
      'the cpu stressor stopped',
    );
    const bursts = (await info('noisy')).hypercalls.byOp['cpu']!.count;
    const after = await web1CpuWaitPerCall('c');
    expect((await info('noisy')).hypercalls.byOp['cpu']!.count).toBe(bursts);
    expect(after.waitPerCall).toBeLessThan(stressed.waitPerCall / 5);
    console.log(
      `web1 cpu wait per burst: ${quiet.waitPerCall.toFixed(4)} ms quiet under fifo (${quiet.calls} bursts), ` +
        `${stressed.waitPerCall.toFixed(4)} ms beside the cpu stressor under fifo (${stressed.calls}), ` +
        `${fair.waitPerCall.toFixed(4)} ms under fair (${fair.calls}), ${after.waitPerCall.toFixed(4)} ms after unstress (${after.calls})`,
    );

    const reasons = events.events.filter((e) => e.vm === 'noisy' && e.kind === 'stress').map((e) => e.reason);
    expect(reasons).toEqual(['stressor cpu started until unstressed', 'stressor cpu stopped: unstress requested']);
  });

  it('net-send and net-recv move bytes through the host NIC; a new stressor replaces the old one', async () => {
    const before = (await info('noisy')).net;
    await api.call('stress', { name: 'noisy', kind: 'net-send' });
    await waitFor(
      async () => (await info('noisy')).net.txBytes - before.txBytes > 20 * 1024 * 1024,
      30_000,
      'noisy sends 20 MiB',
    );
    const replaced = await api.call('stress', { name: 'noisy', kind: 'net-recv' });
    expect(replaced.stress).toBe('net-recv');
    await waitFor(
      async () => (await info('noisy')).net.rxBytes - before.rxBytes > 20 * 1024 * 1024,
      30_000,
      'noisy receives 20 MiB',
    );
    await api.call('unstress', { name: 'noisy' });
    const n = await info('noisy');
    expect(n.hypercalls.byOp['net.send']!.bytes).toBeGreaterThan(20 * 1024 * 1024);
    expect(n.hypercalls.byOp['net.recv']!.bytes).toBeGreaterThan(20 * 1024 * 1024);
    expect(n.hypercalls.byOp['net.send']!.errors + n.hypercalls.byOp['net.recv']!.errors).toBe(0);
    expect(
      events.events.some((e) => e.reason === 'stressor net-recv started until unstressed, replacing net-send'),
    ).toBe(true);
  });

  it('disk reads and writes many large blocks; a stressor given a duration ends by itself', async () => {
    const ops = (v: VmInfo) => ({
      reads: v.hypercalls.byOp['disk.read']?.count ?? 0,
      writes: v.hypercalls.byOp['disk.write']?.count ?? 0,
    });
    const before = ops(await info('noisy'));
    const started = await api.call('stress', { name: 'noisy', kind: 'disk', durationMs: 400 });
    expect(started.stress).toBe('disk');
    await waitFor(async () => (await info('noisy')).stress === null, 30_000, 'the disk stressor ends after 400 ms');
    await waitFor(
      async () => (await info('noisy')).app['stress.running'] === 0,
      30_000,
      'the guest stops its disk stressor',
    );
    const n = await info('noisy');
    const after = ops(n);
    expect(after.reads - before.reads).toBeGreaterThan(20);
    expect(after.writes - before.writes).toBeGreaterThan(20);
    expect(n.app['stress.elapsedMs']).toBeGreaterThanOrEqual(399);
    expect(n.app['stress.elapsedMs']).toBeLessThan(600);
    expect(n.app['stress.errors']).toBe(0);
    expect(
      events.events.some((e) => e.vm === 'noisy' && e.reason === 'stressor disk stopped: its 400 simulated ms elapsed'),
    ).toBe(true);
  });

  it('memory fills the guest RAM and churns; fork-bomb forks until allocation fails; both give it back', async () => {
    // What the OS and the web server touched at boot.
    const booted = (await info('noisy')).memory.usedMiB;
    await api.call('stress', { name: 'noisy', kind: 'memory', durationMs: 300 });
    await waitFor(
      async () => ((await info('noisy')).app['stress.refused'] ?? 0) > 0,
      30_000,
      'the memory stressor hits the VM size',
    );
    const full = await info('noisy');
    // Full but for less than a chunk, or one chunk given back to touch again.
    expect(full.memory.usedMiB).toBeGreaterThan(512 - 2 * 64);
    expect(full.memory.usedMiB).toBeLessThanOrEqual(512);
    expect(full.app['stress.heldMiB']).toBeGreaterThan(512 - booted - 2 * 64);
    expect(full.app['stress.errors']).toBe(0);
    await waitFor(async () => (await info('noisy')).app['stress.running'] === 0, 30_000, 'the memory stressor ends');
    const freed = await info('noisy');
    expect(freed.app['stress.heldMiB']).toBe(0);
    expect(freed.memory.usedMiB).toBe(booted);

    await api.call('stress', { name: 'noisy', kind: 'fork-bomb', durationMs: 600 });
    // The memory stressor's figures stay until the fork bomb's first heartbeat: it has processes.
    await waitFor(
      async () => {
        const a = (await info('noisy')).app;
        return (a['stress.processes'] ?? 0) > 0 && (a['stress.refused'] ?? 0) > 0;
      },
      30_000,
      'the fork bomb runs out of memory',
    );
    const bombed = await info('noisy');
    expect(bombed.app['stress.processes']).toBeGreaterThanOrEqual(64);
    expect(bombed.app['stress.errors']).toBe(0);
    expect(bombed.state).toBe('running');
    await waitFor(async () => (await info('noisy')).app['stress.running'] === 0, 30_000, 'the fork bomb ends');
    const after = await info('noisy');
    expect(after.app['stress.heldMiB']).toBe(0);
    expect(after.memory.usedMiB).toBe(booted);
  });

  it('refuses to stress a VM that is not running', async () => {
    await expect(api.call('stress', { name: 'idle', kind: 'cpu' })).rejects.toMatchObject({
      code: ErrorCode.BAD_STATE,
    });
  });
});
