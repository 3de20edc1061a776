import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { connect } from '@nats-io/transport-node';
import {
  LagMonitor,
  ManagementClient,
  RandomStreams,
  RealClock,
  ServiceEvent,
  Utilization,
  VmEvent,
  anyEventSubject,
  call,
  decode,
  hardwareSubjects,
  namespace,
  type NatsConnection,
  type PoolInfo,
  type VmInfo,
} from '@vmsim/shared';
import { LoadRunner, createBusSender, type LoadTarget, type Send } from '@vmsim/client-gen';
import { analyseFaults, describeFault, faultsFromTimeline, type ChaosEvent, type RequestOutcome } from './chaos.ts';
import { fmtMs, table } from './format.ts';
import {
  assessFidelity,
  buildReport,
  renderMarkdown,
  type MeasuredTarget,
  type RealCpu,
  type Report,
} from './report.ts';
import type { InfraStep, Scenario, ScenarioStorage } from './scenario.ts';
import { startStack, type Stack } from './stack.ts';
import { attachAuth } from './stack-auth.ts';
import { startTimeline } from './timeline.ts';
import { startDurabilityChecks, type DurabilityChecks } from './durability-check.ts';

export interface RunOptions {
  scenario: Scenario;
  /** Where report.json and report.md go. */
  reportDir: string;
  /** Where the stack keeps its data and logs for this run. */
  home: string;
  /** A running NATS server to use instead of starting one. */
  natsUrl?: string | undefined;
  /**
   * Run on a stack that is already up (docker compose, `vmsim up`) instead of starting one:
   * its VMs are defined there (or reused when already defined) and left running afterwards.
   */
  attach?: { natsUrl: string; ns: string; host: string; credsFile?: string | null | undefined } | undefined;
  out: (line: string) => void;
}

const TICKS = 100; // Linux USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s

function cpuSecondsOf(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
  } catch {
    return 0;
  }
}

/**
 * Runs a scenario: starts a stack, defines and boots its VMs, drives its load, collects
 * what happened from the hypervisor and the clients, and writes the report.
 */
