import { describe, expect, it } from 'vitest';
import { analyseFaults, faultSlos, faultsFromTimeline, type ChaosEvent, type RequestOutcome } from './chaos.ts';

/** A closed-loop client per VM: one request every `everyMs`, each taking `latencyMs`, failing inside `down`. */
function traffic(vm: string, endMs: number, everyMs: number, latencyMs: number, down: [number, number][] = []) {
  const out: RequestOutcome[] = [];
  for (let t = 0; t < endMs; t += everyMs) {
    const ok = !down.some(([a, b]) => t >= a && t < b);
    out.push({ vm, sentMs: t, doneMs: t + latencyMs, ok });
  }
  return out;
}

const state = (tMs: number, vm: string, to: string, reason = to): ChaosEvent => ({
  tMs,
  vm,
  kind: 'state',
  to,
  reason,
});

describe('analyseFaults', () => {
  it('times a killed guest from injection to detection (crash) and to the first request served after its restart', () => {
    const [out] = analyseFaults({
      faults: [{ vm: 'web1', kind: 'kill', atMs: 1000 }],
      events: [
        state(1002, 'web1', 'crashed', 'guest process killed by SIGKILL'),
        state(1500, 'web1', 'starting'),
        state(1800, 'web1', 'running'),
      ],
      requests: [...traffic('web1', 4000, 10, 2, [[1000, 1800]]), ...traffic('web2', 4000, 10, 3)],
      endMs: 4000,
      loadedVms: ['web1', 'web2'],
    });
    expect(out!.mttdMs).toBe(2);
    expect(out!.detectedBy).toContain('SIGKILL');
    expect(out!.recoveredMs).toBe(1802); // the request sent at 1800 returns 2 ms later
    expect(out!.mttrMs).toBe(802);
    expect(out!.neighbours).toEqual([{ vm: 'web2', requests: 81, errors: 0, errorRate: 0, p99Ms: 3 }]);
  });

  it('uses the recovered health event for a fault that only degrades the VM', () => {
    const [out] = analyseFaults({
      faults: [{ vm: 'a', kind: 'slow', atMs: 100, clearedMs: 600 }],
      events: [
        { tMs: 350, vm: 'a', kind: 'health', health: 'degraded', reason: 'hypercall service time 6× its baseline' },
        { tMs: 900, vm: 'a', kind: 'health', health: 'recovered', reason: 'back to normal' },
      ],
      requests: traffic('a', 2000, 25, 1),
      endMs: 2000,
      loadedVms: ['a'],
    });
    expect(out!.mttdMs).toBe(250);
    expect(out!.recoveredMs).toBe(901); // the request sent at 900 returns 1 ms later
    expect(out!.neighbours).toEqual([]);
  });

  it('leaves MTTD and MTTR empty and says why when nothing noticed and the VM stayed down', () => {
    const [out] = analyseFaults({
      faults: [{ vm: 'a', kind: 'pause', atMs: 100 }],
      events: [state(1100, 'a', 'stopped', 'watchdog poweroff')],
      requests: traffic('a', 2000, 50, 1, [[100, 2000]]),
      endMs: 2000,
      loadedVms: ['a', 'b'],
    });
    expect(out!.mttdMs).toBeNull();
    expect(out!.mttrMs).toBeNull();
    expect(out!.note).toContain('state stopped');
    expect(out!.windowEndMs).toBe(2000);
  });

  it('counts the watchdog as the detection and judges neighbours only inside the fault window', () => {
    const [out] = analyseFaults({
      faults: [{ vm: 'a', kind: 'hang', atMs: 1000 }],
      events: [
        { tMs: 1400, vm: 'a', kind: 'watchdog', reason: 'no heartbeat for 400 ms: reset' },
        state(1400, 'a', 'crashed'),
        state(1700, 'a', 'running'),
      ],
      requests: [...traffic('a', 3000, 100, 1, [[1000, 1700]]), ...traffic('b', 3000, 100, 5, [[1200, 1300]])],
      endMs: 3000,
      loadedVms: ['a', 'b'],
    });
    expect(out!.detectedBy).toMatch(/^watchdog/);
    expect(out!.mttdMs).toBe(400);
    expect(out!.mttrMs).toBe(701);
    const b = out!.neighbours[0]!;
    expect(b.requests).toBe(8); // sent at 1000..1700, the window ends at recovery (1701)
    expect(b.errors).toBe(1);
  });

  it('stops looking at the next fault on the same VM', () => {
    const outs = analyseFaults({
      faults: [
        { vm: 'a', kind: 'crash', atMs: 100 },
        { vm: 'a', kind: 'kill', atMs: 500 },
      ],
      events: [state(110, 'a', 'crashed'), state(600, 'a', 'crashed'), state(900, 'a', 'running')],
      requests: traffic('a', 2000, 20, 1, [[100, 900]]),
      endMs: 2000,
      loadedVms: ['a'],
    });
    expect(outs[0]!.mttrMs).toBeNull();
    expect(outs[0]!.note).toContain('next fault');
    expect(outs[1]!.mttdMs).toBe(100);
    expect(outs[1]!.mttrMs).toBe(401);
  });
});

