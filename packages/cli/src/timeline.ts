import type { Clock, FaultSpec, StressKind, TimerHandle } from '@vmsim/shared';
import { fmtMs } from './format.ts';
import type { InfraStep, Scenario } from './scenario.ts';

/** One timeline step of a scenario: at `at` simulated ms into the load, one action (the schema checks there is one). */
export type TimelineStep = Scenario['timeline'][number];

/** What the timeline asks of the hypervisor (the management API's stress and unstress). */
export interface TimelineApi {
  stress(vm: string, kind: StressKind, durationMs: number | undefined): Promise<unknown>;
  unstress(vm: string): Promise<unknown>;
  fault(vm: string, spec: FaultSpec): Promise<unknown>;
  unfault(vm: string): Promise<unknown>;
  /** Absent when the run cannot reach the stack's processes (an attached stack). */
  infra?: ((step: InfraStep) => Promise<unknown>) | undefined;
  /** The storage steps (the management API's ops of the same names); absent: such a step fails. */
  storage?: TimelineStorageApi | undefined;
}

export interface TimelineStorageApi {
  diskSnapshot(disk: string, snapshot: string): Promise<unknown>;
  diskDeleteSnapshot(disk: string, snapshot: string): Promise<unknown>;
  poolAddDisk(pool: string, disk: string, sizeGiB: number | undefined): Promise<unknown>;
  diskDelete(disk: string): Promise<unknown>;
}

export interface TimelineOptions {
  steps: readonly TimelineStep[];
  clock: Clock;
  /** Simulated time the load started at, on `clock`. */
  startMs: number;
  /** Simulated ms the load lasts: later steps never run. */
  durationMs: number;
  api: TimelineApi;
  out: (line: string) => void;
}

/** What happened to one step. */
export interface StepOutcome {
  at: number;
  action: string;
  ok: boolean;
  error?: string;
  /** The step's index in the scenario's timeline. */
  step?: number;
  /** Simulated ms since the load started when the step was sent, and when it was done (the call returned). */
  startedMs?: number;
  doneMs?: number;
}

export interface RunningTimeline {
  readonly outcomes: StepOutcome[];
  /**
   * Cancels the steps still to come, waits for those under way, and stops every stressor
   * the timeline started that still runs, so an attached stack is not left stressed.
   */
  stop(): Promise<void>;
}

function describe(step: TimelineStep): string {
  if (step.stress) {
    const s = step.stress;
    return `stress ${s.vm} ${s.kind}${s.for !== undefined ? ` for ${fmtMs(s.for)} ms` : ''}`;
  }
  if (step.fault !== undefined) {
    const extra = [
      step.target !== undefined ? ` ${step.target}` : '',
      step.delay !== undefined ? ` +${fmtMs(step.delay)} ms` : '',
      step.for !== undefined ? ` for ${fmtMs(step.for)} ms` : '',
    ].join('');
    return `fault ${step.vm} ${step.fault}${extra}`;
  }
  if (step.unfault !== undefined) return `unfault ${step.unfault}`;
  if (step.infra !== undefined) return `infra ${step.infra}`;
  // Worded as the CLI's `vmsim disk` and `vmsim pool` commands.
  if (step.diskSnapshot) return `disk snapshot ${step.diskSnapshot.disk} ${step.diskSnapshot.name}`;
  if (step.diskDeleteSnapshot)
    return `disk delete-snapshot ${step.diskDeleteSnapshot.disk} ${step.diskDeleteSnapshot.name}`;
  if (step.poolAddDisk) {
    const p = step.poolAddDisk;
    return `pool add-disk ${p.pool} ${p.disk}${p.sizeGiB !== undefined ? ` (first ${p.sizeGiB} GiB)` : ''}`;
  }
  if (step.diskDelete !== undefined) return `disk delete ${step.diskDelete}`;
  return `unstress ${step.unstress?.vm}`;
}

