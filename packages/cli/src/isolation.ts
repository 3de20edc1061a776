import path from 'node:path';
import { connect } from '@nats-io/transport-node';
import {
  ManagementClient,
  RandomStreams,
  RealClock,
  STRESS_KINDS,
  namespace,
  waitFor,
  type NatsConnection,
  type StressKind,
  type VmInfo,
} from '@vmsim/shared';
import { LoadRunner, createBusSender, type LoadTarget, type TargetSummary } from '@vmsim/client-gen';
import { fmtMs, table } from './format.ts';
import { startStack } from './stack.ts';

export const ISOLATION_POLICIES = ['fifo', 'fair'] as const;
export type IsolationPolicy = (typeof ISOLATION_POLICIES)[number];

/** The benchmark's VMs: three well-behaved and one that misbehaves, all alike. */
export const WELL_BEHAVED = ['good1', 'good2', 'good3'] as const;
export const MISBEHAVING = 'bad';
const ALL_VMS = [...WELL_BEHAVED, MISBEHAVING];

/**
 * The well-behaved load: closed-model users asking for a dynamic page (≈1.06 ms of one
 * 2.8 GHz core to render, a 16 KiB read from the virtual disk, 16 KiB on the wire) with
 * 20 ms of think time. Twelve users make ≈ 560 requests/s, about 60% of a VM's fair share
 * of the CPU (4 cores for 4 VMs), and a few percent of the disk and the NIC.
 */
export const WORKLOAD = { users: 12, thinkMs: 20, path: '/api/items', requestCpuMs: 1.06 } as const;

/** What the Isolation Benchmark Suite reported for Xen (Matthews et al., 2007): at most 1.7%, the disk test's 1.67%. */
export const PAPER_XEN_WORST_PCT: Record<StressKind, string> = {
  cpu: '≤1.7',
  memory: '≤1.7',
  'fork-bomb': '≤1.7',
  disk: '1.67',
  'net-send': '≤1.7',
  'net-recv': '≤1.7',
};

export interface IsolationOptions {
  policies: IsolationPolicy[];
  stresses: StressKind[];
  /** Runs per cell; the table shows their median. */
  runs: number;
  /** Simulated ms each measurement lasts. */
  durationMs: number;
  /** Simulated ms a stressor runs before the measurement starts (it reaches full demand). */
  warmupMs: number;
  timeScale: number;
  home: string;
  natsUrl: string | undefined;
  seed: number;
  out: (line: string) => void;
}

/** One measurement: what each VM's clients saw. */
export interface Measurement {
  perVm: Record<string, { okPerS: number; p99Ms: number; ok: number; errors: number }>;
  /** The misbehaving VM crashed, was killed or restarted during the window. */
  misbehavingDied: boolean;
  /**
   * How late the load generator sent its requests (mean over VMs, simulated ms) and the
   * hypervisor's p99 event-loop lag (wall ms): when this machine, not the model, is the
   * bottleneck, they grow, and fewer requests go out whatever the isolation.
   */
  clientLagMs: number;
  hypervisorLagMs: number;
}

