import { describe, expect, it } from 'vitest';
import type { DiskIo, HostInfo, PoolInfo, VmInfo, VolumeInfo } from '@vmsim/shared';
import { assessFidelity, buildReport, diskReports, renderMarkdown, sparkline, type MeasuredTarget } from './report.ts';
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

const MiB = 2 ** 20;

function io(reads: number, writes: number, latencyMsSum: number, latencyMsMax: number, poolFullStalls = 0): DiskIo {
  return {
    reads,
    writes,
    flushes: 0,
    bytesRead: reads * 4096,
    bytesWritten: writes * 4096,
    latencyMsSum,
    latencyMsMax,
    zeroReads: 0,
    copiedBytes: 0,
    zeroedBytes: 0,
    poolFullStalls,
  };
}

function withVolume(v: VmInfo, volume: Partial<VolumeInfo> & { io: DiskIo }): VmInfo {
  const full: VolumeInfo = {
    id: v.name,
    pool: 'thin',
    provisioning: 'thin',
    virtualBytes: 2048 * MiB,
    allocatedBytes: 10 * MiB,
    sharedBytes: 30 * MiB,
    template: false,
    origin: 'golden',
    snapshots: [],
    attachedTo: v.name,
    ...volume,
  };
  return { ...v, disks: [{ index: 0, sizeBytes: full.virtualBytes, extents: [], volume: full }] };
}

const pool: PoolInfo = {
  id: 'thin',
  chunkBytes: MiB,
  disks: [{ id: 'sdb', capacityBytes: 512 * MiB, allocatedBytes: 512 * MiB }],
  capacityBytes: 512 * MiB,
  allocatedBytes: 512 * MiB,
  freeBytes: 0,
  virtualBytes: 4096 * MiB,
  overcommit: 8,
  volumes: 3,
  stalledVms: ['b'],
  backingBytes: 500 * MiB,
};

describe('storage in reports', () => {
  const storageScenario = parseScenario(
    `name: s
duration: 10s
storage: {pools: [{id: thin, disks: [sdb], diskGiB: 0.5}], templates: [{name: golden, app: db, pool: thin, diskGiB: 2}]}
vms: [{name: a, app: db, disk: {clone: golden, pool: thin}}, {name: b, app: db, disk: {clone: golden, pool: thin}}]
load: [{vm: a, model: closed, users: 2}, {vm: b, model: closed, users: 2}]
`,
    's.yaml',
  );
  const build = (before: VmInfo[], after: VmInfo[], pools?: PoolInfo[]) =>
    buildReport({
      scenario: storageScenario,
      startedAt: new Date(0),
      finishedAt: new Date(1000),
      hostInfo: host,
      before,
      after,
      targets: [target('a', 4, 0), target('b', 4, 30)],
      fidelity: assessFidelity({}, 10, []),
      realCpu: { cores: 2, wallSeconds: 10, cpuSeconds: 4, busyPct: 20, byProcess: {} },
      pools,
    });

  it('counts IOPS and latency over the load from the start and end snapshots, with allocation at the end', () => {
    const before = [
      withVolume(vm('a', 'db', 0), { io: io(100, 50, 300, 9) }),
      withVolume(vm('b', 'db', 0), { io: io(10, 0, 10, 2) }),
    ];
    const after = [
      // a: 400 reads and 600 writes in 10 s, 2000 ms of latency between them; its worst (9 ms) was at boot.
      withVolume(vm('a', 'db', 0), {
        io: io(500, 650, 2300, 9),
        allocatedBytes: 64 * MiB,
        snapshots: [{ name: 's1', bytes: MiB }],
      }),
      // b: 250 writes, the worst 40 ms, two of them found the pool full.
      withVolume(vm('b', 'db', 0), { io: io(10, 250, 1010, 40, 2), allocatedBytes: 448 * MiB, sharedBytes: 0 }),
    ];
    const r = build(before, after, [pool]);
    expect(r.vms.find((v) => v.name === 'a')!.disks).toEqual([
      {
        index: 0,
        volume: 'a',
        pool: 'thin',
        provisioning: 'thin',
        origin: 'golden',
        snapshots: 1,
        virtualBytes: 2048 * MiB,
        allocatedBytes: 64 * MiB,
        sharedBytes: 30 * MiB,
        reads: 400,
        writes: 600,
        iops: 100,
        meanLatencyMs: 2,
        maxLatencyMs: 9,
        maxInLoad: false,
        poolFullStalls: 0,
      },
    ]);
    expect(r.vms.find((v) => v.name === 'b')!.disks[0]).toMatchObject({
      reads: 0,
      writes: 250,
      iops: 25,
      meanLatencyMs: 4,
      maxLatencyMs: 40,
      maxInLoad: true,
      poolFullStalls: 2,
    });
    expect(r.pools).toEqual([pool]);
    const json = JSON.parse(JSON.stringify(r)) as typeof r;
    expect(json.pools[0]!.stalledVms).toEqual(['b']);

    const md = renderMarkdown(r);
    expect(md).toMatch(/## Disks/);
    expect(md).toContain('| a | a | thin | thin | golden | 1 | 2048 | 64.0 | 30.0 | 100 | 2.00 | 9.00* | 0 |');
    expect(md).toContain('| b | b | thin | thin | golden | 0 | 2048 | 448 | 0.00 | 25.0 | 4.00 | 40.0 | 2 |');
    expect(md).toMatch(/\*: the worst was before the load/);
    expect(md).toMatch(/## Pools/);
    expect(md).toContain('| thin | sdb | 1.00 | 512 | 512 | 0.00 | 4096 | 8.00 | 3 | b | 500 |');
  });

  it('counts from zero when the counters restarted during the load (a restarted VM)', () => {
    const before = withVolume(vm('a', 'db', 0), { io: io(1000, 1000, 4000, 5) });
    const after = withVolume(vm('a', 'db', 0), { io: io(30, 20, 100, 3) });
    expect(diskReports(after, before, 10_000)[0]).toMatchObject({
      reads: 30,
      writes: 20,
      iops: 5,
      meanLatencyMs: 2,
      maxLatencyMs: 3,
      maxInLoad: true,
    });
    // No I/O in the window: no latency to average.
    const idle = withVolume(vm('a', 'db', 0), { io: io(7, 3, 20, 4) });
    expect(diskReports(idle, idle, 10_000)[0]).toMatchObject({ iops: 0, meanLatencyMs: 0 });
  });

  it('leaves the Disks and Pools tables out when the run had no storage', () => {
    const r = report([target('a', 40, 0)]);
    expect(r.vms.every((v) => v.disks.length === 0)).toBe(true);
    expect(r.pools).toEqual([]);
    expect(r.storage).toBe(false);
    const md = renderMarkdown(r);
    expect(md).not.toMatch(/## Disks/);
    expect(md).not.toMatch(/## Pools/);
    // A scenario with storage gets the tables even when the hypervisor reported no volumes or pools.
    const bare = renderMarkdown(build([vm('a', 'db', 0)], [vm('a', 'db', 0)]));
    expect(bare).toMatch(/## Disks\n\nNo VM has a disk with a volume behind it\./);
    expect(bare).toMatch(/## Pools\n\nThe pools could not be listed\./);
  });
});
