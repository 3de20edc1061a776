import { describe, expect, it } from 'vitest';
import { VirtualClock, type FaultSpec, type StressKind } from '@vmsim/shared';
import { startTimeline, type TimelineApi, type TimelineStep } from './timeline.ts';

/** Records what the timeline asked for, when (simulated ms); `fail` makes a VM's calls fail. */
export function fakeApi(clock: VirtualClock, fail = new Set<string>()) {
  const calls: string[] = [];
  const api: TimelineApi = {
    stress: (vm: string, kind: StressKind, durationMs: number | undefined) => {
      calls.push(`${clock.now()} stress ${vm} ${kind} ${durationMs ?? '-'}`);
      return fail.has(vm) ? Promise.reject(new Error(`VM ${vm} is stopped`)) : Promise.resolve();
    },
    unstress: (vm: string) => {
      calls.push(`${clock.now()} unstress ${vm}`);
      return Promise.resolve();
    },
    fault: (vm: string, spec: FaultSpec) => {
      calls.push(`${clock.now()} fault ${vm} ${JSON.stringify(spec)}`);
      return fail.has(vm) ? Promise.reject(new Error(`VM ${vm} is stopped`)) : Promise.resolve();
    },
    unfault: (vm: string) => {
      calls.push(`${clock.now()} unfault ${vm}`);
      return Promise.resolve();
    },
  };
  return { api, calls };
}

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('scenario timeline', () => {
  it('runs each step at its time into the load, reports a failing one, and stops leftover stressors at the end', async () => {
    const clock = new VirtualClock();
    clock.runUntil(500); // the load starts at 500
    const { api, calls } = fakeApi(clock, new Set(['gone']));
    const lines: string[] = [];
    const steps: TimelineStep[] = [
      { at: 1000, stress: { vm: 'a', kind: 'cpu', for: 2000 } },
      { at: 1500, stress: { vm: 'b', kind: 'disk' } },
      { at: 2000, stress: { vm: 'gone', kind: 'cpu' } },
      { at: 2500, stress: { vm: 'c', kind: 'net-send' } },
      { at: 3000, unstress: { vm: 'c' } },
      { at: 9000, unstress: { vm: 'a' } },
    ];
    const t = startTimeline({ steps, clock, startMs: 500, durationMs: 5000, api, out: (l) => lines.push(l) });
    clock.runUntil(5500);
    await settle();
    expect(calls).toEqual([
      '1500 stress a cpu 2000',
      '2000 stress b disk -',
      '2500 stress gone cpu -',
      '3000 stress c net-send -',
      '3500 unstress c',
    ]);
    expect(t.outcomes.filter((o) => !o.ok).map((o) => [o.action, o.error])).toEqual([
      ['unstress a', 'after the end of the load'],
      ['stress gone cpu', 'VM gone is stopped'],
    ]);
    expect(lines.some((l) => l.includes('stress gone cpu FAILED: VM gone is stopped'))).toBe(true);
    await t.stop();
    // a's stressor ended by itself at 3500; b's runs until stopped; c was unstressed.
    expect(calls.slice(5)).toEqual(['5500 unstress b']);
  });

  it('runs storage steps at their time, describes them like the CLI, and fails them without a storage API', async () => {
    const clock = new VirtualClock();
    const { api, calls } = fakeApi(clock);
    const failing = new Set(['gone']);
    api.storage = {
      diskSnapshot: (disk, name) => {
        calls.push(`${clock.now()} diskSnapshot ${disk} ${name}`);
        return Promise.resolve();
      },
      diskDeleteSnapshot: (disk, name) => {
        calls.push(`${clock.now()} diskDeleteSnapshot ${disk} ${name}`);
        return Promise.resolve();
      },
      poolAddDisk: (pool, disk, sizeGiB) => {
        calls.push(`${clock.now()} poolAddDisk ${pool} ${disk} ${sizeGiB ?? '-'}`);
        return Promise.resolve();
      },
      diskDelete: (disk) => {
        calls.push(`${clock.now()} diskDelete ${disk}`);
        return failing.has(disk) ? Promise.reject(new Error(`no disk ${disk}`)) : Promise.resolve();
      },
    };
    const steps: TimelineStep[] = [
      { at: 1000, diskSnapshot: { disk: 'db1', name: 's1' } },
      { at: 2000, poolAddDisk: { pool: 'thin', disk: 'sda', sizeGiB: 1 } },
      { at: 2500, poolAddDisk: { pool: 'thin', disk: 'sdc' } },
      { at: 3000, diskDeleteSnapshot: { disk: 'db1', name: 's1' } },
      { at: 4000, diskDelete: 'gone' },
    ];
    const lines: string[] = [];
    const t = startTimeline({ steps, clock, startMs: 0, durationMs: 5000, api, out: (l) => lines.push(l) });
    clock.runUntil(1999);
    await settle();
    expect(calls).toEqual(['1000 diskSnapshot db1 s1']);
    clock.runUntil(5000);
    await settle();
    expect(calls).toEqual([
      '1000 diskSnapshot db1 s1',
      '2000 poolAddDisk thin sda 1',
      '2500 poolAddDisk thin sdc -',
      '3000 diskDeleteSnapshot db1 s1',
      '4000 diskDelete gone',
    ]);
    expect(t.outcomes.map((o) => [o.action, o.ok])).toEqual([
      ['disk snapshot db1 s1', true],
      ['pool add-disk thin sda (first 1 GiB)', true],
      ['pool add-disk thin sdc', true],
      ['disk delete-snapshot db1 s1', true],
      ['disk delete gone', false],
    ]);
    expect(lines).toContain('  timeline 4000 ms: disk delete gone FAILED: no disk gone');
    await t.stop();

    const bare = fakeApi(clock).api;
    const u = startTimeline({
      steps: [{ at: 100, diskDelete: 'x' }],
      clock,
      startMs: clock.now(),
      durationMs: 1000,
      api: bare,
      out: () => undefined,
    });
    clock.runUntil(clock.now() + 200);
    await settle();
    expect(u.outcomes[0]).toMatchObject({
      action: 'disk delete x',
      ok: false,
      error: expect.stringMatching(/no storage API/),
    });
    await u.stop();
  });

  it('cancels steps still to come when stopped early', async () => {
    const clock = new VirtualClock();
    const { api, calls } = fakeApi(clock);
    const t = startTimeline({
      steps: [{ at: 4000, stress: { vm: 'a', kind: 'memory' } }],
      clock,
      startMs: 0,
      durationMs: 5000,
      api,
      out: () => undefined,
    });
    clock.runUntil(1000);
    await t.stop();
    clock.runUntil(10_000);
    await settle();
    expect(calls).toEqual([]);
  });
});
