import fs from 'node:fs';
import path from 'node:path';
import { renderSeries, type Report } from './report.ts';
import { runScenario, type RunOptions } from './run.ts';
import type { Scenario } from './scenario.ts';

export const SCHEDULING_POLICIES = ['fifo', 'fair'] as const;
export type SchedulingPolicy = (typeof SCHEDULING_POLICIES)[number];

/** A scenario run once per scheduling policy (`host.scheduler: both`), side by side. */
export interface PolicyComparison {
  scenario: string;
  description: string;
  verdict: 'pass' | 'fail';
  policies: Record<SchedulingPolicy, Report>;
}

/**
 * Runs the scenario under `fifo`, then under `fair`, each on a fresh stack with the same
 * seed, so the only difference is how the devices pick whose request goes next. Each run
 * keeps its full report in a subdirectory; the top-level report puts them side by side.
 */
export async function runScenarioPolicies(o: RunOptions): Promise<PolicyComparison> {
  const reports = {} as Record<SchedulingPolicy, Report>;
  for (const policy of SCHEDULING_POLICIES) {
    o.out(`— under ${policy} —`);
    const scenario: Scenario = { ...o.scenario, host: { ...o.scenario.host, scheduler: policy } };
    reports[policy] = await runScenario({
      ...o,
      scenario,
      reportDir: path.join(o.reportDir, policy),
      home: path.join(o.home, policy),
    });
  }
  const both: PolicyComparison = {
    scenario: o.scenario.name,
    description: o.scenario.description,
    verdict: SCHEDULING_POLICIES.every((p) => reports[p].verdict === 'pass') ? 'pass' : 'fail',
    policies: reports,
  };
  fs.mkdirSync(o.reportDir, { recursive: true });
  fs.writeFileSync(path.join(o.reportDir, 'report.json'), `${JSON.stringify(both, null, 2)}\n`);
  fs.writeFileSync(path.join(o.reportDir, 'report.md'), renderComparison(both));
  o.out(`report: ${path.join(o.reportDir, 'report.md')} (each policy's full report in fifo/ and fair/)`);
  return both;
}

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

export function renderComparison(c: PolicyComparison): string {
  const L: string[] = [
    `# vmsim run: ${c.scenario} under fifo and fair — ${c.verdict === 'pass' ? 'PASS' : 'FAIL'}`,
    '',
  ];
  if (c.description) L.push(c.description, '');
  L.push(
    'The same scenario, seed and load, run once with every device scheduler in `fifo` (first come, first served: no ' +
      'isolation) and once in `fair` (start-time fair queueing by shares). Latencies are simulated milliseconds.',
    '',
    '| VM | fifo req/s | fair req/s | fifo p99 ms | fair p99 ms | fifo queue wait ms | fair queue wait ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const v of c.policies.fifo.vms) {
    const w = c.policies.fair.vms.find((x) => x.name === v.name);
    if (!w) continue;
    L.push(
      `| ${v.name} | ${fmt(v.throughputPerS)} | ${fmt(w.throughputPerS)} | ${fmt(v.latencyMs.p99)} | ${fmt(w.latencyMs.p99)} | ` +
        `${fmt(v.queueWaitMs)} | ${fmt(w.queueWaitMs)} |`,
    );
  }
  for (const p of SCHEDULING_POLICIES) {
    const r = c.policies[p];
    L.push(...renderSeries(r, `## Latency over time under ${p}`));
    const missed = r.slo.filter((s) => !s.pass);
    L.push(
      '',
      `Under ${p}: verdict ${r.verdict.toUpperCase()}` +
        (missed.length
          ? ` (missed: ${missed.map((s) => `${s.vm} ${s.metric} ${s.actual} > ${s.threshold}`).join('; ')})`
          : '') +
        (r.fidelity.degraded ? `; **degraded run**: ${r.fidelity.reasons.join(' ')}` : '') +
        `. Full report: [${p}/report.md](${p}/report.md).`,
    );
  }
  L.push('');
  return L.join('\n');
}