/** Runs a scenario's timeline against the load's clock; a failing step is reported, not thrown. */
export function startTimeline(o: TimelineOptions): RunningTimeline {
  const outcomes: StepOutcome[] = [];
  const timers = new Set<TimerHandle>();
  const underWay = new Set<Promise<void>>();
  /** VMs whose stressor the timeline started, with when it ends by itself (simulated ms; Infinity: never). */
  const stressed = new Map<string, number>();
  const run = async (step: TimelineStep, index: number): Promise<void> => {
    const action = describe(step);
    const startedMs = o.clock.now() - o.startMs;
    try {
      if (step.stress) {
        const { vm, kind } = step.stress;
        const endsAt = step.stress.for !== undefined ? o.clock.now() + step.stress.for : Infinity;
        await o.api.stress(vm, kind, step.stress.for);
        stressed.set(vm, endsAt);
      } else if (step.unstress) {
        await o.api.unstress(step.unstress.vm);
        stressed.delete(step.unstress.vm);
      } else if (step.fault !== undefined && step.vm !== undefined) {
        await o.api.fault(step.vm, {
          kind: step.fault,
          ...(step.for !== undefined ? { durationMs: step.for } : {}),
          ...(step.delay !== undefined ? { delayMs: step.delay } : {}),
          ...(step.target !== undefined ? { target: step.target } : {}),
        });
      } else if (step.unfault !== undefined) {
        await o.api.unfault(step.unfault);
      } else if (step.infra !== undefined) {
        if (!o.api.infra) throw new Error('infrastructure faults need a stack this run started (not --attach)');
        await o.api.infra(step.infra);
      } else if (step.diskSnapshot || step.diskDeleteSnapshot || step.poolAddDisk || step.diskDelete !== undefined) {
        const storage = o.api.storage;
        if (!storage) throw new Error('this run has no storage API for a storage step');
        if (step.diskSnapshot) await storage.diskSnapshot(step.diskSnapshot.disk, step.diskSnapshot.name);
        else if (step.diskDeleteSnapshot)
          await storage.diskDeleteSnapshot(step.diskDeleteSnapshot.disk, step.diskDeleteSnapshot.name);
        else if (step.poolAddDisk)
          await storage.poolAddDisk(step.poolAddDisk.pool, step.poolAddDisk.disk, step.poolAddDisk.sizeGiB);
        else if (step.diskDelete !== undefined) await storage.diskDelete(step.diskDelete);
      }
      outcomes.push({ at: step.at, action, ok: true, step: index, startedMs, doneMs: o.clock.now() - o.startMs });
      o.out(`  timeline ${fmtMs(step.at)} ms: ${action}`);
    } catch (e) {
      const error = (e as Error).message;
      outcomes.push({
        at: step.at,
        action,
        ok: false,
        error,
        step: index,
        startedMs,
        doneMs: o.clock.now() - o.startMs,
      });
      o.out(`  timeline ${fmtMs(step.at)} ms: ${action} FAILED: ${error}`);
    }
  };
  for (const [index, step] of o.steps.entries()) {
    if (step.at > o.durationMs) {
      outcomes.push({ at: step.at, action: describe(step), ok: false, error: 'after the end of the load' });
      o.out(`  timeline ${fmtMs(step.at)} ms: ${describe(step)} skipped: the load lasts ${fmtMs(o.durationMs)} ms`);
      continue;
    }
    const timer = o.clock.at(o.startMs + step.at, () => {
      timers.delete(timer);
      const p = run(step, index).finally(() => underWay.delete(p));
      underWay.add(p);
    });
    timers.add(timer);
  }
  return {
    outcomes,
    stop: async () => {
      for (const t of timers) o.clock.cancel(t);
      timers.clear();
      await Promise.all([...underWay]);
      const now = o.clock.now();
      for (const [vm, endsAt] of stressed) {
        if (endsAt <= now) continue;
        await o.api.unstress(vm).then(
          () => o.out(`  timeline: stopped the stressor of ${vm} at the end of the load`),
          (e: unknown) => o.out(`  timeline: could not stop the stressor of ${vm}: ${(e as Error).message}`),
        );
      }
      stressed.clear();
    },
  };
}
