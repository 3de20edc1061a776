import fs from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { APP_KINDS, CRASH_POLICIES, GUEST_OSES, ResourceLimits, STRESS_KINDS, VmName } from '@vmsim/shared';
import { parseDuration } from './format.ts';

/** A duration: "500ms", "10s", "2m", or a number of ms. Simulated time. */
const Duration = z.union([z.number().min(0), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number') return v;
  try {
    return parseDuration(v, 'duration');
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

const Mix = z.record(z.string(), z.number().min(0));

const LoadCommon = {
  vm: VmName,
  mix: Mix.optional(),
  /** Web: the paths GETs choose from (default: the site's pages and assets). */
  paths: z.array(z.string().startsWith('/')).min(1).optional(),
};

export const OpenLoad = z
  .object({
    ...LoadCommon,
    model: z.literal('open').default('open'),
    ratePerS: z.number().positive(),
    arrival: z.enum(['poisson', 'constant']).default('poisson'),
  })
  .strict();
export const ClosedLoad = z
  .object({
    ...LoadCommon,
    model: z.literal('closed'),
    users: z.number().int().min(1).max(10_000),
    thinkMs: Duration.default(1000),
  })
  .strict();
export const LoadSpec = z.union([ClosedLoad, OpenLoad]);
export type LoadSpec = z.infer<typeof LoadSpec>;

export const ScenarioVm = z
  .object({
    name: VmName,
    app: z.enum(APP_KINDS).default('web'),
    os: z.enum(GUEST_OSES).default('linux'),
    vcpus: z.number().int().min(1).max(64).default(1),
    memoryMiB: z.number().int().min(64).default(1024),
    diskGiB: z.number().min(0.125).default(4),
    shares: z.number().int().min(1).max(10_000).default(100),
    crashPolicy: z.enum(CRASH_POLICIES).default('restart'),
    ...ResourceLimits.shape,
  })
  .strict();
export type ScenarioVm = z.infer<typeof ScenarioVm>;

/**
 * A timeline step: at `at` (simulated time since the load started) one action —
 * `stress: {vm, kind, for?}` starts a stressor (for `for`, or until unstressed),
 * `unstress: {vm}` stops it.
 */
export const TimelineStep = z
  .object({
    at: Duration,
    stress: z
      .object({ vm: VmName, kind: z.enum(STRESS_KINDS), for: Duration.optional() })
      .strict()
      .optional(),
    unstress: z.object({ vm: VmName }).strict().optional(),
  })
  .strict()
  .superRefine((step, ctx) => {
    if ((step.stress ? 1 : 0) + (step.unstress ? 1 : 0) !== 1)
      ctx.addIssue({ code: 'custom', message: 'a step takes exactly one action: stress or unstress' });
    if (step.stress?.for !== undefined && !(step.stress.for > 0))
      ctx.addIssue({ code: 'custom', path: ['stress', 'for'], message: 'must be longer than 0' });
  });

const Slo = z
  .object({
    /** Simulated ms. */
    p99Ms: z.number().positive().optional(),
    /** Errors and timeouts over requests sent, 0..1. */
    errorRate: z.number().min(0).max(1).optional(),
  })
  .strict();

export const Scenario = z
  .object({
    name: z.string().min(1).max(128),
    description: z.string().default(''),
    seed: z.union([z.number().int(), z.string()]).default(1),
    /** Simulated time the load runs for. */
    duration: Duration.default(60_000),
    /** Wall ms per simulated ms. */
    timeScale: z.number().positive().max(1000).default(10),
    host: z
      .object({
        profile: z.string().default('small'),
        hypervisor: z.enum(['type1', 'type2']).default('type1'),
        /** `both` runs the scenario twice, under fifo and under fair, and reports them side by side. */
        scheduler: z.enum(['fair', 'fifo', 'both']).default('fair'),
        overcommit: z.number().min(1).max(10).default(1),
      })
      .strict()
      .default({ profile: 'small', hypervisor: 'type1', scheduler: 'fair', overcommit: 1 }),
    vms: z.array(ScenarioVm).min(1).max(256),
    load: z.array(LoadSpec).default([]),
    timeline: z.array(TimelineStep).default([]),
    slo: Slo.extend({ perVm: z.record(z.string(), Slo).default({}) })
      .strict()
      .default({ perVm: {} }),
  })
  .strict()
  .superRefine((s, ctx) => {
    const names = new Set<string>();
    s.vms.forEach((vm, i) => {
      if (names.has(vm.name))
        ctx.addIssue({ code: 'custom', path: ['vms', i, 'name'], message: `duplicate VM name ${vm.name}` });
      names.add(vm.name);
    });
    s.load.forEach((l, i) => {
      if (!names.has(l.vm))
        ctx.addIssue({ code: 'custom', path: ['load', i, 'vm'], message: `no VM named ${l.vm} in vms` });
    });
    s.timeline.forEach((step, i) => {
      const action = step.stress ? 'stress' : 'unstress';
      const vm = (step.stress ?? step.unstress)?.vm;
      if (vm !== undefined && !names.has(vm))
        ctx.addIssue({ code: 'custom', path: ['timeline', i, action, 'vm'], message: `no VM named ${vm} in vms` });
      if (step.at > s.duration)
        ctx.addIssue({
          code: 'custom',
          path: ['timeline', i, 'at'],
          message: `after the load ends (${s.duration} ms)`,
        });
    });
    for (const vm of Object.keys(s.slo.perVm)) {
      if (!names.has(vm))
        ctx.addIssue({ code: 'custom', path: ['slo', 'perVm', vm], message: `no VM named ${vm} in vms` });
    }
  });
export type Scenario = z.infer<typeof Scenario>;

/** A scenario file that cannot be used; the message names the file and the bad field. */
export class ScenarioError extends Error {}

export function parseScenario(text: string, source: string): Scenario {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) throw new ScenarioError(`${source}: not valid YAML: ${doc.errors[0]!.message}`);
  const parsed = Scenario.safeParse(doc.toJS());
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`);
    throw new ScenarioError(`${source}: invalid scenario\n${lines.join('\n')}`);
  }
  return parsed.data;
}

export function loadScenario(file: string): Scenario {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ScenarioError(`${file}: cannot read: ${(e as Error).message}`);
  }
  return parseScenario(text, file);
}
