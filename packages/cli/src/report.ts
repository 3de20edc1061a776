import type { DiskIo, HostInfo, HypervisorOverhead, PoolInfo, VmInfo } from '@vmsim/shared';
import { emptyDiskIo } from '@vmsim/shared';
import type { SeriesPoint } from '@vmsim/client-gen';
import type { Scenario } from './scenario.ts';
import { durabilityHeld, renderDurability, type DurabilityFigures } from './durability-check.ts';
import { faultSlos, renderFaults, type FaultOutcome } from './chaos.ts';

/** What the load generator measured for one VM (a subset of client-gen's target summary). */
export interface MeasuredTarget {
  vm: string;
  model: 'open' | 'closed';
  sent: number;
  ok: number;
  errorCount: number;
  errors: Record<string, number>;
  timeouts: number;
  okPerS: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number; count: number };
  /** The run window by window (simulated ms since the load started). */
  series?: SeriesPoint[] | undefined;
}

export interface SloResult {
  vm: string;
  /** lostWrites: acknowledged writes of the durability check not read back intact (must be 0). */
  metric: 'p99Ms' | 'errorRate' | 'lostWrites' | 'mttdMs' | 'mttrMs' | 'faultWindowP99Ms' | 'faultWindowErrorRate';
  threshold: number;
  /** -1 for a detection or recovery that never came. */
  actual: number;
  pass: boolean;
  /** Fault SLOs: the fault the row is about ("kill web1 at 3000 ms"). */
  fault?: string;
}

export interface VmReport {
  name: string;
  app: string;
  os: string;
  vcpus: number;
  memoryMiB: number;
  shares: number;
  pid: number | null;
  state: string;
  reason: string;
  restarts: number;
  bootMs: number | null;
  /** Requests the clients sent during the run. */
  requests: number;
  /** Error replies plus timeouts. */
  errors: number;
  errorsByCode: Record<string, number>;
  timeouts: number;
  /** Hypercalls the guest made during the run. */
  hypercalls: number;
  hypercallsByOp: Record<string, number>;
  /** Simulated ms this VM's device requests waited behind other VMs' (ready/steal time), during the run. */
  queueWaitMs: number;
  throughputPerS: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  load: { model: 'open' | 'closed' } | null;
  /** The application's own figures (tick lateness, commit batches…). */
  appFigures: Record<string, number>;
  /** Latency and throughput window by window, as the clients saw them. */
  series: SeriesPoint[];
  /** The durability check's outcome, when the scenario asked for it on this (db) VM. */
  durability?: DurabilityFigures;
  /** Its virtual disks that have a volume behind them (storage pools), at the end of the run. */
  disks: DiskReport[];
}

/** One virtual disk of a VM: its volume at the end, and what it did during the load. */
export interface DiskReport {
  index: number;
  volume: string;
  pool: string;
  provisioning: 'thin' | 'thick';
  /** The template it was cloned from, if any. */
  origin: string | null;
  snapshots: number;
  virtualBytes: number;
  /** Chunks its own layers hold. */
  allocatedBytes: number;
  /** Chunks it shares with its template. */
  sharedBytes: number;
  /** Reads and writes during the load. */
  reads: number;
  writes: number;
  /** Reads plus writes per simulated second of load. */
  iops: number;
  /** Mean simulated ms per read or write during the load (0 when there were none). */
  meanLatencyMs: number;
  /** Worst simulated ms of one read or write: during the load when `maxInLoad`, else since the disk's counters started. */
  maxLatencyMs: number;
  maxInLoad: boolean;
  /** Writes during the load that found the pool full (each paused the VM). */
  poolFullStalls: number;
}

export interface RealCpu {
  cores: number;
  wallSeconds: number;
  cpuSeconds: number;
  /** Share of the whole machine (all cores) the stack used while the load ran. */
  busyPct: number;
  byProcess: Record<string, number>;
}

export interface Fidelity {
  maxEventLoopLagMs: number;
  lagBySvc: Record<string, number>;
  degraded: boolean;
  reasons: string[];
}