export async function runScenario(o: RunOptions): Promise<Report> {
  const s = o.scenario;
  const out = o.out;
  const startedAt = new Date();
  out(
    `scenario ${s.name}: ${s.vms.length} VMs, ${s.duration / 1000} simulated s of load at time scale ${s.timeScale} (≈${((s.duration * s.timeScale) / 1000).toFixed(0)} s wall)`,
  );
  const stack = o.attach
    ? undefined
    : await startStack({
        natsUrl: o.natsUrl,
        ns: `run${Date.now().toString(36)}`,
        host: 'host1',
        home: o.home,
        timeScale: s.timeScale,
        profile: s.host.profile,
        scheduler: policyOf(s),
        hypervisorType: s.host.hypervisor,
        overcommit: s.host.overcommit,
        detached: false,
        logLevel: 'info',
      });
  const where = o.attach ?? { natsUrl: stack!.natsUrl, ns: stack!.ns, host: stack!.host };
  const ns = where.ns;
  const host = where.host;
  if (stack) out(`stack up: bus ${stack.natsUrl}, logs in ${path.dirname(stack.logs.hypervisor)}`);
  else out(`attached to the stack on ${where.natsUrl} (namespace ${ns}, host ${host})`);
  let nc: NatsConnection | undefined;
  let durabilityChecks: DurabilityChecks | undefined;
  const lag = new LagMonitor();
  try {
    nc = await connect({
      servers: where.natsUrl,
      name: 'vmsim-run',
      waitOnFirstConnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      ...(stack ? stack.auth : attachAuth(o.attach?.credsFile)),
    });
    const api = new ManagementClient(nc, namespace(ns), host, 30_000);
    const hostAtStart = await waitForHypervisor(api);
    if (o.attach && hostAtStart.timeScale !== s.timeScale) {
      out(
        `note: the stack runs at time scale ${hostAtStart.timeScale}, not the scenario's ${s.timeScale}; using the stack's`,
      );
    }
    // Pools, disks and templates come first: the VMs' disks are carved from them.
    if (s.storage) await setUpStorage(api, s.storage, out);
    const existing = new Set((await api.call('list', {})).vms.map((v) => v.name));
    for (const vm of s.vms) {
      if (existing.has(vm.name)) continue;
      await api.call('define', {
        name: vm.name,
        app: vm.app,
        os: vm.os,
        vcpus: vm.vcpus,
        memoryMiB: vm.memoryMiB,
        diskGiB: vm.diskGiB,
        shares: vm.shares,
        crashPolicy: vm.crashPolicy,
        ackBeforeFlush: vm.ackBeforeFlush,
        ...(vm.maxRestarts !== undefined ? { maxRestarts: vm.maxRestarts } : {}),
        ...(vm.restartWindowMs !== undefined ? { restartWindowMs: vm.restartWindowMs } : {}),
        ...(vm.watchdog !== undefined ? { watchdog: vm.watchdog } : {}),
        ...(vm.disk !== undefined ? { disk: vm.disk } : {}),
        cpuCapPct: vm.cpuCapPct,
        cpuReservationPct: vm.cpuReservationPct,
        memLimitMiB: vm.memLimitMiB,
        diskBytesPerS: vm.diskBytesPerS,
        diskOpsPerS: vm.diskOpsPerS,
        netBytesPerS: vm.netBytesPerS,
        netOpsPerS: vm.netOpsPerS,
      });
    }
    for (const vm of s.vms) {
      const state = (await api.call('info', { name: vm.name })).state;
      if (state !== 'running' && state !== 'starting') await api.call('start', { name: vm.name });
    }
    const bootDeadline = Date.now() + 180_000;
    for (;;) {
      const { vms } = await api.call('list', {});
      const running = vms.filter((v) => v.state === 'running').length;
      const broken = vms.filter(
        (v) => v.state === 'failed' || (v.state === 'crashed' && v.definition.crashPolicy !== 'restart'),
      );
      if (broken.length) throw new Error(`VM ${broken[0]!.name} did not boot: ${broken[0]!.reason}`);
      if (running === vms.length) break;
      if (Date.now() > bootDeadline) throw new Error(`only ${running} of ${vms.length} VMs booted within 180 s`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const before = (await api.call('list', {})).vms;
    out(
      `all ${before.length} VMs running: ` +
        before.map((v) => `${v.name} (pid ${v.pid}, boot ${fmtMs(v.bootMs)} ms)`).join(', '),
    );

    // Processes this run can see (an attached stack's may live in other containers).
    const pids = (vms: VmInfo[]) => [
      ...(stack ? vms.filter((v) => v.pid !== null).map((v) => [`guest:${v.name}`, v.pid!] as const) : []),
      ...(stack ? [['host-agent', stack.pids.hostAgent] as const, ['hypervisor', stack.pids.hypervisor] as const] : []),
      ...(stack && stack.pids.nats !== null ? [['nats-server', stack.pids.nats] as const] : []),
    ];
    const cpuBefore = new Map(pids(before).map(([k, pid]) => [k, cpuSecondsOf(pid)]));
    const selfBefore = process.cpuUsage();
    const wallStart = performance.now();
    lag.sample();

    const clock = new RealClock(hostAtStart.timeScale);
    // A chaos run keeps every request's outcome and every event, to time detection and recovery.
    const chaos = s.timeline.some((st) => st.fault !== undefined || st.infra !== undefined)
      ? startChaosRecorder(nc, ns, clock, hostAtStart.timeScale)
      : undefined;
    const targets: LoadTarget[] = s.load.map((l) => {
      const app = s.vms.find((v) => v.name === l.vm)!.app;
      return l.model === 'closed'
        ? {
            vm: l.vm,
            app,
            model: 'closed',
            users: l.users,
            thinkMs: l.thinkMs,
            ...(l.mix ? { mix: l.mix } : {}),
            ...(l.paths ? { paths: l.paths } : {}),
          }
        : {
            vm: l.vm,
            app,
            model: 'open',
            ratePerS: l.ratePerS,
            arrival: l.arrival,
            ...(l.mix ? { mix: l.mix } : {}),
            ...(l.paths ? { paths: l.paths } : {}),
          };
    });
    const timeoutMs = s.clientTimeout;
    const runner = new LoadRunner({
      clock,
      streams: new RandomStreams(s.seed),
      targets,
      durationMs: s.duration,
      timeoutMs,
      seriesWindowMs: seriesWindowFor(s.duration),
      send: chaos
        ? chaos.wrap(createBusSender(nc, namespace(ns), host, { timeoutMs: clock.toWall(timeoutMs) + 2_000 }))
        : createBusSender(nc, namespace(ns), host, { timeoutMs: clock.toWall(timeoutMs) + 2_000 }),
    });
    // Durability writers run beside the load, on keys of their own, until the load ends.
    durabilityChecks = startDurabilityChecks({
      scenario: s,
      runId: startedAt.getTime().toString(36),
      clock,
      send: createBusSender(nc, namespace(ns), host, { timeoutMs: clock.toWall(timeoutMs) + 2_000 }),
    });
    const lagBySvc: Record<string, number> = {};
    const noteLag = (svc: string, ms: number | null | undefined) => {
      if (ms !== null && ms !== undefined) lagBySvc[svc] = Math.max(lagBySvc[svc] ?? 0, ms);
    };
    const progress = setInterval(() => {
      const p = runner.snapshot();
      out(
        `  ${(p.elapsedMs / 1000).toFixed(1)}/${(p.durationMs / 1000).toFixed(0)} s  ` +
          p.targets
            .map(
              (t) =>
                `${t.vm} ${t.ok} ok${t.errors + t.timeouts ? ` ${t.errors + t.timeouts} err` : ''} p99 ${fmtMs(t.p99Ms)}`,
            )
            .join(' | '),
      );
      noteLag('vmsim-run', lag.sample().p99Ms);
      void api.call('ping', {}).then(
        (h) => noteLag('hypervisor', h.lagMs),
        () => undefined,
      );
      void call(nc!, hardwareSubjects.utilization(namespace(ns), host), {}, Utilization, 5000).then(
        (u) => noteLag('host-agent', u.lagMs),
        () => undefined,
      );
    }, 2000);
    let summary;
    // The timeline counts from the load's start, on the same clock.
    chaos?.start();
    const timeline = startTimeline({
      steps: s.timeline,
      clock,
      startMs: clock.now(),
      durationMs: s.duration,
      api: {
        stress: (name, kind, durationMs) =>
          api.call('stress', { name, kind, ...(durationMs !== undefined ? { durationMs } : {}) }),
        unstress: (name) => api.call('unstress', { name }),
        fault: (name, spec) => api.call('fault', { name, ...spec }),
        unfault: (name) => api.call('unfault', { name }),
        infra: stack ? (step: InfraStep) => infraFault(stack, step) : undefined,
        storage: {
          diskSnapshot: (id, snapshot) => api.call('diskSnapshot', { id, snapshot }),
          diskDeleteSnapshot: (id, snapshot) => api.call('diskDeleteSnapshot', { id, snapshot }),
          poolAddDisk: (id, disk, sizeGiB) =>
            api.call('poolAddDisk', { id, disk, ...(sizeGiB !== undefined ? { sizeGiB } : {}) }),
          diskDelete: (id) => api.call('diskDelete', { id }),
        },
      },
      out,
    });
    try {
      summary = await runner.run();
    } finally {
      clearInterval(progress);
      await timeline.stop();
    }
    // No new durability keys once the load is over; their read-back comes after the figures.
    durabilityChecks.stop();
    chaos?.stop();
    const wallSeconds = (performance.now() - wallStart) / 1000;
    const after = (await api.call('list', {})).vms;
    const hostInfo = await api.call('ping', {});
    // The pools as the load left them, when the run involves storage at all.
    let pools: PoolInfo[] | undefined;
    if (s.storage || after.some((v) => v.disks.some((d) => d.volume))) {
      pools = await api.call('poolList', {}).then(
        (r) => r.pools,
        (e: unknown) => {
          out(`could not list the storage pools: ${(e as Error).message}`);
          return undefined;
        },
      );
    }
    noteLag('hypervisor', hostInfo.lagMs);
    for (const v of after) noteLag(`guest:${v.name}`, v.guestLagMs);
    noteLag('vmsim-run', lag.sample().p99Ms);

    const byProcess: Record<string, number> = {};
    for (const [k, pid] of pids(after)) byProcess[k] = Math.max(0, cpuSecondsOf(pid) - (cpuBefore.get(k) ?? 0));
    const self = process.cpuUsage(selfBefore);
    byProcess['vmsim-run'] = (self.user + self.system) / 1e6;
    const cpuSeconds = Object.values(byProcess).reduce((a, b) => a + b, 0);
    const realCpu: RealCpu = {
      cores: os.cpus().length,
      wallSeconds,
      cpuSeconds,
      busyPct: (100 * cpuSeconds) / (wallSeconds * os.cpus().length),
      byProcess,
    };
    const measured: MeasuredTarget[] = summary.targets.map((t) => ({
      vm: t.vm,
      model: t.model,
      sent: t.sent,
      ok: t.ok,
      errorCount: t.errorCount,
      errors: t.errors,
      timeouts: t.timeouts,
      okPerS: t.okPerS,
      latencyMs: t.latencyMs,
      series: t.series,
    }));
    if (durabilityChecks.vms.length > 0)
      out(`durability: reading back the keys written to ${durabilityChecks.vms.join(', ')}`);
    const durability = await durabilityChecks.finish((vm) => serving(api, vm));
    const report = buildReport({
      scenario: s,
      startedAt,
      finishedAt: new Date(),
      hostInfo,
      before,
      after,
      targets: measured,
      fidelity: assessFidelity(lagBySvc, s.timeScale, measured),
      realCpu,
      timeline: timeline.outcomes,
      faults: chaos
        ? analyseFaults({
            faults: faultsFromTimeline(s.timeline, timeline.outcomes),
            events: chaos.events,
            requests: chaos.requests,
            endMs: s.duration,
            loadedVms: s.load.map((l) => l.vm),
          })
        : undefined,
      durability,
      pools,
    });
    fs.mkdirSync(o.reportDir, { recursive: true });
    fs.writeFileSync(path.join(o.reportDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    fs.writeFileSync(path.join(o.reportDir, 'report.md'), renderMarkdown(report));
    printSummary(report, out);
    out(`report: ${path.join(o.reportDir, 'report.md')} and report.json`);
    return report;
  } finally {
    durabilityChecks?.abort();
    lag.stop();
    await nc?.close();
    await stack?.stop();
  }
}

/**
 * Creates the scenario's pools and disks, and makes each template as an admin makes a golden
 * image: a VM installs its OS and app on first boot onto a volume of its own, is shut down and
 * undefined (the volume stays: it was not the VM's), and the volume is frozen as a template.
 * What exists already (an attached stack, a second run) is reused.
 */
async function setUpStorage(api: ManagementClient, st: ScenarioStorage, out: (line: string) => void): Promise<void> {
  const pools = new Set((await api.call('poolList', {})).pools.map((p) => p.id));
  for (const p of st.pools) {
    if (pools.has(p.id)) continue;
    const info = await api.call('poolCreate', {
      id: p.id,
      disks: p.disks,
      ...(p.diskGiB !== undefined ? { diskGiB: p.diskGiB } : {}),
      ...(p.chunkMiB !== undefined ? { chunkMiB: p.chunkMiB } : {}),
    });
    out(
      `pool ${p.id}: ${p.disks.join(', ')}, ${(info.capacityBytes / 2 ** 30).toFixed(2)} GiB, chunks of ${info.chunkBytes / 2 ** 20} MiB`,
    );
  }
  const volumes = new Map((await api.call('diskList', {})).volumes.map((v) => [v.id, v]));
  for (const d of st.disks) {
    if (volumes.has(d.id)) continue;
    await api.call('diskCreate', { id: d.id, pool: d.pool, sizeGiB: d.sizeGiB, provisioning: d.provisioning });
    out(`disk ${d.id}: ${d.sizeGiB} GiB ${d.provisioning} in pool ${d.pool}`);
  }
  for (const t of st.templates) {
    const had = volumes.get(t.name);
    if (had?.template) continue;
    if (had) throw new Error(`disk ${t.name} exists and is not a template: delete it to make template ${t.name}`);
    const started = Date.now();
    await api.call('diskCreate', { id: t.name, pool: t.pool, sizeGiB: t.diskGiB, provisioning: t.provisioning });
    await api.call('define', {
      name: t.name,
      app: t.app,
      os: t.os,
      memoryMiB: t.memoryMiB,
      diskGiB: t.diskGiB,
      disk: { pool: t.pool, provisioning: t.provisioning, volume: t.name },
    });
    await api.call('start', { name: t.name });
    await waitForState(api, t.name, ['running'], 'install its OS and app');
    await api.call('shutdown', { name: t.name });
    await waitForState(api, t.name, ['stopped', 'defined'], 'shut down');
    await api.call('undefine', { name: t.name });
    const frozen = await api.call('diskTemplate', { id: t.name });
    out(
      `template ${t.name}: ${t.os} + ${t.app} installed in ${((Date.now() - started) / 1000).toFixed(1)} s wall, ` +
        `${(frozen.allocatedBytes / 2 ** 20).toFixed(1)} MiB written of ${t.diskGiB} GiB`,
    );
  }
}

/** Waits (up to three wall minutes) until a VM is in one of `states`; a failed VM ends the wait. */
async function waitForState(api: ManagementClient, name: string, states: string[], what: string): Promise<void> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    const info = await api.call('info', { name });
    if (states.includes(info.state)) return;
    if (info.state === 'failed' || info.state === 'crashed')
      throw new Error(`template VM ${name} did not ${what}: ${info.state} (${info.reason})`);
    if (Date.now() > deadline) throw new Error(`template VM ${name} did not ${what} within 180 s (${info.state})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function infraFault(stack: Stack, step: InfraStep): Promise<unknown> {
  switch (step) {
    case 'host-agent-restart':
      return stack.restartHostAgent();
    case 'host-agent-power-cut':
      return stack.powerCutHostAgent();
    case 'hypervisor-restart':
      return stack.restartHypervisor();
    case 'hypervisor-graceful-restart':
      return stack.restartHypervisor({ graceful: true });
    case 'nats-restart':
      return stack.restartNats();
  }
}

/**
 * Records, on the load's simulated clock, every client request's outcome and every VM and
 * service event, from `start()` (the load's start) on.
 */
function startChaosRecorder(nc: NatsConnection, ns: string, clock: RealClock, timeScale: number) {
  const events: ChaosEvent[] = [];
  const requests: RequestOutcome[] = [];
  let startSim = clock.now();
  let startWall = Date.now();
  const simOf = (wallMs: number) => (wallMs - startWall) / timeScale;
  const sub = nc.subscribe(anyEventSubject(namespace(ns)), {
    callback: (err, m) => {
      if (err) return;
      try {
        if (m.subject.includes('.vm.')) {
          const e = decode(m.data, VmEvent, 'vm event');
          events.push({
            tMs: simOf(e.t),
            vm: e.vm,
            kind: e.kind ?? 'state',
            to: e.to,
            ...(e.fault ? { fault: { kind: e.fault.kind, phase: e.fault.phase } } : {}),
            ...(e.health ? { health: e.health } : {}),
            reason: e.reason,
          });
        } else {
          const e = decode(m.data, ServiceEvent, 'service event');
          events.push({ tMs: simOf(e.t), vm: e.svc, kind: 'service', reason: `${e.kind}: ${e.reason}` });
        }
      } catch {
        // Not an event this run can read: it is no evidence either way.
      }
    },
  });
  return {
    events,
    requests,
    start() {
      startSim = clock.now();
      startWall = Date.now();
    },
    wrap(send: Send): Send {
      return async (vm, request) => {
        const sentMs = clock.now() - startSim;
        try {
          const reply = await send(vm, request);
          requests.push({ vm, sentMs, doneMs: clock.now() - startSim, ok: reply.ok });
          return reply;
        } catch (e) {
          requests.push({ vm, sentMs, doneMs: clock.now() - startSim, ok: false });
          throw e;
        }
      };
    },
    stop() {
      sub.unsubscribe();
    },
  };
}

function policyOf(s: Scenario): 'fifo' | 'fair' {
  if (s.host.scheduler === 'both') throw new Error('runScenario runs one policy; use runScenarioPolicies for both');
  return s.host.scheduler;
}

/** About 40 windows over the run, on a round size (100 ms, 250 ms, 500 ms, 1 s, 2 s, 5 s…). */
export function seriesWindowFor(durationMs: number): number {
  const steps = [100, 250, 500, 1000, 2000, 5000, 10_000, 30_000, 60_000];
  return steps.find((w) => durationMs / w <= 40) ?? 60_000;
}

/** Whether a VM serves (again) within a minute: it may be rebooting after a fault. */
async function serving(api: ManagementClient, vm: string): Promise<boolean> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const info = await api.call('info', { name: vm }).catch(() => undefined);
    if (info?.state === 'running') return true;
    if (info?.state === 'failed' || Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Waits for the hypervisor's API (a stack that is still coming up, e.g. under compose). */
async function waitForHypervisor(api: ManagementClient) {
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      return await api.call('ping', {});
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

export function printSummary(r: Report, out: (line: string) => void): void {
  out('');
  out(
    table(
      ['VM', 'APP', 'OS', 'STATE', 'PID', 'REQUESTS', 'ERRORS', 'REQ/S', 'p50 ms', 'p99 ms', 'HYPERCALLS', 'WAIT ms'],
      r.vms.map((v) => [
        v.name,
        v.app,
        v.os,
        v.state,
        v.pid ?? '-',
        v.requests,
        v.errors,
        v.throughputPerS.toFixed(1),
        fmtMs(v.latencyMs.p50),
        fmtMs(v.latencyMs.p99),
        v.hypercalls,
        fmtMs(v.queueWaitMs),
      ]),
    ),
  );
  out('');
  for (const v of r.vms.filter((x) => x.durability)) {
    const d = v.durability!;
    out(
      `durability ${v.name}: ${d.acked} acknowledged writes, ${d.lost} lost` +
        `${d.corrupt ? `, ${d.corrupt} corrupt` : ''}${d.unverified ? `, ${d.unverified} not read back` : ''}`,
    );
  }
  for (const p of r.pools) {
    out(
      `pool ${p.id}: ${(p.allocatedBytes / 2 ** 20).toFixed(1)} of ${(p.capacityBytes / 2 ** 20).toFixed(1)} MiB allocated, ` +
        `${(p.virtualBytes / 2 ** 30).toFixed(2)} GiB promised (overcommit ${p.overcommit.toFixed(2)})` +
        `${p.stalledVms.length ? `; paused by a full pool: ${p.stalledVms.join(', ')}` : ''}`,
    );
  }
  for (const v of r.vms) {
    for (const d of v.disks.filter((x) => x.poolFullStalls > 0))
      out(`disk ${d.volume} of ${v.name}: ${d.poolFullStalls} write(s) found pool ${d.pool} full during the load`);
  }
  for (const f of r.faults) {
    out(
      `fault ${describeFault(f)}: ${f.detectedBy ? `detected after ${fmtMs(f.mttdMs)} ms (${f.detectedBy})` : 'not detected'}, ` +
        `${f.mttrMs !== null ? `serving again after ${fmtMs(f.mttrMs)} ms` : `not recovered${f.note ? ` (${f.note})` : ''}`}`,
    );
  }
  for (const sr of r.slo.filter((x) => !x.pass))
    out(`SLO missed: ${sr.vm} ${sr.metric} ${sr.actual} > ${sr.threshold}${sr.fault ? ` (${sr.fault})` : ''}`);
  out(
    `verdict: ${r.verdict.toUpperCase()}; real CPU ${r.realCpu.busyPct.toFixed(1)}% of ${r.realCpu.cores} cores; ` +
      `max event-loop lag ${r.fidelity.maxEventLoopLagMs} ms${r.fidelity.degraded ? ' — DEGRADED: ' + r.fidelity.reasons.join(' ') : ''}`,
  );
}