export interface IsolationRow {
  policy: IsolationPolicy;
  stress: StressKind;
  /** Throughput the well-behaved VMs lost, percent of their baseline (mean over them; median over runs). */
  wellBehavedDegradationPct: number;
  /** Throughput the misbehaving VM lost; null = DNR (it died or answered nothing). */
  misbehavingDegradationPct: number | null;
  /** Median over the well-behaved VMs of their p99, simulated ms (median over runs). */
  baselineP99Ms: number;
  stressedP99Ms: number;
  wellBehavedP99DegradationPct: number;
  baselineThroughputPerS: number;
  stressedThroughputPerS: number;
  /** Median over runs of the stressed measurement's client send lag (simulated ms) and hypervisor lag (wall ms). */
  clientLagMs: number;
  hypervisorLagMs: number;
  runs: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

/** One cell of one run: the degradation figures of a stressed measurement against its baseline. */
export function degradation(base: Measurement, stressed: Measurement) {
  const good = WELL_BEHAVED.map((vm) => ({ b: base.perVm[vm]!, s: stressed.perVm[vm]! }));
  const lossPct = (b: number, s: number) => (b > 0 ? 100 * (1 - s / b) : 0);
  const bad = { b: base.perVm[MISBEHAVING]!, s: stressed.perVm[MISBEHAVING]! };
  // DNR as in the paper: the misbehaving VM returned (almost) nothing.
  const dnr = stressed.misbehavingDied || bad.s.ok === 0 || bad.s.okPerS < 0.01 * bad.b.okPerS;
  const baselineP99 = median(good.map((g) => g.b.p99Ms));
  const stressedP99 = median(good.map((g) => g.s.p99Ms));
  return {
    wellBehavedDegradationPct: mean(good.map((g) => lossPct(g.b.okPerS, g.s.okPerS))),
    misbehavingDegradationPct: dnr ? null : lossPct(bad.b.okPerS, bad.s.okPerS),
    baselineP99Ms: baselineP99,
    stressedP99Ms: stressedP99,
    wellBehavedP99DegradationPct: baselineP99 > 0 ? 100 * (stressedP99 / baselineP99 - 1) : 0,
    baselineThroughputPerS: mean(good.map((g) => g.b.okPerS)),
    stressedThroughputPerS: mean(good.map((g) => g.s.okPerS)),
    clientLagMs: stressed.clientLagMs,
    hypervisorLagMs: stressed.hypervisorLagMs,
  };
}

/** Medians over runs; the misbehaving VM is DNR when it was in most runs. */
export function summarize(
  policy: IsolationPolicy,
  stress: StressKind,
  cells: ReturnType<typeof degradation>[],
): IsolationRow {
  const dnrRuns = cells.filter((c) => c.misbehavingDegradationPct === null).length;
  const med = (f: (c: ReturnType<typeof degradation>) => number) => round(median(cells.map(f)));
  return {
    policy,
    stress,
    wellBehavedDegradationPct: med((c) => c.wellBehavedDegradationPct),
    misbehavingDegradationPct:
      dnrRuns * 2 > cells.length
        ? null
        : round(
            median(cells.filter((c) => c.misbehavingDegradationPct !== null).map((c) => c.misbehavingDegradationPct!)),
          ),
    baselineP99Ms: med((c) => c.baselineP99Ms),
    stressedP99Ms: med((c) => c.stressedP99Ms),
    wellBehavedP99DegradationPct: med((c) => c.wellBehavedP99DegradationPct),
    baselineThroughputPerS: med((c) => c.baselineThroughputPerS),
    stressedThroughputPerS: med((c) => c.stressedThroughputPerS),
    clientLagMs: med((c) => c.clientLagMs),
    hypervisorLagMs: med((c) => c.hypervisorLagMs),
    runs: cells.length,
  };
}

/**
 * The Isolation Benchmark Suite's matrix on one simulated host: for each policy, each run
 * measures a baseline and then each stressor in turn in the misbehaving VM, all four VMs
 * under the same closed-model load. One stack serves every cell; the policy is switched live.
 */
export async function runIsolation(o: IsolationOptions): Promise<IsolationRow[]> {
  const out = o.out;
  const stack = await startStack({
    natsUrl: o.natsUrl,
    ns: `iso${Date.now().toString(36)}`,
    host: 'host1',
    home: o.home,
    timeScale: o.timeScale,
    profile: 'small',
    scheduler: o.policies[0]!,
    hypervisorType: 'type1',
    // Every VM sees as much RAM as the host has, so the memory stressor can ask for all of it.
    overcommit: 4.5,
    detached: false,
    logLevel: 'warn',
  });
  out(`stack up (logs in ${path.dirname(stack.logs.hypervisor)})`);
  let nc: NatsConnection | undefined;
  try {
    nc = await connect({ servers: stack.natsUrl, name: 'vmsim-isolation', ...stack.auth });
    const api = new ManagementClient(nc, namespace(stack.ns), stack.host, 30_000);
    for (const name of ALL_VMS) {
      await api.call('define', {
        name,
        app: 'web',
        os: 'bsd',
        vcpus: 4,
        memoryMiB: 32 * 1024,
        diskGiB: 1,
        crashPolicy: 'restart',
        maxRestarts: 100,
      });
      await api.call('start', { name });
    }
    await waitRunning(api, ALL_VMS, 180_000);
    out(`four VMs running (4 vCPUs, 32 GiB each on a 4-core, 32 GiB host); load: ${describeWorkload()}`);
    const rows: IsolationRow[] = [];
    for (const policy of o.policies) {
      await api.call('policy', { policy });
      const cells = new Map<StressKind, ReturnType<typeof degradation>[]>();
      for (let run = 1; run <= o.runs; run++) {
        // Common random numbers: a run's baseline and stressed measurements replay the same
        // users, think times and requests, so what differs between them is the stressor.
        const seed = o.seed * 1000 + run;
        out(`${policy}: run ${run}/${o.runs}: baseline…`);
        const base = await measure(nc, api, stack.ns, stack.host, o, seed);
        out(`  baseline: ${fmtRun(base)}`);
        for (const stress of o.stresses) {
          out(`${policy}: run ${run}/${o.runs}: ${stress} stress…`);
          await api.call('stress', { name: MISBEHAVING, kind: stress });
          await sleepSimulated(o.warmupMs, o.timeScale);
          const stressed = await measure(nc, api, stack.ns, stack.host, o, seed);
          await resetMisbehaving(api);
          await rebootSwapped(api, out);
          const d = degradation(base, stressed);
          out(
            `  ${stress}: ${fmtRun(stressed)}; lag ${fmtMs(stressed.clientLagMs)}/${fmtMs(stressed.hypervisorLagMs)} ms; well-behaved ${signed(-d.wellBehavedDegradationPct)}, ` +
              `misbehaving ${d.misbehavingDegradationPct === null ? 'DNR' : signed(-d.misbehavingDegradationPct)}`,
          );
          cells.set(stress, [...(cells.get(stress) ?? []), d]);
        }
      }
      for (const stress of o.stresses) rows.push(summarize(policy, stress, cells.get(stress)!));
    }
    return rows;
  } finally {
    await nc?.close();
    await stack.stop();
  }
}

/** Powers a VM off and on again; the start is retried while its old process still holds memory. */
async function powerCycle(api: ManagementClient, name: string): Promise<void> {
  await api.call('destroy', { name });
  let last = '';
  await waitFor(
    async () => {
      try {
        await api.call('start', { name });
        return true;
      } catch (e) {
        last = (e as Error).message;
        return false;
      }
    },
    60_000,
    `VM ${name} to start again (last error: ${last || 'none'})`,
    250,
  );
}

const signed = (x: number) => `${x > 0 ? '+' : x < 0 ? '−' : ''}${Math.abs(x).toFixed(1)}%`;

/**
 * Pages a memory or fork bomb pushed to swap stay there until touched, so every later cell
 * would measure VMs faulting them back in: a VM left with swapped memory is rebooted, and
 * each cell starts from resident guests.
 */
async function rebootSwapped(api: ManagementClient, out: (line: string) => void): Promise<void> {
  const swapped = (await api.call('list', {})).vms.filter((v) => ALL_VMS.includes(v.name) && v.memory.swappedMiB > 0);
  if (swapped.length === 0) return;
  out(`  rebooting ${swapped.map((v) => `${v.name} (${v.memory.swappedMiB} MiB on swap)`).join(', ')}`);
  for (const v of swapped) await powerCycle(api, v.name);
  await waitRunning(api, ALL_VMS, 180_000);
}

function describeWorkload(): string {
  return `${WORKLOAD.users} closed users per VM, ${WORKLOAD.thinkMs} ms think time, GET ${WORKLOAD.path}`;
}

function fmtRun(m: Measurement): string {
  return ALL_VMS.map((vm) => {
    const v = m.perVm[vm]!;
    return `${vm} ${v.okPerS.toFixed(0)}/s p99 ${fmtMs(v.p99Ms)}${v.errors ? ` ${v.errors} err` : ''}`;
  }).join(' | ');
}

/**
 * A stressor's warm-up is part of the benchmark's protocol (the paper starts measuring
 * once the misbehaving VM is at full tilt), not a wait for readiness.
 */
function sleepSimulated(ms: number, timeScale: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms * timeScale));
}