export interface Report {
  scenario: string;
  description: string;
  seed: number | string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  host: {
    hypervisor: string;
    scheduler: string;
    timeScale: number;
    profile: string;
    overcommit: number;
    cores: number;
    mhz: number;
    memoryMiB: number;
    /** The hypervisor type's cost model (the same mechanism, two parameter sets). */
    overhead: HypervisorOverhead;
    /** Simulated CPU ms the host side (VMM, host OS) used by the end of the run. */
    hostCpuMs: number;
  };
  verdict: 'pass' | 'fail';
  slo: SloResult[];
  vms: VmReport[];
  fidelity: Fidelity;
  realCpu: RealCpu;
  /** The scenario's timeline steps as they ran (simulated ms since the load started). */
  timeline: TimelineOutcome[];
  /** Each fault the timeline injected: detection (MTTD), recovery (MTTR), the other VMs meanwhile. */
  faults: FaultOutcome[];
  /** Whether the run involved storage: the scenario sets some up, or a VM's disk has a volume behind it. */
  storage: boolean;
  /** The storage pools at the end of the run (empty when the run did not involve storage). */
  pools: PoolInfo[];
}

/** What one timeline step did. */
export interface TimelineOutcome {
  at: number;
  action: string;
  ok: boolean;
  error?: string;
  step?: number;
  startedMs?: number;
  doneMs?: number;
}

const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;

function sumWait(v: VmInfo): number {
  return Object.values(v.hypercalls.byOp).reduce((s, f) => s + f.waitMs, 0) + v.net.waitMs;
}

const ZERO_IO: DiskIo = emptyDiskIo();

/**
 * A VM's disks with a volume behind them, their I/O counted between the snapshots taken at
 * the start (`b`) and the end (`a`) of the load over `loadMs` simulated ms. Counters that went
 * down were restarted (the VM or the hypervisor restarted): the end's figures are all the window's.
 */
export function diskReports(a: VmInfo, b: VmInfo | undefined, loadMs: number): DiskReport[] {
  const out: DiskReport[] = [];
  // Hand-made VmInfo (tests, older tools) may leave the disks out.
  for (const d of (a.disks as VmInfo['disks'] | undefined) ?? []) {
    const v = d.volume;
    if (!v) continue;
    const was = (b?.disks as VmInfo['disks'] | undefined)?.find((x) => x.index === d.index)?.volume;
    const restarted = !was || was.id !== v.id || v.io.reads + v.io.writes < was.io.reads + was.io.writes;
    const from = restarted ? ZERO_IO : was.io;
    const reads = v.io.reads - from.reads;
    const writes = v.io.writes - from.writes;
    const ops = reads + writes;
    const maxInLoad = restarted || v.io.latencyMsMax > from.latencyMsMax;
    out.push({
      index: d.index,
      volume: v.id,
      pool: v.pool,
      provisioning: v.provisioning,
      origin: v.origin,
      snapshots: v.snapshots.length,
      virtualBytes: v.virtualBytes,
      allocatedBytes: v.allocatedBytes,
      sharedBytes: v.sharedBytes,
      reads,
      writes,
      iops: loadMs > 0 ? round(ops / (loadMs / 1000), 2) : 0,
      meanLatencyMs: ops > 0 ? round((v.io.latencyMsSum - from.latencyMsSum) / ops) : 0,
      maxLatencyMs: round(v.io.latencyMsMax),
      maxInLoad,
      poolFullStalls: v.io.poolFullStalls - from.poolFullStalls,
    });
  }
  return out;
}

