import { describe, expect, it } from 'vitest';
import type { HostInfo, VmInfo } from '@vmsim/shared';
import { assessFidelity, buildReport, renderMarkdown, sparkline, type MeasuredTarget } from './report.ts';
import { parseScenario } from './scenario.ts';

const scenario = parseScenario(
  `name: t
vms: [{name: a, app: web}, {name: b, app: db}, {name: idle}]
load: [{vm: a, ratePerS: 10}, {vm: b, model: closed, users: 2}]
slo: {p99Ms: 50, errorRate: 0.01, perVm: {b: {p99Ms: 5}}}
`,
  't.yaml',
);

const host: HostInfo = {
  host: 'host1',
  hypervisor: 'type1',
  scheduler: 'fair',
  timeScale: 10,
  overcommit: 1,
  memory: {
    totalMiB: 32768,
    committedMiB: 3072,
    reservedMiB: 512,
    residentMiB: 1024,
    swappedMiB: 0,
    balloonMiB: 0,
  },
  cpu: { cores: 4, mhz: 2800 },
  vms: 3,
  lagMs: 1,
  hostAgent: { bootId: 'x', profile: 'small' },
  overhead: {
    type: 'type1',
    description: 'bare metal',
    exitCycles: 1500,
    switchCycles: 4500,
    ioCycles: 6000,
    hostTaskPeriodMs: 10,
    hostTaskBaseCycles: 30000,
    hostTaskPerGuestCycles: 5000,
    reservedMiB: 512,
  },
  hostCpuMs: 12.5,
};

function vm(name: string, app: 'web' | 'db', hypercalls: number): VmInfo {
  return {
    name,
    uuid: name,
    definition: {
      name,
      app,
      os: 'linux',
      vcpus: 1,
      memoryMiB: 1024,
      diskGiB: 1,
      shares: 100,
      crashPolicy: 'restart',
      maxRestarts: 3,
      restartWindowMs: 600000,
      ackBeforeFlush: false,
      watchdog: { action: 'reset' },
    },
    state: 'running',
    reason: 'booted',
    pid: 100,
    restarts: 0,
    definedAt: 0,
    startedAt: 0,
    bootMs: 800,
    lastHeartbeatAgoMs: 10,
    guestLagMs: 2,
    disks: [],
    hypercalls: {
      total: hypercalls,
      rejected: 0,
      byOp: { cpu: { count: hypercalls, errors: 0, waitMs: hypercalls / 10, bytes: 0 } },
    },
    app: { served: hypercalls },
    net: { requests: 0, replies: 0, dropped: 0, rxBytes: 0, txBytes: 0, waitMs: 1 },
    memory: {
      sizeMiB: 1024,
      limitMiB: 1024,
      usedMiB: 320,
      residentMiB: 320,
      swappedMiB: 0,
      balloonMiB: 0,
      majorFaults: 0,
      oomKills: 0,
    },
    stress: null,
    fault: null,
    health: 'ok',
    badMessages: 0,
  };
}

const target = (vmName: string, p99: number, errors: number): MeasuredTarget => ({
  vm: vmName,
  model: 'open',
  sent: 1000,
  ok: 1000 - errors,
  errorCount: errors,
  errors: errors ? { VMSIM_ERR_TIMEOUT: errors } : {},
  timeouts: 0,
  okPerS: 10,
  latencyMs: { p50: 2, p90: 5, p99: p99, max: p99 * 2, mean: 3, count: 1000 - errors },
});

function report(targets: MeasuredTarget[], lag = { hypervisor: 1 }) {
  return buildReport({
    scenario,
    startedAt: new Date(0),
    finishedAt: new Date(1000),
    hostInfo: host,
    before: [vm('a', 'web', 100), vm('b', 'db', 50), vm('idle', 'web', 5)],
    after: [vm('a', 'web', 600), vm('b', 'db', 250), vm('idle', 'web', 5)],
    targets,
    fidelity: assessFidelity(lag, 10, targets),
    realCpu: { cores: 2, wallSeconds: 10, cpuSeconds: 4, busyPct: 20, byProcess: {} },
  });
}

describe('reports', () => {
  it('passes when every objective holds and counts hypercalls made during the run', () => {
    const r = report([target('a', 40, 0), target('b', 4, 5)]);
    expect(r.verdict).toBe('pass');
    expect(r.vms.find((v) => v.name === 'a')).toMatchObject({
      hypercalls: 500,
      requests: 1000,
      errors: 0,
      queueWaitMs: 50,
    });
    expect(r.vms.find((v) => v.name === 'idle')!.load).toBeNull();
    expect(r.slo.filter((x) => x.vm === 'idle')).toHaveLength(0);
    expect(r.host).toMatchObject({ hypervisor: 'type1', scheduler: 'fair', timeScale: 10 });
  });

  it('fails on a per-VM p99 objective and on the error rate', () => {
    const slow = report([target('a', 40, 0), target('b', 6, 0)]);
    expect(slow.verdict).toBe('fail');
    expect(slow.slo.find((x) => !x.pass)).toMatchObject({ vm: 'b', metric: 'p99Ms', threshold: 5, actual: 6 });
    const erring = report([target('a', 40, 20), target('b', 4, 0)]);
    expect(erring.slo.find((x) => !x.pass)).toMatchObject({ vm: 'a', metric: 'errorRate', actual: 0.02 });
  });

  it('flags a run whose event-loop lag is large against what it measured, and says why', () => {
    expect(report([target('a', 40, 0)]).fidelity.degraded).toBe(false);
    const r = report([target('a', 40, 0)], { hypervisor: 30 } as never);
    expect(r.fidelity.degraded).toBe(true);
    expect(r.fidelity.reasons[0]).toMatch(/lag of hypervisor/);
    expect(renderMarkdown(r)).toMatch(/This run is degraded/);
  });

  it("charts each VM's latency window by window on one scale, with gaps where it answered nothing", () => {
    const point = (tMs: number, p99: number, ok = 10) => ({
      tMs,
      ok,
      errors: 0,
      okPerS: ok,
      p50: p99 / 2,
      p99,
      max: p99,
    });
    const calm = [0, 500, 1000, 1500].map((t) => point(t, 2));
    const hit = [point(0, 2), point(500, 2), point(1000, 0, 0), point(1500, 16)];
    const r = report([
      { ...target('a', 40, 0), series: calm },
      { ...target('b', 4, 0), series: hit },
    ]);
    expect(r.vms.find((v) => v.name === 'b')!.series).toEqual(hit);
    const md = renderMarkdown(r);
    expect(md).toMatch(/## Latency over time/);
    expect(md).toContain('| a | `▂▂▂▂` | 2.00 | 2.00 |');
    expect(md).toContain('| b | `▂▂ █` | 16.0 | 2.00 |');
    expect(md).toMatch(/```mermaid\nxychart-beta\n {2}title "b: p99 and p50 latency/);
    expect(sparkline([0, 4, null, 8], 8)).toBe('▁▅ █');
  });

  it('renders a readable markdown report', () => {
    const md = renderMarkdown(report([target('a', 40, 0), target('b', 6, 0)]));
    expect(md).toMatch(/^# vmsim run: t — FAIL/);
    expect(md).toMatch(/\| a \| web \| linux \| running \|/);
    expect(md).toMatch(/\*\*missed\*\*/);
    expect(md).toMatch(/20\.0% of this machine's 2 cores/);
    expect(md).toMatch(/Hypervisor cost model \(type1\)/);
    expect(md).toMatch(/4500 more when its core last ran another guest/);
  });
});