describe('faultsFromTimeline', () => {
  it('takes injection times from the steps that ran, and lifts a fault at its `for`, an unfault or a resume', () => {
    const steps = [
      { fault: 'slow', vm: 'a', for: 500 },
      { fault: 'pause', vm: 'b' },
      { fault: 'resume', vm: 'b' },
      { fault: 'hog', vm: 'c' },
      { unfault: 'c' },
      { fault: 'kill', vm: 'a' },
      { infra: 'host-agent-power-cut' },
      { fault: 'crash', vm: 'a' },
    ];
    const outcomes = [
      { step: 0, ok: true, startedMs: 100, doneMs: 101 },
      { step: 1, ok: true, startedMs: 200, doneMs: 201 },
      { step: 2, ok: true, startedMs: 700, doneMs: 701 },
      { step: 3, ok: true, startedMs: 300, doneMs: 301 },
      { step: 4, ok: true, startedMs: 900, doneMs: 901 },
      { step: 5, ok: true, startedMs: 1000, doneMs: 1001 },
      { step: 6, ok: true, startedMs: 1500, doneMs: 2300 },
      { step: 7, ok: false, startedMs: 1600, doneMs: 1600 }, // failed: not a fault that happened
    ];
    expect(faultsFromTimeline(steps, outcomes)).toEqual([
      { vm: 'a', kind: 'slow', atMs: 100, clearedMs: 600 },
      { vm: 'b', kind: 'pause', atMs: 200, clearedMs: 700 },
      { vm: 'c', kind: 'hog', atMs: 300, clearedMs: 900 },
      { vm: 'a', kind: 'kill', atMs: 1000 },
      { vm: 'host-agent', kind: 'host-agent-power-cut', infra: true, atMs: 1500, clearedMs: 2300 },
    ]);
  });
});

describe('infrastructure faults', () => {
  it('are over when every loaded VM served a request sent after the service came back', () => {
    const [out] = analyseFaults({
      faults: [{ vm: 'host-agent', kind: 'host-agent-power-cut', infra: true, atMs: 1000, clearedMs: 1400 }],
      events: [{ tMs: 1350, vm: 'hypervisor', kind: 'service', reason: 'host-agent-restarted: boot id x' }],
      requests: [...traffic('a', 3000, 100, 2, [[1000, 1500]]), ...traffic('b', 3000, 100, 2, [[1000, 1700]])],
      endMs: 3000,
      loadedVms: ['a', 'b'],
    });
    expect(out!.mttdMs).toBe(350);
    expect(out!.detectedBy).toContain('host-agent-restarted');
    expect(out!.recoveredMs).toBe(1702); // b's first good request was sent at 1700
    expect(out!.mttrMs).toBe(702);
  });
});

describe('faultSlos', () => {
  const base = {
    vm: 'a',
    kind: 'kill',
    injectedMs: 1000,
    detectedMs: 1010,
    detectedBy: 'state: crashed',
    recoveredMs: 2000,
    mttdMs: 10,
    mttrMs: 1000,
    windowEndMs: 2000,
    neighbours: [{ vm: 'b', requests: 100, errors: 2, errorRate: 0.02, p99Ms: 40 }],
  };
  it('judges detection and recovery against the limits, and the neighbours against their own objectives', () => {
    const rows = faultSlos([base], { p99Ms: 50, errorRate: 0.01, perVm: {}, faults: { mttdMs: 100, mttrMs: 800 } });
    expect(rows.map((r) => [r.vm, r.metric, r.pass])).toEqual([
      ['a', 'mttdMs', true],
      ['a', 'mttrMs', false],
      ['b', 'faultWindowP99Ms', true],
      ['b', 'faultWindowErrorRate', false],
    ]);
    expect(rows[1]!.fault).toBe('kill a at 1000 ms');
  });
  it('fails a fault nobody detected or recovered from, and leaves infrastructure faults out of the neighbour rows', () => {
    const rows = faultSlos(
      [{ ...base, detectedMs: null, mttdMs: null, recoveredMs: null, mttrMs: null, infra: true }],
      {
        p99Ms: 50,
        perVm: { b: { p99Ms: 10 } },
        faults: { mttdMs: 100, mttrMs: 800 },
      },
    );
    expect(rows.map((r) => [r.metric, r.actual, r.pass])).toEqual([
      ['mttdMs', -1, false],
      ['mttrMs', -1, false],
    ]);
  });
});