async function waitRunning(api: ManagementClient, names: readonly string[], timeoutMs: number): Promise<VmInfo[]> {
  let vms: VmInfo[] = [];
  await waitFor(
    async () => {
      vms = (await api.call('list', {})).vms.filter((v) => names.includes(v.name));
      const failed = vms.find((v) => v.state === 'failed');
      if (failed) throw new Error(`VM ${failed.name} failed: ${failed.reason}`);
      return vms.length === names.length && vms.every((v) => v.state === 'running');
    },
    timeoutMs,
    `VMs ${names.join(', ')} running`,
    200,
  );
  return vms;
}

/**
 * Stops the stressor and gives the misbehaving VM a clean slate: a guest that filled its
 * memory or forked without bound is powered off and booted again, one the OOM killer took
 * is waited for (its crash policy restarts it).
 */
async function resetMisbehaving(api: ManagementClient): Promise<void> {
  const info = await api.call('info', { name: MISBEHAVING });
  if (info.state === 'running') {
    await api.call('unstress', { name: MISBEHAVING });
    if (info.memory.usedMiB > 2048 || info.stress === 'fork-bomb' || info.stress === 'memory') {
      await powerCycle(api, MISBEHAVING);
    }
  }
  await waitRunning(api, [MISBEHAVING], 180_000);
}

