import path from 'node:path';
import { table } from './format.ts';
import { runScenario } from './run.ts';
import { Scenario } from './scenario.ts';

export interface CompareOptions {
  guests: number[];
  /** Simulated ms of load per run. */
  durationMs: number;
  timeScale: number;
  reportDir: string;
  home: string;
  natsUrl: string | undefined;
  out: (line: string) => void;
}

export interface CompareRow {
  type: 'type1' | 'type2';
  guests: number;
  /** Requests per simulated second, all guests together. */
  throughputPerS: number;
  /** The median over guests of each guest's p99 latency, simulated ms. */
  p99Ms: number;
  /** Simulated CPU ms the host side (VMM, host OS) used. */
  hostCpuMs: number;
  errors: number;
  degraded: boolean;
}

/**
 * The same CPU-bound web workload on a type-1 and a type-2 host with more and more guests:
 * every guest runs two users who ask without pause for a dynamic page (≈1 ms of CPU), so
 * the four cores saturate and whatever the hypervisor itself takes is lost to the guests.
 */
export function scenarioFor(type: 'type1' | 'type2', guests: number, durationMs: number, timeScale: number): Scenario {
  return Scenario.parse({
    name: `compare-${type}-${guests}`,
    description: `${guests} web guests on a ${type} hypervisor, CPU-bound closed-model load`,
    seed: 7,
    duration: durationMs,
    timeScale,
    host: { profile: 'small', hypervisor: type, scheduler: 'fair', overcommit: 1 },
    vms: Array.from({ length: guests }, (_, i) => ({
      name: `g${i + 1}`,
      app: 'web',
      os: 'bsd',
      vcpus: 1,
      memoryMiB: 512,
      diskGiB: 0.25,
      crashPolicy: 'preserve',
    })),
    load: Array.from({ length: guests }, (_, i) => ({
      vm: `g${i + 1}`,
      model: 'closed',
      users: 2,
      thinkMs: 0,
      mix: { GET: 1, POST: 0 },
      paths: ['/api/items'],
    })),
  });
}

export async function compareTypes(o: CompareOptions): Promise<CompareRow[]> {
  const rows: CompareRow[] = [];
  for (const guests of o.guests) {
    for (const type of ['type1', 'type2'] as const) {
      const scenario = scenarioFor(type, guests, o.durationMs, o.timeScale);
      o.out(`running ${type} with ${guests} guest${guests > 1 ? 's' : ''}…`);
      const report = await runScenario({
        scenario,
        reportDir: path.join(o.reportDir, `${type}-${guests}`),
        home: path.join(o.home, `${type}-${guests}`),
        natsUrl: o.natsUrl,
        out: () => undefined,
      });
      const p99s = report.vms.map((v) => v.latencyMs.p99).sort((a, b) => a - b);
      const row: CompareRow = {
        type,
        guests,
        throughputPerS: report.vms.reduce((s, v) => s + v.throughputPerS, 0),
        p99Ms: p99s[Math.floor((p99s.length - 1) / 2)] ?? 0,
        hostCpuMs: report.host.hostCpuMs,
        errors: report.vms.reduce((s, v) => s + v.errors, 0),
        degraded: report.fidelity.degraded,
      };
      rows.push(row);
      o.out(
        `  ${row.throughputPerS.toFixed(0)} req/s, p99 ${row.p99Ms.toFixed(2)} ms, host side ${row.hostCpuMs.toFixed(0)} CPU ms`,
      );
    }
  }
  return rows;
}

export function printComparison(rows: CompareRow[], out: (line: string) => void): void {
  const guests = [...new Set(rows.map((r) => r.guests))];
  const get = (t: 'type1' | 'type2', n: number) => rows.find((r) => r.type === t && r.guests === n)!;
  out('');
  out(
    table(
      ['GUESTS', 'TYPE1 req/s', 'TYPE2 req/s', 'TYPE2 LOSS', 'TYPE1 p99 ms', 'TYPE2 p99 ms', 'HOST CPU ms t1/t2'],
      guests.map((n) => {
        const a = get('type1', n);
        const b = get('type2', n);
        return [
          n,
          a.throughputPerS.toFixed(0),
          b.throughputPerS.toFixed(0),
          `${((1 - b.throughputPerS / a.throughputPerS) * 100).toFixed(1)}%`,
          a.p99Ms.toFixed(2),
          b.p99Ms.toFixed(2),
          `${a.hostCpuMs.toFixed(0)}/${b.hostCpuMs.toFixed(0)}`,
        ];
      }),
    ),
  );
  out('(simulated time; TYPE2 LOSS is the throughput a hosted hypervisor loses against a bare-metal one)');
  if (rows.some((r) => r.degraded)) out('note: some runs were flagged degraded: see their report.md');
}
