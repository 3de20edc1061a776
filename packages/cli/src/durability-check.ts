import type { Clock, Logger } from '@vmsim/shared';
import { DurabilityWorkload, type DurabilityResult, type Send } from '@vmsim/client-gen';
import type { Scenario } from './scenario.ts';

/** What report.json shows of a db VM's durability check. */
export interface DurabilityFigures {
  /** Keys the db acknowledged: every one must read back with its value. */
  acked: number;
  /** Acknowledged keys missing or with other bytes at the end of the run: must be 0. */
  lost: number;
  written: number;
  /** Keys whose writes were never acknowledged (allowed to be lost), and how many landed anyway. */
  unacked: number;
  unackedLanded: number;
  /** Keys read back with bytes never written. */
  corrupt: number;
  /** Keys the read-back could not reach (the VM did not serve again). */
  unverified: number;
  /** PUTs sent, retries included, and those that failed. */
  attempts: number;
  failedAttempts: number;
  examples: string[];
}

export function durabilityFigures(r: DurabilityResult): DurabilityFigures {
  return {
    acked: r.acked,
    lost: r.lost,
    written: r.written,
    unacked: r.unacked,
    unackedLanded: r.unackedLanded,
    corrupt: r.corrupt,
    unverified: r.unverified,
    attempts: r.attempts,
    failedAttempts: Object.values(r.failedAttempts).reduce((a, b) => a + b, 0),
    examples: r.examples,
  };
}

/** The check holds when nothing acknowledged was lost, nothing read back corrupt, and everything was read. */
export function durabilityHeld(d: DurabilityFigures): boolean {
  return d.lost === 0 && d.corrupt === 0 && d.unverified === 0;
}

export interface DurabilityChecks {
  /** VMs being checked. */
  readonly vms: string[];
  /**
   * Ends the write phase, waits for each VM to serve (`serving` resolves true) and reads
   * every key back. A VM that never serves again has all its keys unverified.
   */
  finish(serving: (vm: string) => Promise<boolean>): Promise<Map<string, DurabilityFigures>>;
  /** No new keys (keys in progress are settled). */
  stop(): void;
  /** Stops writing at once (a failed run). */
  abort(): void;
}

/**
 * Starts a durability writer on every db VM whose load entry asks for it. Keys are unique
 * to this run (`dur/<runId>:<n>`), so a run on a VM that kept data from another one is fine.
 */
export function startDurabilityChecks(o: {
  scenario: Scenario;
  runId: string;
  clock: Clock;
  send: Send;
  logger?: Logger | undefined;
}): DurabilityChecks {
  const checks = o.scenario.load
    .filter((l) => l.durability)
    .map((l) => {
      const w = new DurabilityWorkload({
        vm: l.vm,
        seed: o.scenario.seed,
        prefix: `dur/${o.runId}`,
        clock: o.clock,
        send: o.send,
        // Bounded by the run's duration (finish() stops it), not by a key count.
        maxKeys: 100_000_000,
        concurrency: typeof l.durability === 'object' ? l.durability.concurrency : 8,
        logger: o.logger,
      });
      return { vm: l.vm, w, writing: w.write() };
    });
  return {
    vms: checks.map((c) => c.vm),
    stop: () => checks.forEach((c) => c.w.stop()),
    abort: () => checks.forEach((c) => c.w.abort()),
    finish: async (serving) => {
      for (const c of checks) c.w.stop();
      const out = new Map<string, DurabilityFigures>();
      for (const c of checks) {
        await c.writing;
        out.set(c.vm, durabilityFigures((await serving(c.vm)) ? await c.w.verify() : c.w.unverifiable()));
      }
      return out;
    },
  };
}

/** The report's durability section: one row per checked VM. */
export function renderDurability(vms: { name: string; durability?: DurabilityFigures | undefined }[]): string[] {
  const checked = vms.filter((v) => v.durability);
  if (checked.length === 0) return [];
  const L = [
    '',
    '## Durability',
    '',
    'Each checked db VM took unique keys alongside its load; at the end every key was read back. ' +
      'An acknowledged key must come back with its value (else it is *lost*); a write never acknowledged ' +
      '(error, timeout, crash) may be there or not, but never with other bytes.',
    '',
    '| VM | keys written | acknowledged | lost | unacknowledged (landed) | corrupt | unverified | PUTs (failed) | |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const v of checked) {
    const d = v.durability!;
    L.push(
      `| ${v.name} | ${d.written} | ${d.acked} | ${d.lost} | ${d.unacked} (${d.unackedLanded}) | ${d.corrupt} | ${d.unverified} | ` +
        `${d.attempts} (${d.failedAttempts}) | ${durabilityHeld(d) ? 'held' : '**FAILED**'} |`,
    );
  }
  for (const v of checked) {
    if (v.durability!.examples.length > 0) L.push('', `${v.name}: ${v.durability!.examples.join(', ')}.`);
  }
  return L;
}