async function measure(
  nc: NatsConnection,
  api: ManagementClient,
  ns: string,
  host: string,
  o: IsolationOptions,
  seed: number,
): Promise<Measurement> {
  const before = await api.call('info', { name: MISBEHAVING });
  const clock = new RealClock(o.timeScale);
  const targets: LoadTarget[] = ALL_VMS.map((vm) => ({
    vm,
    app: 'web',
    model: 'closed',
    users: WORKLOAD.users,
    thinkMs: WORKLOAD.thinkMs,
    mix: { GET: 1, POST: 0 },
    paths: [WORKLOAD.path],
  }));
  const timeoutMs = 5_000;
  const runner = new LoadRunner({
    clock,
    streams: new RandomStreams(seed),
    targets,
    durationMs: o.durationMs,
    timeoutMs,
    send: createBusSender(nc, namespace(ns), host, { timeoutMs: clock.toWall(timeoutMs) + 2_000 }),
  });
  await api.call('ping', {}); // starts the hypervisor's lag window afresh
  const summary = await runner.run();
  const hostAfter = await api.call('ping', {});
  const after = await api.call('info', { name: MISBEHAVING });
  const perVm: Measurement['perVm'] = {};
  for (const t of summary.targets as TargetSummary[]) {
    perVm[t.vm] = { okPerS: t.okPerS, p99Ms: t.latencyMs.p99, ok: t.ok, errors: t.errorCount + t.timeouts };
  }
  return {
    perVm,
    clientLagMs: mean(summary.targets.map((t) => t.dispatchLagMs.mean)),
    hypervisorLagMs: hostAfter.lagMs,
    misbehavingDied:
      after.restarts !== before.restarts || after.state !== 'running' || after.memory.oomKills > before.memory.oomKills,
  };
}

export function printIsolation(rows: IsolationRow[], out: (line: string) => void): void {
  const pct = (x: number | null) => (x === null ? 'DNR' : `${x.toFixed(1)}%`);
  for (const policy of ISOLATION_POLICIES) {
    const rs = rows.filter((r) => r.policy === policy);
    if (rs.length === 0) continue;
    out('');
    out(`policy ${policy} (median of ${rs[0]!.runs} run${rs[0]!.runs > 1 ? 's' : ''}; simulated time)`);
    out(
      table(
        [
          'STRESS',
          'WELL-BEHAVED',
          'MISBEHAVING',
          'p99 BASE ms',
          'p99 STRESSED ms',
          'p99 CHANGE',
          'req/s BASE→STRESSED',
          'LAG ms',
          'XEN 2007',
        ],
        rs.map((r) => [
          r.stress,
          pct(r.wellBehavedDegradationPct),
          pct(r.misbehavingDegradationPct),
          fmtMs(r.baselineP99Ms),
          fmtMs(r.stressedP99Ms),
          `${r.wellBehavedP99DegradationPct >= 0 ? '+' : ''}${r.wellBehavedP99DegradationPct.toFixed(0)}%`,
          `${r.baselineThroughputPerS.toFixed(0)}→${r.stressedThroughputPerS.toFixed(0)}`,
          `${fmtMs(r.clientLagMs)}/${fmtMs(r.hypervisorLagMs)}`,
          `${PAPER_XEN_WORST_PCT[r.stress]}%`,
        ]),
      ),
    );
  }
  out('');
  out(
    'WELL-BEHAVED and MISBEHAVING: throughput lost against the baseline (DNR: the misbehaving VM died or answered nothing).',
  );
  out(
    "LAG ms: how late the load generator sent requests (mean, simulated ms) / the hypervisor's p99 event-loop lag " +
      '(wall ms) while stressed: large values mean this machine, not the model, held the load back.',
  );
  out(
    'XEN 2007: the well-behaved VMs\' degradation Matthews et al. report for Xen ("at most 1.7%, in the disk test").',
  );
}

export function parseStresses(text: string | undefined): StressKind[] {
  if (text === undefined || text === 'all') return [...STRESS_KINDS];
  const kinds = text.split(',').map((s) => s.trim());
  for (const k of kinds) {
    if (!(STRESS_KINDS as readonly string[]).includes(k))
      throw new Error(`--stress: "${k}" is not one of ${STRESS_KINDS.join(', ')}`);
  }
  return kinds as StressKind[];
}