/** Builds the report from what the run measured, and evaluates the scenario's SLOs. */
export function buildReport(input: {
  scenario: Scenario;
  startedAt: Date;
  finishedAt: Date;
  hostInfo: HostInfo;
  before: VmInfo[];
  after: VmInfo[];
  targets: MeasuredTarget[];
  fidelity: Fidelity;
  realCpu: RealCpu;
  timeline?: TimelineOutcome[] | undefined;
  /** Durability checks by VM name. */
  durability?: ReadonlyMap<string, DurabilityFigures> | undefined;
  faults?: FaultOutcome[] | undefined;
  /** The storage pools at the end of the run. */
  pools?: PoolInfo[] | undefined;
}): Report {
  const { scenario: s, hostInfo: h } = input;
  const vms: VmReport[] = input.after.map((a) => {
    const b = input.before.find((x) => x.name === a.name);
    const t = input.targets.find((x) => x.vm === a.name);
    const byOp: Record<string, number> = {};
    for (const [op, f] of Object.entries(a.hypercalls.byOp)) byOp[op] = f.count - (b?.hypercalls.byOp[op]?.count ?? 0);
    return {
      name: a.name,
      app: a.definition.app,
      os: a.definition.os,
      vcpus: a.definition.vcpus,
      memoryMiB: a.definition.memoryMiB,
      shares: a.definition.shares,
      pid: a.pid,
      state: a.state,
      reason: a.reason,
      restarts: a.restarts,
      bootMs: a.bootMs === null ? null : round(a.bootMs, 1),
      requests: t?.sent ?? 0,
      errors: t ? t.errorCount + t.timeouts : 0,
      errorsByCode: t?.errors ?? {},
      timeouts: t?.timeouts ?? 0,
      hypercalls: a.hypercalls.total - (b?.hypercalls.total ?? 0),
      hypercallsByOp: byOp,
      queueWaitMs: round(sumWait(a) - (b ? sumWait(b) : 0)),
      throughputPerS: round(t?.okPerS ?? 0, 2),
      latencyMs: t
        ? {
            p50: round(t.latencyMs.p50),
            p90: round(t.latencyMs.p90),
            p99: round(t.latencyMs.p99),
            max: round(t.latencyMs.max),
            mean: round(t.latencyMs.mean),
          }
        : { p50: 0, p90: 0, p99: 0, max: 0, mean: 0 },
      load: t ? { model: t.model } : null,
      appFigures: a.app,
      series: t?.series ?? [],
      ...(input.durability?.has(a.name) ? { durability: input.durability.get(a.name)! } : {}),
      disks: diskReports(a, b, s.duration),
    };
  });
  const slo: SloResult[] = [];
  for (const vm of vms) {
    if (!vm.load) continue;
    const rule = { p99Ms: s.slo.p99Ms, errorRate: s.slo.errorRate, ...s.slo.perVm[vm.name] };
    if (rule.p99Ms !== undefined) {
      slo.push({
        vm: vm.name,
        metric: 'p99Ms',
        threshold: rule.p99Ms,
        actual: vm.latencyMs.p99,
        pass: vm.latencyMs.p99 <= rule.p99Ms,
      });
    }
    if (rule.errorRate !== undefined) {
      const rate = vm.requests > 0 ? vm.errors / vm.requests : 0;
      slo.push({
        vm: vm.name,
        metric: 'errorRate',
        threshold: rule.errorRate,
        actual: round(rate, 5),
        pass: rate <= rule.errorRate,
      });
    }
  }
  for (const vm of vms) {
    if (!vm.durability) continue;
    slo.push({
      vm: vm.name,
      metric: 'lostWrites',
      threshold: 0,
      actual: vm.durability.lost,
      // Corrupt or unread keys fail it too: nothing shows they were kept.
      pass: durabilityHeld(vm.durability),
    });
  }
  slo.push(...faultSlos(input.faults ?? [], s.slo));
  return {
    scenario: s.name,
    description: s.description,
    seed: s.seed,
    startedAt: input.startedAt.toISOString(),
    finishedAt: input.finishedAt.toISOString(),
    durationMs: s.duration,
    host: {
      hypervisor: h.hypervisor,
      scheduler: h.scheduler,
      timeScale: h.timeScale,
      profile: h.hostAgent.profile,
      overcommit: h.overcommit,
      cores: h.cpu.cores,
      mhz: h.cpu.mhz,
      memoryMiB: h.memory.totalMiB,
      overhead: h.overhead,
      hostCpuMs: round(h.hostCpuMs, 1),
    },
    verdict: slo.every((r) => r.pass) ? 'pass' : 'fail',
    slo,
    vms,
    fidelity: input.fidelity,
    realCpu: input.realCpu,
    timeline: input.timeline ?? [],
    faults: input.faults ?? [],
    storage: s.storage !== undefined || vms.some((v) => v.disks.length > 0),
    pools: input.pools ?? [],
  };
}

/**
 * Flags a run whose event loops lagged by a noticeable fraction of what it measured: the
 * figures then describe this machine, not the model. `lagBySvc` holds each process's worst
 * p99 event-loop lag over the run's sampling windows (wall ms); latencies are simulated ms.
 * The yardstick is the median over VMs of their median latency: a lag above a quarter of it
 * visibly moves the percentiles the report shows.
 */
