import type {
  ActiveFault,
  Clock,
  FaultEventInfo,
  FaultSpec,
  GuestControl,
  Logger,
  StressKind,
  TimerHandle,
} from '@vmsim/shared';
import { DEFAULT_SLOW_DELAY_MS, ErrorCode, VmsimError } from '@vmsim/shared';
import { HealthDetector } from './health.ts';
import type { VmRecord } from './registry.ts';

/** The stressor each hog target runs (the isolation benchmark's). */
export const HOG_STRESSORS = { cpu: 'cpu', disk: 'disk', net: 'net-send' } as const satisfies Record<
  string,
  StressKind
>;

/** What the fault injector and the watchdog need of the hypervisor. */
export interface ChaosDeps {
  clock: Clock;
  logger: Logger;
  heartbeatMs: number;
  /** Publishes (and logs) a VM event of `kind` with its reason. */
  event(
    rec: VmRecord,
    kind: 'fault' | 'health' | 'watchdog',
    reason: string,
    extra?: { fault?: FaultEventInfo; health?: 'degraded' | 'recovered' },
  ): void;
  guestControl(name: string, ctl: GuestControl): void;
  stress(name: string, kind: StressKind, durationMs: number | undefined): void;
  unstress(name: string): void;
  /** Ends the guest from the hypervisor's side: `crash` applies the crash policy, `destroy` powers it off. */
  powerOff(rec: VmRecord, cmd: 'crash' | 'destroy', reason: string): void;
  /** SIGSTOP and state paused. */
  pause(rec: VmRecord, reason: string): void;
}

/** Per-VM state of the injector, the watchdog and the health detector. */
export interface ChaosState {
  fault: ActiveFault | null;
  /** The guest process the fault went into: a fault ends with its process. */
  faultPid: number | null;
  faultTimer: TimerHandle | undefined;
  /** The watchdog fired for this silence already (a heartbeat re-arms it). */
  watchdogFired: boolean;
  health: HealthDetector;
  /** Counters the health sampler takes deltas of. */
  heldMs: number;
  dispatched: number;
  badMessages: number;
  sampled: { t: number; heldMs: number; dispatched: number; badMessages: number; heartbeats: number };
  heartbeats: number;
}

export function newChaosState(): ChaosState {
  return {
    fault: null,
    faultPid: null,
    faultTimer: undefined,
    watchdogFired: false,
    health: new HealthDetector(),
    heldMs: 0,
    dispatched: 0,
    badMessages: 0,
    sampled: { t: 0, heldMs: 0, dispatched: 0, badMessages: 0, heartbeats: 0 },
    heartbeats: 0,
  };
}

const ONE_SHOT = new Set(['crash', 'kill']);
const fmtFor = (ms: number | undefined): string => (ms === undefined ? 'until cleared' : `for ${ms} simulated ms`);

/**
 * Fault injection into running VMs, the per-VM watchdog, and `degraded` detection from the
 * VM's own figures. Every step is a VM event with a reason.
 */
export class Chaos {
  private readonly d: ChaosDeps;

  constructor(deps: ChaosDeps) {
    this.d = deps;
  }

  private faultEvent(rec: VmRecord, f: ActiveFault, phase: 'injected' | 'cleared', reason: string): void {
    this.d.event(rec, 'fault', reason, {
      fault: { kind: f.kind, phase, ...(f.target !== undefined ? { target: f.target } : {}) },
    });
  }

