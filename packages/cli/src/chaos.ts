/**
 * What a chaos run measured about each injected fault: when it was detected (MTTD), when the
 * VM served clients again (MTTR), and how the other VMs fared meanwhile. A pure core: it gets
 * the run's VM events and every client request's outcome, on the load's simulated clock.
 */

/** A VM event as the run saw it, at `tMs` simulated ms since the load started. */
export interface ChaosEvent {
  tMs: number;
  vm: string;
  /** The event's kind: state (absent in old events), fault, health, watchdog, memory, stress. */
  kind: string;
  /** State events: the state the VM moved to. */
  to?: string | null | undefined;
  /** Fault events. */
  fault?: { kind: string; phase: 'injected' | 'cleared' } | undefined;
  /** Health events. */
  health?: 'degraded' | 'recovered' | undefined;
  reason: string;
}

/** One client request: sent and answered (or given up on) at simulated ms since the load started. */
export interface RequestOutcome {
  vm: string;
  sentMs: number;
  doneMs: number;
  ok: boolean;
}

/**
 * A fault the run injected (from its timeline). An infrastructure fault (`infra`) has no VM
 * of its own: it hits every VM, its detection is the first service event after it, and it
 * is over when every loaded VM has served a request sent after the service came back.
 */
export interface InjectedFault {
  vm: string;
  kind: string;
  infra?: boolean | undefined;
  atMs: number;
  /** When the fault was lifted, if it was (its `for` ran out, or a later step cleared it). */
  clearedMs?: number | undefined;
}

export interface NeighbourFigures {
  vm: string;
  requests: number;
  errors: number;
  errorRate: number;
  p99Ms: number;
}

export interface FaultOutcome {
  /** The VM it hit, or the service for an infrastructure fault. */
  vm: string;
  kind: string;
  infra?: boolean | undefined;
  injectedMs: number;
  detectedMs: number | null;
  /** What noticed it: the event's kind and reason. */
  detectedBy: string | null;
  recoveredMs: number | null;
  /** Time to detect and time to serve again, counted from the injection. */
  mttdMs: number | null;
  mttrMs: number | null;
  /** Why there is no recovery time, when there is none. */
  note?: string | undefined;
  /** The window the neighbours are judged over: injection to recovery (or to the end of the run). */
  windowEndMs: number;
  neighbours: NeighbourFigures[];
}

/** States a VM serves in; leaving them means the fault interrupted it. */
const SERVING = 'running';
const DETECTING_STATES = new Set(['crashed', 'failed']);