export function assessFidelity(
  lagBySvc: Record<string, number>,
  timeScale: number,
  targets: MeasuredTarget[],
): Fidelity {
  const maxEventLoopLagMs = round(Math.max(0, ...Object.values(lagBySvc)), 2);
  const reasons: string[] = [];
  const p50s = targets
    .filter((t) => t.latencyMs.count > 0)
    .map((t) => t.latencyMs.p50)
    .sort((a, b) => a - b);
  const typical = p50s.length ? p50s[Math.floor((p50s.length - 1) / 2)]! : Infinity;
  const lagSim = maxEventLoopLagMs / timeScale;
  if (lagSim > 0.25 * typical) {
    const worst = Object.entries(lagBySvc).sort((a, b) => b[1] - a[1])[0]!;
    reasons.push(
      `the p99 event-loop lag of ${worst[0]} reached ${maxEventLoopLagMs} ms wall, i.e. ${round(lagSim, 2)} simulated ms at ` +
        `time scale ${timeScale}: more than a quarter of the typical median latency measured (${round(typical, 2)} ms). ` +
        `Raise timeScale or lower the load.`,
    );
  }
  return { maxEventLoopLagMs, lagBySvc, degraded: reasons.length > 0, reasons };
}

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

const BARS = '▁▂▃▄▅▆▇█';

/** A one-line chart of `xs` on a scale from 0 to `max` (a gap where a window had no reply). */
export function sparkline(xs: (number | null)[], max: number): string {
  return xs
    .map((x) =>
      x === null ? ' ' : BARS[Math.min(BARS.length - 1, Math.floor((x / (max || 1)) * (BARS.length - 1) + 0.5))]!,
    )
    .join('');
}

/**
 * Each VM's latency over the run: a chart per VM (Mermaid, which GitHub and most Markdown
 * viewers draw) and a one-line sparkline table on a common scale, so VMs compare at a glance.
 */
export function renderSeries(r: Report, heading = '## Latency over time'): string[] {
  const withSeries = r.vms.filter((v) => v.series.length > 0);
  if (withSeries.length === 0) return [];
  const window = withSeries[0]!.series.length > 1 ? withSeries[0]!.series[1]!.tMs - withSeries[0]!.series[0]!.tMs : 0;
  const L: string[] = ['', heading, ''];
  if (r.timeline.length > 0) {
    L.push(
      'Timeline: ' +
        r.timeline
          .map(
            (t) =>
              `at ${t.at / 1000} s (window ${window > 0 ? Math.floor(t.at / window) + 1 : 1}) ${t.action}${t.ok ? '' : ` — failed: ${t.error}`}`,
          )
          .join('; ') +
        '.',
      '',
    );
  }
  const p99 = (v: VmReport) => v.series.map((p) => (p.ok > 0 ? p.p99 : null));
  const top = Math.max(...withSeries.flatMap((v) => p99(v).filter((x): x is number => x !== null)), 0);
  L.push(
    `p99 latency of each ${window / 1000} s window (simulated), on one scale from 0 to ${fmt(top)} ms; a blank is a window in which the VM answered nothing.`,
    '',
    '| VM | p99 over time | worst window p99 ms | best window p99 ms |',
    '| --- | --- | ---: | ---: |',
  );
  for (const v of withSeries) {
    const xs = p99(v).filter((x): x is number => x !== null);
    L.push(
      `| ${v.name} | \`${sparkline(p99(v), top)}\` | ${xs.length ? fmt(Math.max(...xs)) : '-'} | ${xs.length ? fmt(Math.min(...xs)) : '-'} |`,
    );
  }
  for (const v of withSeries) {
    const xs = v.series.map((p) => String(round(p.tMs / 1000, 2)));
    L.push(
      '',
      '```mermaid',
      'xychart-beta',
      `  title "${v.name}: p99 and p50 latency (simulated ms)"`,
      `  x-axis "simulated s" [${xs.join(', ')}]`,
      `  y-axis "ms" 0 --> ${Math.max(1, Math.ceil(top * 1.1))}`,
      `  line [${v.series.map((p) => round(p.p99, 2)).join(', ')}]`,
      `  line [${v.series.map((p) => round(p.p50, 2)).join(', ')}]`,
      '```',
    );
  }
  return L;
}

const mib = (bytes: number) => fmt(bytes / 2 ** 20);