  /** Injects `spec` into a running VM, replacing the fault it has (resume clears a pause). */
  inject(rec: VmRecord, spec: FaultSpec): void {
    const name = rec.def.name;
    const c = rec.chaos;
    if (spec.kind === 'resume') {
      if (c.fault?.kind !== 'pause') {
        throw new VmsimError(ErrorCode.BAD_STATE, `cannot resume VM ${name}: it has no pause fault`);
      }
      this.clear(rec, 'resume: SIGCONT sent');
      return;
    }
    if (rec.state !== 'running' || !rec.proc) {
      throw new VmsimError(
        ErrorCode.BAD_STATE,
        `cannot inject ${spec.kind} into VM ${name}: it is ${rec.state}, not running`,
      );
    }
    if (spec.target !== undefined && spec.kind !== 'hog') {
      throw new VmsimError(ErrorCode.SCHEMA, `target: only a hog fault has one (not ${spec.kind})`);
    }
    if (spec.delayMs !== undefined && spec.kind !== 'slow') {
      throw new VmsimError(ErrorCode.SCHEMA, `delayMs: only a slow fault has one (not ${spec.kind})`);
    }
    if (c.fault) this.clear(rec, `replaced by ${spec.kind}`);
    const oneShot = ONE_SHOT.has(spec.kind);
    const durationMs = oneShot ? undefined : spec.durationMs;
    const now = Date.now();
    const f: ActiveFault = {
      kind: spec.kind,
      ...(spec.kind === 'hog' ? { target: spec.target ?? 'cpu' } : {}),
      ...(spec.kind === 'slow' ? { delayMs: spec.delayMs ?? DEFAULT_SLOW_DELAY_MS } : {}),
      since: now,
      until: durationMs === undefined ? null : now + durationMs * this.timeScale(),
    };
    c.fault = f;
    c.faultPid = rec.pid;
    const what =
      f.kind === 'hog'
        ? `hog ${f.target} (stressor ${HOG_STRESSORS[f.target!]})`
        : f.kind === 'slow'
          ? `slow (+${f.delayMs} simulated ms per hypercall)`
          : f.kind;
    this.faultEvent(
      rec,
      f,
      'injected',
      `fault ${what} injected into pid ${rec.pid} ${oneShot ? '(one-shot)' : fmtFor(durationMs)}`,
    );
    switch (f.kind) {
      case 'kill':
        // Not through powerOff: the hypervisor's own bookkeeping must see an unexpected death.
        rec.proc.kill('SIGKILL');
        break;
      case 'pause':
        // Frozen behind the hypervisor's back: its state stays running until the watchdog notices.
        rec.proc.kill('SIGSTOP');
        break;
      case 'slow':
        break;
      case 'hog':
        this.d.stress(name, HOG_STRESSORS[f.target!], durationMs);
        break;
      case 'crash':
      case 'hang':
      case 'leak':
      case 'garbage':
      case 'disconnect':
        this.d.guestControl(name, { cmd: 'fault', kind: f.kind, ...(durationMs !== undefined ? { durationMs } : {}) });
        break;
    }
    if (durationMs !== undefined) {
      const handle = this.d.clock.at(this.d.clock.now() + durationMs, () => {
        if (c.faultTimer !== handle) return;
        c.faultTimer = undefined;
        this.clear(rec, `its ${durationMs} simulated ms elapsed`);
      });
      c.faultTimer = handle;
    }
  }

  private timeScale(): number {
    const s = (this.d.clock as { timeScale?: number }).timeScale;
    return typeof s === 'number' ? s : 1;
  }

  /**
   * Ends a VM's fault now: undoes what the hypervisor did (SIGCONT, the stressor) and tells
   * the guest to stop acting it out. A hung or disconnected guest cannot hear that: it ends
   * its fault by itself when the duration is up, or when it is reset.
   */
  clear(rec: VmRecord, reason: string, processGone = false): void {
    const c = rec.chaos;
    const f = c.fault;
    if (!f) return;
    if (c.faultTimer) this.d.clock.cancel(c.faultTimer);
    c.faultTimer = undefined;
    c.fault = null;
    const alive = !processGone && rec.proc !== undefined && rec.pid === c.faultPid;
    c.faultPid = null;
    if (alive) {
      if (f.kind === 'pause') {
        rec.proc!.kill('SIGCONT');
        // Give it a fresh interval: heartbeats stopped while it was frozen.
        if (rec.state === 'running') c.watchdogFired = false;
      } else if (f.kind === 'hog' && rec.stress !== null) this.d.unstress(rec.def.name);
      else if (f.kind === 'leak' || f.kind === 'garbage') this.d.guestControl(rec.def.name, { cmd: 'fault-stop' });
    }
    this.faultEvent(rec, f, 'cleared', `fault ${f.kind} cleared: ${reason}`);
  }