/** Whether an event is the system noticing trouble with the VM. */
export function isDetection(e: ChaosEvent): boolean {
  if (e.kind === 'watchdog') return true;
  if (e.kind === 'health') return e.health === 'degraded';
  if (e.kind === 'state') return DETECTING_STATES.has(e.to ?? '');
  return false;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function neighbourFigures(vm: string, requests: RequestOutcome[], fromMs: number, toMs: number): NeighbourFigures {
  const mine = requests.filter((r) => r.vm === vm && r.sentMs >= fromMs && r.sentMs <= toMs);
  const latencies = mine
    .filter((r) => r.ok)
    .map((r) => r.doneMs - r.sentMs)
    .sort((a, b) => a - b);
  const errors = mine.filter((r) => !r.ok).length;
  return {
    vm,
    requests: mine.length,
    errors,
    errorRate: mine.length ? errors / mine.length : 0,
    p99Ms: Math.round(percentile(latencies, 99) * 1000) / 1000,
  };
}

/**
 * For each fault: detection is the first watchdog, `degraded` or crash/failure event of the
 * VM after the injection. Recovery is the first successful request sent after the VM is
 * serving again: after it came back to running when the fault took it down, after its
 * `recovered` health event when the fault only degraded it, or after the fault was lifted
 * when nothing noticed it.
 */
export function analyseFaults(o: {
  faults: readonly InjectedFault[];
  events: readonly ChaosEvent[];
  requests: readonly RequestOutcome[];
  /** Simulated ms the load ran for. */
  endMs: number;
  /** VMs that carried client load: the neighbours are judged among them. */
  loadedVms: readonly string[];
}): FaultOutcome[] {
  const events = [...o.events].sort((a, b) => a.tMs - b.tMs);
  const requests = [...o.requests].sort((a, b) => a.sentMs - b.sentMs);
  return o.faults.map((f, i) => {
    if (f.infra) return infraOutcome(f, events, requests, o.endMs, o.loadedVms);
    // A later fault on the same VM starts a new story: this one's evidence ends there.
    const next = o.faults.find((g, j) => j > i && g.vm === f.vm && g.atMs >= f.atMs);
    const horizon = next ? next.atMs : o.endMs;
    const mine = events.filter((e) => e.vm === f.vm && e.tMs >= f.atMs && e.tMs <= horizon);
    const detection = mine.find(isDetection);
    const detectedMs = detection ? detection.tMs : null;
    const leftService = mine.find((e) => e.kind === 'state' && e.to && e.to !== SERVING);
    let servingFromMs: number | null;
    let note: string | undefined;
    if (leftService) {
      const back = mine.find((e) => e.tMs >= leftService.tMs && e.kind === 'state' && e.to === SERVING);
      servingFromMs = back ? back.tMs : null;
      if (!back) {
        const last = [...mine].reverse().find((e) => e.kind === 'state' && e.to);
        note = `not serving again before ${next ? 'the next fault' : 'the run ended'} (state ${last?.to ?? leftService.to})`;
      }
    } else if (detection && detection.kind === 'health') {
      const recovered = mine.find((e) => e.tMs >= detection.tMs && e.kind === 'health' && e.health === 'recovered');
      servingFromMs = recovered ? recovered.tMs : null;
      if (!recovered) note = 'still degraded when the run ended';
    } else {
      servingFromMs = f.clearedMs ?? detectedMs ?? f.atMs;
    }
    let recoveredMs: number | null = null;
    if (servingFromMs !== null) {
      const firstOk = requests.find((r) => r.vm === f.vm && r.ok && r.sentMs >= servingFromMs! && r.sentMs <= horizon);
      if (firstOk) recoveredMs = firstOk.doneMs;
      else note ??= 'no successful request after it was serving again';
    }
    const windowEndMs = Math.min(horizon, recoveredMs ?? f.clearedMs ?? horizon);
    return {
      vm: f.vm,
      kind: f.kind,
      injectedMs: f.atMs,
      detectedMs,
      detectedBy: detection ? `${detection.kind}: ${detection.reason}` : null,
      recoveredMs,
      mttdMs: detectedMs === null ? null : round(detectedMs - f.atMs),
      mttrMs: recoveredMs === null ? null : round(recoveredMs - f.atMs),
      ...(note ? { note } : {}),
      windowEndMs: round(windowEndMs),
      neighbours: o.loadedVms
        .filter((vm) => vm !== f.vm)
        .map((vm) => neighbourFigures(vm, requests, f.atMs, windowEndMs)),
    };
  });
}

const round = (x: number) => Math.round(x * 10) / 10;

function infraOutcome(
  f: InjectedFault,
  events: readonly ChaosEvent[],
  requests: readonly RequestOutcome[],
  endMs: number,
  loadedVms: readonly string[],
): FaultOutcome {
  const detection = events.find((e) => e.kind === 'service' && e.tMs >= f.atMs);
  const backMs = f.clearedMs ?? f.atMs;
  let recoveredMs: number | null = null;
  const missing: string[] = [];
  for (const vm of loadedVms) {
    const ok = requests.find((r) => r.vm === vm && r.ok && r.sentMs >= backMs);
    if (ok) recoveredMs = Math.max(recoveredMs ?? 0, ok.doneMs);
    else missing.push(vm);
  }
  if (missing.length) recoveredMs = null;
  const windowEndMs = recoveredMs ?? endMs;
  return {
    vm: f.vm,
    kind: f.kind,
    infra: true,
    injectedMs: f.atMs,
    detectedMs: detection ? detection.tMs : null,
    detectedBy: detection ? `${detection.vm}: ${detection.reason}` : null,
    recoveredMs,
    mttdMs: detection ? round(detection.tMs - f.atMs) : null,
    mttrMs: recoveredMs === null ? null : round(recoveredMs - f.atMs),
    ...(missing.length ? { note: `${missing.join(', ')} served nothing after ${f.vm} came back` } : {}),
    windowEndMs: round(windowEndMs),
    neighbours: loadedVms.map((vm) => neighbourFigures(vm, [...requests], f.atMs, windowEndMs)),
  };
}

/** A timeline step as far as faults go (the scenario's step, loosely typed to keep this core free of the schema). */
export interface FaultStep {
  fault?: string | undefined;
  vm?: string | undefined;
  for?: number | undefined;
  unfault?: string | undefined;
  infra?: string | undefined;
}

/** The faults a timeline injected, with when each was lifted, from its steps and what became of them. */
export function faultsFromTimeline(
  steps: readonly FaultStep[],
  outcomes: readonly {
    step?: number | undefined;
    ok: boolean;
    startedMs?: number | undefined;
    doneMs?: number | undefined;
  }[],
): InjectedFault[] {
  const done = outcomes
    .filter((x) => x.ok && x.step !== undefined && x.startedMs !== undefined)
    .map((x) => ({ step: steps[x.step!]!, startedMs: x.startedMs!, doneMs: x.doneMs ?? x.startedMs! }))
    .sort((a, b) => a.startedMs - b.startedMs);
  const faults: InjectedFault[] = [];
  for (const [i, d] of done.entries()) {
    const st = d.step;
    if (st.infra !== undefined) {
      faults.push({
        vm: st.infra.replace(/-(graceful-)?restart$|-power-cut$/, ''),
        kind: st.infra,
        infra: true,
        atMs: d.startedMs,
        clearedMs: d.doneMs,
      });
      continue;
    }
    // resume lifts a pause; it is not a fault of its own.
    if (st.fault === undefined || st.vm === undefined || st.fault === 'resume') continue;
    const lifted = done
      .slice(i + 1)
      .find((l) => l.step.unfault === st.vm || (l.step.fault === 'resume' && l.step.vm === st.vm));
    const ends = [st.for !== undefined ? d.startedMs + st.for : Infinity, lifted?.startedMs ?? Infinity];
    const clearedMs = Math.min(...ends) < Infinity ? Math.min(...ends) : undefined;
    faults.push({ vm: st.vm, kind: st.fault, atMs: d.startedMs, ...(clearedMs !== undefined ? { clearedMs } : {}) });
  }
  return faults;
}

/** One SLO row about a fault (the report's SloResult has the same shape). */
export interface FaultSloRow {
  vm: string;
  metric: 'mttdMs' | 'mttrMs' | 'faultWindowP99Ms' | 'faultWindowErrorRate';
  threshold: number;
  actual: number;
  pass: boolean;
  fault: string;
}

interface SloRules {
  p99Ms?: number | undefined;
  errorRate?: number | undefined;
  perVm: Record<string, { p99Ms?: number | undefined; errorRate?: number | undefined }>;
  faults?: { mttdMs?: number | undefined; mttrMs?: number | undefined } | undefined;
}

export function describeFault(f: FaultOutcome): string {
  return `${f.infra ? f.kind : `${f.kind} ${f.vm}`} at ${Math.round(f.injectedMs)} ms`;
}

/**
 * A chaos run's SLOs: detection and recovery within the scenario's `slo.faults` limits (a
 * fault never detected or never recovered from misses them), and every other loaded VM
 * keeping its own p99 and error-rate objectives while a VM fault lasts. Infrastructure
 * faults hit every VM at once, so only their detection and recovery are judged.
 */
export function faultSlos(outcomes: readonly FaultOutcome[], slo: SloRules): FaultSloRow[] {
  const rows: FaultSloRow[] = [];
  for (const f of outcomes) {
    const fault = describeFault(f);
    const vm = f.vm;
    for (const metric of ['mttdMs', 'mttrMs'] as const) {
      const limit = slo.faults?.[metric];
      if (limit === undefined) continue;
      const actual = f[metric];
      rows.push({
        vm,
        fault,
        metric,
        threshold: limit,
        actual: actual ?? -1,
        pass: actual !== null && actual <= limit,
      });
    }
    if (f.infra) continue;
    for (const n of f.neighbours) {
      if (n.requests === 0) continue;
      const rule = { p99Ms: slo.p99Ms, errorRate: slo.errorRate, ...slo.perVm[n.vm] };
      if (rule.p99Ms !== undefined)
        rows.push({
          vm: n.vm,
          fault,
          metric: 'faultWindowP99Ms',
          threshold: rule.p99Ms,
          actual: n.p99Ms,
          pass: n.p99Ms <= rule.p99Ms,
        });
      if (rule.errorRate !== undefined) {
        const rate = Math.round(n.errorRate * 1e5) / 1e5;
        rows.push({
          vm: n.vm,
          fault,
          metric: 'faultWindowErrorRate',
          threshold: rule.errorRate,
          actual: rate,
          pass: n.errorRate <= rule.errorRate,
        });
      }
    }
  }
  return rows;
}

const ms = (x: number | null) => (x === null ? '—' : x >= 100 ? x.toFixed(0) : x.toFixed(1));

/** The report.md section: one row per fault, then what the other VMs saw meanwhile. */
export function renderFaults(outcomes: readonly FaultOutcome[]): string[] {
  if (outcomes.length === 0) return [];
  const L = [
    '',
    '## Faults',
    '',
    'Simulated ms since the load started. MTTD: injection to detection; MTTR: injection until the VM (every VM, for an infrastructure fault) served a client again.',
    '',
    '| fault | VM | injected | detected by | MTTD | MTTR | others during the fault (p99 ms, errors/requests) |',
    '|---|---|---:|---|---:|---:|---|',
  ];
  for (const f of outcomes) {
    const others = f.neighbours.map((n) => `${n.vm} ${ms(n.p99Ms)}, ${n.errors}/${n.requests}`).join('; ') || '—';
    const by = (f.detectedBy ?? 'not detected').replace(/\|/g, '/');
    L.push(
      `| ${f.kind} | ${f.vm} | ${ms(f.injectedMs)} | ${by} | ${ms(f.mttdMs)} | ${ms(f.mttrMs)}${f.note ? ` (${f.note})` : ''} | ${others} |`,
    );
  }
  return L;
}