/** The Disks and Pools tables, when the run involved storage (pools listed, or a VM with a volume). */
export function renderStorage(r: Report): string[] {
  const disks = r.vms.flatMap((v) => v.disks.map((d) => ({ vm: v.name, ...d })));
  if (!r.storage) return [];
  const L: string[] = ['', '## Disks', ''];
  if (disks.length === 0) L.push('No VM has a disk with a volume behind it.');
  else {
    L.push(
      '| VM | disk | pool | provisioning | origin | snapshots | virtual MiB | allocated MiB | shared MiB | IOPS | mean latency ms | max latency ms | pool-full stalls |',
      '| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    );
    for (const d of disks) {
      L.push(
        `| ${d.vm} | ${d.volume} | ${d.pool} | ${d.provisioning} | ${d.origin ?? '-'} | ${d.snapshots} | ${mib(d.virtualBytes)} | ` +
          `${mib(d.allocatedBytes)} | ${mib(d.sharedBytes)} | ${fmt(d.iops)} | ${fmt(d.meanLatencyMs)} | ` +
          `${fmt(d.maxLatencyMs)}${d.maxInLoad ? '' : '*'} | ${d.poolFullStalls} |`,
      );
    }
    L.push(
      '',
      '*Virtual* is the size the guest sees; *allocated* what its own layers hold in the pool; *shared* what it still ' +
        'reads from its template. IOPS, latencies and stalls count the reads and writes of the load only (simulated ' +
        'time, from arrival at the hypervisor to completion); a stall is a write that found the pool full and paused the VM.' +
        (disks.some((d) => !d.maxInLoad)
          ? ' *: the worst was before the load (at boot), none during it was worse.'
          : ''),
    );
  }
  L.push('', '## Pools', '');
  if (r.pools.length === 0) L.push('The pools could not be listed.');
  else {
    L.push(
      '| pool | disks | chunk MiB | capacity MiB | allocated MiB | free MiB | virtual MiB | overcommit | volumes | stalled VMs | backing MiB |',
      '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |',
    );
    for (const p of r.pools) {
      L.push(
        `| ${p.id} | ${p.disks.map((d) => d.id).join(', ') || '-'} | ${mib(p.chunkBytes)} | ${mib(p.capacityBytes)} | ` +
          `${mib(p.allocatedBytes)} | ${mib(p.freeBytes)} | ${mib(p.virtualBytes)} | ${fmt(p.overcommit)} | ${p.volumes} | ` +
          `${p.stalledVms.length ? p.stalledVms.join(', ') : '-'} | ${p.backingBytes === null ? '-' : mib(p.backingBytes)} |`,
      );
    }
    L.push(
      '',
      'At the end of the run. *Virtual* sums the sizes of its volumes; above the capacity (overcommit > 1) thin volumes ' +
        "promise more than the pool holds. *Backing* is what its disks' backing files really occupy on this machine.",
    );
  }
  return L;
}

/** The report for people: what ran, what each VM did, whether the SLOs held, and why a run was degraded. */
export function renderMarkdown(r: Report): string {
  const L: string[] = [];
  L.push(`# vmsim run: ${r.scenario} — ${r.verdict === 'pass' ? 'PASS' : 'FAIL'}`, '');
  if (r.description) L.push(r.description, '');
  L.push(
    `**Host:** profile \`${r.host.profile}\` (${r.host.cores} cores at ${r.host.mhz} MHz, ${r.host.memoryMiB} MiB RAM), ` +
      `${r.host.hypervisor === 'type1' ? 'type-1 (bare-metal)' : 'type-2 (hosted)'} hypervisor, \`${r.host.scheduler}\` scheduling, ` +
      `memory overcommit ${r.host.overcommit}.`,
    '',
    `**Time:** ${r.durationMs / 1000} simulated seconds of load at time scale ${r.host.timeScale} ` +
      `(one simulated second took ${r.host.timeScale} real seconds); seed ${r.seed}. All latencies below are simulated milliseconds, ` +
      `measured by the clients from the moment each request was meant to be sent.`,
    '',
    `**Hypervisor cost model (${r.host.overhead.type}):** ${r.host.overhead.description}. Each guest CPU burst carries ` +
      `${r.host.overhead.exitCycles} cycles of VM exit and entry, and ${r.host.overhead.switchCycles} more when its core last ran ` +
      `another guest or the host side (the world switch; with more guests than cores, many bursts pay it); ` +
      `each disk or network operation costs the host side ` +
      `${r.host.overhead.ioCycles} cycles; every ${r.host.overhead.hostTaskPeriodMs} ms the host runs ` +
      `${r.host.overhead.hostTaskBaseCycles} + ${r.host.overhead.hostTaskPerGuestCycles} × guests cycles of its own tasks on the ` +
      `same cores; it keeps ${r.host.overhead.reservedMiB} MiB of RAM. The host side used ${r.host.hostCpuMs} simulated CPU ms in all.`,
    '',
    '## What each VM did',
    '',
    '| VM | app | OS | state | pid | restarts | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms | hypercalls | queue wait ms |',
    '| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const v of r.vms) {
    L.push(
      `| ${v.name} | ${v.app} | ${v.os} | ${v.state} | ${v.pid ?? '-'} | ${v.restarts} | ${v.requests} | ${v.errors} | ${fmt(v.throughputPerS)} | ` +
        `${fmt(v.latencyMs.p50)} | ${fmt(v.latencyMs.p90)} | ${fmt(v.latencyMs.p99)} | ${fmt(v.latencyMs.max)} | ${v.hypercalls} | ${fmt(v.queueWaitMs)} |`,
    );
  }
  L.push(
    '',
    'Each VM is its own guest process (its pid above). *Hypercalls* are the CPU bursts, disk reads, writes and flushes ' +
      'its guest asked the hypervisor for during the run; *queue wait* is how long those requests (and its network frames) ' +
      'waited for a device behind other VMs — the time a neighbour cost it.',
    '',
  );
  for (const v of r.vms) {
    const ops = Object.entries(v.hypercallsByOp)
      .filter(([, n]) => n > 0)
      .map(([op, n]) => `${op} ${n}`)
      .join(', ');
    const app = Object.entries(v.appFigures)
      .map(([k, x]) => `${k} ${fmt(x)}`)
      .join(', ');
    const errs = Object.entries(v.errorsByCode)
      .map(([c, n]) => `${c} ×${n}`)
      .join(', ');
    L.push(
      `- **${v.name}** (${v.os} + ${v.app}, ${v.vcpus} vCPU, ${v.memoryMiB} MiB, shares ${v.shares}): booted in ${v.bootMs ?? '-'} ms; ` +
        `hypercalls: ${ops || 'none'}${app ? `; application: ${app}` : ''}${errs ? `; errors: ${errs}` : ''}.`,
    );
  }
  L.push(...renderStorage(r));
  L.push(...renderSeries(r));
  L.push('', '## Service-level objectives', '');
  if (r.slo.length === 0) L.push('The scenario sets none.');
  else {
    L.push('| VM | objective | threshold | measured | |', '| --- | --- | ---: | ---: | --- |');
    for (const s of r.slo) {
      const what =
        s.metric === 'p99Ms'
          ? 'p99 latency (ms)'
          : s.metric === 'lostWrites'
            ? 'acknowledged writes lost'
            : 'error rate';
      L.push(`| ${s.vm} | ${what} | ${s.threshold} | ${s.actual} | ${s.pass ? 'held' : '**missed**'} |`);
    }
  }
  L.push(...renderDurability(r.vms));
  L.push(...renderFaults(r.faults));
  L.push('', '## Fidelity', '');
  L.push(
    `The worst event-loop lag seen was ${r.fidelity.maxEventLoopLagMs} ms (wall) — ` +
      Object.entries(r.fidelity.lagBySvc)
        .map(([k, x]) => `${k} ${fmt(x)}`)
        .join(', ') +
      '.',
  );
  L.push(
    r.fidelity.degraded
      ? `**This run is degraded:** ${r.fidelity.reasons.join(' ')} Its figures partly describe the machine that ran vmsim rather than the model.`
      : 'That is small against the modeled service times, so the figures describe the model, not the machine that ran it.',
  );
  L.push(
    '',
    `The stack used ${r.realCpu.cpuSeconds.toFixed(1)} CPU seconds in ${r.realCpu.wallSeconds.toFixed(1)} s of wall time: ` +
      `${r.realCpu.busyPct.toFixed(1)}% of this machine's ${r.realCpu.cores} cores.`,
    '',
  );
  return L.join('\n');
}