  /** The guest process ended (or the VM left running/paused): its fault ended with it. */
  onProcessEnd(rec: VmRecord, state: string): void {
    if (rec.chaos.fault) this.clear(rec, `the guest process ended (VM ${state})`, true);
    // Its figures went with it: a new process starts from a new baseline.
    if (rec.chaos.health.state === 'degraded') {
      rec.chaos.health.reset();
      this.d.event(rec, 'health', `the degraded guest process ended (VM ${state})`, { health: 'recovered' });
    }
  }

  /** Simulated ms each hypercall of the VM is held before it is served (a slow fault). */
  hypercallDelayMs(rec: VmRecord): number {
    const f = rec.chaos.fault;
    return f?.kind === 'slow' ? (f.delayMs ?? DEFAULT_SLOW_DELAY_MS) : 0;
  }

  /** A fresh guest process: no fault, a fresh watchdog and a new baseline. */
  onStart(rec: VmRecord): void {
    const c = rec.chaos;
    c.watchdogFired = false;
    c.health.reset();
    c.sampled = {
      t: this.d.clock.now(),
      heldMs: c.heldMs,
      dispatched: c.dispatched,
      badMessages: c.badMessages,
      heartbeats: c.heartbeats,
    };
  }

  onHeartbeat(rec: VmRecord): void {
    rec.chaos.heartbeats++;
    rec.chaos.watchdogFired = false;
  }

  /**
   * A running VM silent for longer than its watchdog's timeout: a `watchdog` event, then its
   * action — reset (kill, crash policy), poweroff (stopped), pause (SIGSTOP, paused), none.
   * It fires once per silence; a heartbeat re-arms it.
   */
  watchdog(rec: VmRecord, nowWallMs: number, defaultTimeoutMs: number): void {
    const c = rec.chaos;
    if (rec.state !== 'running' || c.watchdogFired) return;
    const limit = rec.def.watchdog.timeoutMs ?? defaultTimeoutMs;
    const silent = nowWallMs - (rec.lastHeartbeatWallMs ?? rec.startedWallMs);
    if (silent <= limit) return;
    const action = rec.def.watchdog.action;
    const missed = Math.floor(silent / this.d.heartbeatMs);
    const reason = `watchdog: no heartbeat for ${silent} ms (${missed} missed at ${this.d.heartbeatMs} ms, limit ${limit} ms): ${action}`;
    c.watchdogFired = true;
    this.d.event(rec, 'watchdog', reason);
    if (action === 'reset') this.d.powerOff(rec, 'crash', reason);
    else if (action === 'poweroff') this.d.powerOff(rec, 'destroy', reason);
    else if (action === 'pause') this.d.pause(rec, reason);
  }

  /** One health interval of a running VM: its figures since the last one, to the detector. */
  sampleHealth(rec: VmRecord): void {
    const c = rec.chaos;
    const t = this.d.clock.now();
    const prev = c.sampled;
    c.sampled = { t, heldMs: c.heldMs, dispatched: c.dispatched, badMessages: c.badMessages, heartbeats: c.heartbeats };
    if (rec.state !== 'running') return;
    const change = c.health.observe({
      t,
      spanMs: t - prev.t,
      calls: c.dispatched - prev.dispatched,
      waitMs: c.heldMs - prev.heldMs,
      rejected: c.badMessages - prev.badMessages,
      lagMs: c.heartbeats > prev.heartbeats ? rec.guestLagMs : null,
    });
    if (change) this.d.event(rec, 'health', change.reason, { health: change.health });
  }
}
