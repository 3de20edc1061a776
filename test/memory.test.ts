import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ErrorCode,
  HypercallReply,
  ManagementClient,
  RandomStreams,
  RealClock,
  decode,
  encode,
  hypercallSubject,
  namespace,
  waitFor,
  type HypercallReply as Reply,
  type NatsConnection,
  type VmInfo,
} from '@vmsim/shared';
import { OpenLoop, createBusSender } from '@vmsim/client-gen';
import { EventLog } from './helpers/events.ts';
import { startTestStack, type TestStack } from './helpers/stack.ts';

const TIME_SCALE = 2;

/**
 * Guest memory on a host with 1 GiB of RAM for guests (the small profile, shrunk), memory
 * overcommit 2: limits and OOM kills, then a hog that makes the host swap.
 */
describe('guest memory: limits, OOM kills and swap', () => {
  let t: TestStack;
  let nc: NatsConnection;
  let api: ManagementClient;
  let events: EventLog;
  let ns: string;

  beforeAll(async () => {
    const small = fileURLToPath(new URL('../services/host-agent/profiles/small.json', import.meta.url));
    const tiny = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vmsim-mem-')), 'tiny.json');
    fs.writeFileSync(
      tiny,
      JSON.stringify({ ...JSON.parse(fs.readFileSync(small, 'utf8')), name: 'tiny', memoryGiB: 1 }),
    );
    t = await startTestStack({
      timeScale: TIME_SCALE,
      env: {
        VMSIM_PROFILE: tiny,
        VMSIM_OVERCOMMIT: '2',
        VMSIM_RESERVED_MIB: '0',
        VMSIM_HEARTBEAT_MS: '250',
        VMSIM_WATCHDOG_MS: '5000',
      },
      logLevel: 'info',
    });
    ({ nc, api, ns } = t);
    events = new EventLog(nc, ns, 'host1');
    // bsd + web touch 96 + 64 = 160 MiB at boot.
    for (const [name, extra] of [
      ['web1', {}],
      ['web2', { memLimitMiB: 128 }],
      ['web3', {}],
      ['hog', { memoryMiB: 1024 }],
    ] as const) {
      await api.call('define', { name, app: 'web', os: 'bsd', memoryMiB: 256, diskGiB: 0.25, ...extra });
    }
  });

  afterAll(async () => {
    await t?.stop();
  });

  const info = (name: string): Promise<VmInfo> => api.call('info', { name });

  /** A hypercall as the VM's guest would make it. */
  async function hypercall(vm: string, hc: unknown): Promise<Reply> {
    const m = await nc.request(hypercallSubject(namespace(ns), vm), encode(hc), { timeout: 30_000 });
    return decode(m.data, HypercallReply, 'hypercall reply');
  }

  /** Client requests to web1 through the virtual switch: how many were answered. */
  async function serve(vm: string, durationMs: number): Promise<{ ok: number; failed: number }> {
    const clock = new RealClock(TIME_SCALE);
    const s = await new OpenLoop({
      clock,
      rng: new RandomStreams('mem').stream(`${vm}-${durationMs}-${Date.now()}`),
      targets: [{ vm, ratePerS: 40, arrival: 'poisson', mix: { GET: 9, POST: 1 } }],
      durationMs,
      timeoutMs: 10_000,
      send: createBusSender(nc, namespace(ns), 'host1', { timeoutMs: clock.toWall(10_000) + 1_000 }),
    }).run();
    const x = s.targets[0]!;
    return { ok: x.ok, failed: x.errorCount + x.timeouts };
  }

  it('a guest touches its working set at boot, and vm info shows it backed', async () => {
    await api.call('start', { name: 'web1' });
    await events.waitFor('web1', 'running', 60_000);
    const m = (await info('web1')).memory;
    expect(m).toMatchObject({ sizeMiB: 256, limitMiB: 256, usedMiB: 160, residentMiB: 160, swappedMiB: 0 });
    expect((await api.call('ping', {})).memory.residentMiB).toBe(160);
  });

  it('a guest whose limit is below what it touches at boot is OOM-killed, alone', async () => {
    await api.call('start', { name: 'web2' });
    const crashed = await events.waitFor('web2', 'crashed', 60_000);
    expect(crashed.reason).toMatch(/^oom: guest touched 160 MiB > limit 128 MiB/);
    expect((await info('web2')).memory.oomKills).toBe(1);
    // Its pages are the host's again once the killed process is gone.
    await waitFor(async () => (await info('web2')).memory.residentMiB === 0, 10_000, 'web2 RAM freed');
    expect((await info('web2')).memory).toMatchObject({ oomKills: 1, usedMiB: 0, swappedMiB: 0 });
    expect((await info('web1')).state).toBe('running');
    const r = await serve('web1', 1_000);
    expect(r.ok).toBeGreaterThan(10);
    expect(r.failed).toBe(0);
  });

  it('tune: memory is hot-plugged, not shrunk below use, and a limit lowered below use OOM-kills the guest', async () => {
    await api.call('start', { name: 'web3' });
    await events.waitFor('web3', 'running', 60_000);
    await expect(api.call('tune', { name: 'web3', memoryMiB: 128 })).rejects.toMatchObject({
      code: ErrorCode.BAD_STATE,
      message: expect.stringMatching(/uses 160 MiB/),
    });
    expect((await api.call('tune', { name: 'web3', memoryMiB: 320 })).memory.sizeMiB).toBe(320);
    const tuned = await api.call('tune', { name: 'web3', memLimitMiB: 100 });
    expect(tuned.state).toBe('crashed');
    const crashed = await events.waitFor('web3', 'crashed', 10_000);
    expect(crashed.reason).toMatch(/oom: memory limit lowered to 100 MiB .*used 160 MiB > limit 100 MiB/);
    expect(tuned.memory.oomKills).toBe(1);
    expect((await info('web1')).state).toBe('running');
    // Its RAM is the host's again once the killed process is gone.
    await waitFor(async () => (await api.call('ping', {})).memory.residentMiB === 160, 10_000, 'web3 RAM freed');
  });

  it('overcommitted: under fair the hog swaps its own pages; under fifo its neighbour is swapped and faults', async () => {
    await api.call('start', { name: 'hog' });
    await events.waitFor('hog', 'running', 60_000);
    // web1 160 + hog 160 + 700 = 1020 of 1024 MiB: still no pressure.
    const first = await hypercall('hog', { op: 'mem.alloc', mib: 700 });
    expect(first).toMatchObject({ ok: true, serviceMs: 0 });
    // 96 MiB over: the hog is far above its fair share (819 of 1024 MiB), web1 below (205).
    const second = await hypercall('hog', { op: 'mem.alloc', mib: 100 });
    expect(second.ok).toBe(true);
    // The hog paid for the swap-out on disk before its call was answered (direct reclaim).
    expect(second.ok && second.serviceMs).toBeGreaterThan(0);
    let hog = await info('hog');
    let web1 = await info('web1');
    expect(hog.memory).toMatchObject({ usedMiB: 960, swappedMiB: 96, residentMiB: 864 });
    expect(web1.memory.swappedMiB).toBe(0);
    expect(hog.hypercalls.byOp['swap.out']).toMatchObject({ count: 96, bytes: 96 * 1024 * 1024 });
    expect((await api.call('ping', {})).memory).toMatchObject({ residentMiB: 1024, swappedMiB: 96 });

    await api.call('policy', { policy: 'fifo' });
    const third = await hypercall('hog', { op: 'mem.alloc', mib: 50 });
    expect(third.ok).toBe(true);
    web1 = await info('web1');
    hog = await info('hog');
    // One global LRU: the hog's pages are the newest, web1's go.
    expect(web1.memory).toMatchObject({ usedMiB: 160, swappedMiB: 50, residentMiB: 110 });
    expect(hog.memory.swappedMiB).toBe(96);
    expect(hog.hypercalls.byOp['swap.out']!.count).toBe(96 + 50);
    const swapped = events.events.find((e) => e.vm === 'web1' && e.kind === 'memory');
    expect(swapped?.reason).toMatch(/50 MiB of its pages swapped out for hog's allocation of 50 MiB \(policy fifo/);

    // web1 still serves, but its CPU bursts now fault pages back in from swap first.
    await waitFor(
      async () => {
        const r = await serve('web1', 500);
        expect(r.failed).toBe(0);
        return (await info('web1')).memory.majorFaults > 0;
      },
      60_000,
      'web1 takes a major fault',
    );
    // Faults are many: they are published as one memory event per VM per second.
    await waitFor(
      () => events.events.some((e) => e.vm === 'web1' && e.kind === 'memory' && /major faults read/.test(e.reason)),
      10_000,
      'a major-fault event of web1',
    );
    web1 = await info('web1');
    expect(web1.hypercalls.byOp['swap.in']!.count).toBeGreaterThan(0);
    expect(web1.memory.swappedMiB).toBeLessThan(50);
    const host = await api.call('ping', {});
    expect(host.memory.residentMiB).toBeLessThanOrEqual(1024);
    expect(host.memory.swappedMiB).toBe(146);
  });
});
