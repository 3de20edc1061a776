import fs from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import {
  APP_KINDS,
  CRASH_POLICIES,
  FAULT_KINDS,
  GUEST_OSES,
  DEFAULT_POOL,
  HOG_TARGETS,
  PROVISIONING,
  StorageRequests,
  PoolName,
  ResourceLimits,
  SnapshotName,
  VmDiskSpec,
  VolumeName,
  STRESS_KINDS,
  VmName,
  WatchdogConfig,
} from '@vmsim/shared';
import { TargetSpecSchema } from '@vmsim/client-gen';
import { loadProfile } from '@vmsim/host-agent';
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
  /**
   * db only: also run the durability check on this VM (unique keys written alongside the
   * load, every acknowledged one read back at the end); `true` or the writers to use.
   */
  durability: z
    .union([z.boolean(), z.object({ concurrency: z.number().int().min(1).max(256).default(8) }).strict()])
    .optional(),
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
    memoryMiB: z
      .number()
      .int()
      .min(64)
      .max(1024 * 1024)
      .default(1024),
    diskGiB: z
      .number()
      .min(0.125)
      .max(16 * 1024)
      .default(4),
    shares: z.number().int().min(1).max(10_000).default(100),
    crashPolicy: z.enum(CRASH_POLICIES).default('restart'),
    maxRestarts: z.number().int().min(0).max(100).optional(),
    restartWindowMs: z.number().int().min(1000).max(86_400_000).optional(),
    /** What the watchdog does when heartbeats stop (reset, poweroff, pause, none), after timeoutMs wall ms. */
    watchdog: WatchdogConfig.strict().optional(),
    /** db only, UNSAFE teaching toggle: acknowledge writes before flushing them. */
    ackBeforeFlush: z.boolean().default(false),
    /** Its virtual disk: a new volume in `pool` (thin or thick), a clone of a template, or an existing volume. */
    disk: VmDiskSpec.optional(),
    ...ResourceLimits.shape,
  })
  .strict();
export type ScenarioVm = z.infer<typeof ScenarioVm>;

/** GiB of a physical disk to use (its first N GiB, a partition); absent: all of it. */
const PartitionGiB = z
  .number()
  .positive()
  .max(1024 * 1024);

/**
 * Storage the run sets up before it defines the VMs: pools of the host's physical disks,
 * volumes carved from them, and templates (golden images: a VM installed once, then frozen).
 */
export const ScenarioStorage = z
  .object({
    pools: z
      .array(
        z
          .object({
            id: PoolName,
            disks: z.array(z.string().min(1).max(64)).min(1).max(64),
            diskGiB: PartitionGiB.optional(),
            chunkMiB: z.number().int().min(1).max(64).optional(),
          })
          .strict(),
      )
      .default([]),
    disks: z
      .array(
        // What `vmsim disk create` takes.
        StorageRequests.diskCreate.strict(),
      )
      .default([]),
    templates: z
      .array(
        z
          .object({
            /** The template volume's name, and the name of the VM that installs it. */
            name: VolumeName,
            app: z.enum(APP_KINDS),
            os: z.enum(GUEST_OSES).default('linux'),
            pool: PoolName.default(DEFAULT_POOL),
            diskGiB: z
              .number()
              .min(0.125)
              .max(16 * 1024),
            provisioning: z.enum(PROVISIONING).default('thin'),
            memoryMiB: z
              .number()
              .int()
              .min(64)
              .max(1024 * 1024)
              .default(512),
          })
          .strict(),
      )
      .default([]),
  })
  .strict();
export type ScenarioStorage = z.infer<typeof ScenarioStorage>;

/**
 * Infrastructure faults a timeline can inject into a stack the run started itself: the
 * host-agent restarted (write caches flushed) or its power cut (lost), the hypervisor
 * crashed and restarted (guests re-adopted) or restarted gracefully, nats-server restarted.
 */
export const INFRA_STEPS = [
  'host-agent-restart',
  'host-agent-power-cut',
  'hypervisor-restart',
  'hypervisor-graceful-restart',
  'nats-restart',
] as const;
export type InfraStep = (typeof INFRA_STEPS)[number];

/**
 * A timeline step: at `at` (simulated time since the load started) one action —
 * `stress: {vm, kind, for?}` starts a stressor (for `for`, or until unstressed),
 * `unstress: {vm}` stops it; `fault: <kind>, vm, for?, delay?, target?` injects a fault
 * (see `vmsim fault`), `unfault: <vm>` clears it; `infra: <INFRA_STEPS>` hits the stack itself;
 * `diskSnapshot: {disk, name}`, `diskDeleteSnapshot: {disk, name}`, `poolAddDisk: {pool, disk,
 * sizeGiB?}` and `diskDelete: <volume>` act on storage (named as the management API's ops).
 */
export const TimelineStep = z
  .object({
    at: Duration,
    stress: z
      .object({ vm: VmName, kind: z.enum(STRESS_KINDS), for: Duration.optional() })
      .strict()
      .optional(),
    unstress: z.object({ vm: VmName }).strict().optional(),
    fault: z.enum(FAULT_KINDS).optional(),
    vm: VmName.optional(),
    for: Duration.optional(),
    /** slow: simulated ms added to each hypercall. */
    delay: Duration.optional(),
    /** hog: what it saturates. */
    target: z.enum(HOG_TARGETS).optional(),
    unfault: VmName.optional(),
    /** An infrastructure fault: restart or cut the power of the stack's own services (not on an attached stack). */
    infra: z.enum(INFRA_STEPS).optional(),
    diskSnapshot: z.object({ disk: VolumeName, name: SnapshotName }).strict().optional(),
    diskDeleteSnapshot: z.object({ disk: VolumeName, name: SnapshotName }).strict().optional(),
    /** `disk`: a physical disk of the host; `sizeGiB`: only its first GiB. */
    poolAddDisk: z
      .object({ pool: PoolName, disk: z.string().min(1).max(64), sizeGiB: PartitionGiB.optional() })
      .strict()
      .optional(),
    diskDelete: VolumeName.optional(),
  })
  .strict()
  .superRefine((step, ctx) => {
    const actions = [
      step.stress,
      step.unstress,
      step.fault,
      step.unfault,
      step.infra,
      step.diskSnapshot,
      step.diskDeleteSnapshot,
      step.poolAddDisk,
      step.diskDelete,
    ].filter((a) => a !== undefined).length;
    if (actions !== 1)
      ctx.addIssue({
        code: 'custom',
        message:
          'a step takes exactly one action: stress, unstress, fault, unfault, infra, diskSnapshot, ' +
          'diskDeleteSnapshot, poolAddDisk or diskDelete',
      });
    if (step.stress?.for !== undefined && !(step.stress.for > 0))
      ctx.addIssue({ code: 'custom', path: ['stress', 'for'], message: 'must be longer than 0' });
    if (step.fault !== undefined) {
      if (step.vm === undefined) ctx.addIssue({ code: 'custom', path: ['vm'], message: 'a fault step needs the VM' });
      if (step.for !== undefined && !(step.for > 0))
        ctx.addIssue({ code: 'custom', path: ['for'], message: 'must be longer than 0' });
      if (step.for !== undefined && (step.fault === 'crash' || step.fault === 'kill' || step.fault === 'resume'))
        ctx.addIssue({ code: 'custom', path: ['for'], message: `${step.fault} is one-shot` });
      if (step.delay !== undefined && step.fault !== 'slow')
        ctx.addIssue({ code: 'custom', path: ['delay'], message: 'only for a slow fault' });
      if (step.target !== undefined && step.fault !== 'hog')
        ctx.addIssue({ code: 'custom', path: ['target'], message: 'only for a hog fault' });
    } else {
      for (const k of ['vm', 'for', 'delay', 'target'] as const) {
        if (step[k] !== undefined) ctx.addIssue({ code: 'custom', path: [k], message: 'only in a fault step' });
      }
    }
  });

const Slo = z
  .object({
    /** Simulated ms. */
    p99Ms: z.number().positive().optional(),
    /** Errors and timeouts over requests sent, 0..1. */
    errorRate: z.number().min(0).max(1).optional(),
  })
  .strict();

/** What a chaos run demands of detection and recovery, for every fault its timeline injects. */
const FaultSlo = z
  .object({
    /** Longest time from injection to detection (simulated ms); a fault nothing detects fails it. */
    mttdMs: Duration.optional(),
    /** Longest time from injection until the VM serves a client again (simulated ms); no recovery fails it. */
    mttrMs: Duration.optional(),
  })
  .strict();

export const Scenario = z
  .object({
    name: z.string().min(1).max(128),
    description: z.string().default(''),
    seed: z.union([z.number().int(), z.string()]).default(1),
    /** Simulated time the load runs for. */
    duration: Duration.default(60_000),
    /**
     * How long a client waits for an answer before it counts a timeout and goes on (simulated):
     * a request lost with a restarting service holds a closed-model user that long.
     */
    clientTimeout: Duration.default(10_000),
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
    storage: ScenarioStorage.optional(),
    load: z.array(LoadSpec).default([]),
    timeline: z.array(TimelineStep).default([]),
    slo: Slo.extend({ perVm: z.record(z.string(), Slo).default({}), faults: FaultSlo.optional() })
      .strict()
      .default({ perVm: {} }),
  })
  .strict()
  .superRefine((s, ctx) => {
    // What would otherwise fail only once the stack is up: checked here, before anything starts.
    if (!(s.duration > 0)) ctx.addIssue({ code: 'custom', path: ['duration'], message: 'must be longer than 0' });
    let physical: { id: string; capacityGiB: number }[] | undefined;
    try {
      physical = loadProfile(s.host.profile).disks;
    } catch (e) {
      ctx.addIssue({ code: 'custom', path: ['host', 'profile'], message: (e as Error).message });
    }
    const names = new Set<string>();
    s.vms.forEach((vm, i) => {
      if (vm.cpuReservationPct && vm.cpuReservationPct > vm.vcpus * 100)
        ctx.addIssue({
          code: 'custom',
          path: ['vms', i, 'cpuReservationPct'],
          message: `at most ${vm.vcpus * 100}% with ${vm.vcpus} vCPU(s)`,
        });
      if (names.has(vm.name))
        ctx.addIssue({ code: 'custom', path: ['vms', i, 'name'], message: `duplicate VM name ${vm.name}` });
      names.add(vm.name);
      if (vm.ackBeforeFlush && vm.app !== 'db')
        ctx.addIssue({
          code: 'custom',
          path: ['vms', i, 'ackBeforeFlush'],
          message: `only for a db VM, not ${vm.app}`,
        });
    });
    const volumes = checkStorage(s, names, physical, ctx);
    s.load.forEach((l, i) => {
      if (!names.has(l.vm))
        ctx.addIssue({ code: 'custom', path: ['load', i, 'vm'], message: `no VM named ${l.vm} in vms` });
      const app = s.vms.find((v) => v.name === l.vm)?.app;
      // The load generator's own rules (rates, the app's ops in the mix, options of that app).
      const target =
        l.model === 'open'
          ? { model: l.model, ratePerS: l.ratePerS, arrival: l.arrival }
          : { model: l.model, users: l.users, thinkMs: l.thinkMs };
      const checked = TargetSpecSchema.safeParse({
        vm: l.vm,
        app: app ?? 'web',
        mix: l.mix,
        paths: l.paths,
        ...target,
      });
      for (const issue of checked.success ? [] : checked.error.issues)
        ctx.addIssue({ code: 'custom', path: ['load', i, ...issue.path.map(String)], message: issue.message });
      if (l.durability && app !== undefined && app !== 'db')
        ctx.addIssue({
          code: 'custom',
          path: ['load', i, 'durability'],
          message: `the durability check needs a db VM; ${l.vm} runs ${app}`,
        });
    });
    const checked = s.load.filter((l) => l.durability).map((l) => l.vm);
    checked.forEach((vm, i) => {
      if (checked.indexOf(vm) !== i)
        ctx.addIssue({
          code: 'custom',
          path: ['load'],
          message: `durability is asked twice for ${vm}; ask it on one load entry`,
        });
    });
    s.timeline.forEach((step, i) => {
      const [where, vm]: [string[], string | undefined] = step.stress
        ? [['stress', 'vm'], step.stress.vm]
        : step.unstress
          ? [['unstress', 'vm'], step.unstress.vm]
          : step.fault !== undefined
            ? [['vm'], step.vm]
            : step.unfault !== undefined
              ? [['unfault'], step.unfault]
              : [[], undefined];
      if (vm !== undefined && !names.has(vm))
        ctx.addIssue({ code: 'custom', path: ['timeline', i, ...where], message: `no VM named ${vm} in vms` });
      const [volumeAt, volume]: [string[], string | undefined] = step.diskSnapshot
        ? [['diskSnapshot', 'disk'], step.diskSnapshot.disk]
        : step.diskDeleteSnapshot
          ? [['diskDeleteSnapshot', 'disk'], step.diskDeleteSnapshot.disk]
          : step.diskDelete !== undefined
            ? [['diskDelete'], step.diskDelete]
            : [[], undefined];
      if (volume !== undefined && !volumes.has(volume))
        ctx.addIssue({
          code: 'custom',
          path: ['timeline', i, ...volumeAt],
          message: `no disk named ${volume} (a VM's disk is named after the VM; others come from storage.disks or storage.templates)`,
        });
      if (step.poolAddDisk) {
        const { pool, disk, sizeGiB } = step.poolAddDisk;
        if (!poolNames(s).has(pool))
          ctx.addIssue({
            code: 'custom',
            path: ['timeline', i, 'poolAddDisk', 'pool'],
            message: `no pool named ${pool} (${DEFAULT_POOL} or one in storage.pools)`,
          });
        const at = ['timeline', i, 'poolAddDisk'];
        checkPhysical(physical, disk, sizeGiB, [...at, 'disk'], [...at, 'sizeGiB'], ctx);
      }
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

type Ctx = z.core.$RefinementCtx;
type PhysicalDisk = { id: string; capacityGiB: number };

function poolNames(s: { storage?: ScenarioStorage | undefined }): Set<string> {
  return new Set([DEFAULT_POOL, ...(s.storage?.pools ?? []).map((p) => p.id)]);
}

/** A physical disk of the host's profile, and at most its capacity of it. */
function checkPhysical(
  physical: PhysicalDisk[] | undefined,
  disk: string,
  gib: number | undefined,
  diskPath: (string | number)[],
  gibPath: (string | number)[],
  ctx: Ctx,
): void {
  if (!physical) return; // the bad profile is reported already
  const d = physical.find((x) => x.id === disk);
  if (!d)
    ctx.addIssue({
      code: 'custom',
      path: diskPath,
      message: `the host has no disk ${disk} (it has ${physical.map((x) => x.id).join(', ')})`,
    });
  else if (gib !== undefined && gib > d.capacityGiB)
    ctx.addIssue({
      code: 'custom',
      path: gibPath,
      message: `${disk} holds only ${d.capacityGiB} GiB`,
    });
}

/**
 * Cross-checks the storage section against the host and the VMs; returns the names of every
 * volume the scenario makes (a VM's own disk is named after it).
 */
function checkStorage(
  s: { storage?: ScenarioStorage | undefined; vms: ScenarioVm[] },
  vmNames: Set<string>,
  physical: PhysicalDisk[] | undefined,
  ctx: Ctx,
): Set<string> {
  const st = s.storage;
  const pools = poolNames(s);
  const volumes = new Set(vmNames);
  const inPool = new Map<string, string>();
  const taken = new Set<string>([DEFAULT_POOL]);
  st?.pools.forEach((p, i) => {
    if (taken.has(p.id))
      ctx.addIssue({
        code: 'custom',
        path: ['storage', 'pools', i, 'id'],
        message: p.id === DEFAULT_POOL ? `${DEFAULT_POOL} is the host's own pool` : `duplicate pool ${p.id}`,
      });
    taken.add(p.id);
    p.disks.forEach((d, j) => {
      checkPhysical(
        physical,
        d,
        p.diskGiB,
        ['storage', 'pools', i, 'disks', j],
        ['storage', 'pools', i, 'diskGiB'],
        ctx,
      );
      const other = inPool.get(d);
      if (other !== undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['storage', 'pools', i, 'disks', j],
          message: `${d} is already in pool ${other}`,
        });
      inPool.set(d, p.id);
    });
  });
  const badPool = (pool: string, path: (string | number)[]) => {
    if (!pools.has(pool))
      ctx.addIssue({
        code: 'custom',
        path,
        message: `no pool named ${pool} (${DEFAULT_POOL} or one in storage.pools)`,
      });
  };
  const newVolume = (id: string, path: (string | number)[]) => {
    if (volumes.has(id))
      ctx.addIssue({
        code: 'custom',
        path,
        message: `a disk named ${id} exists already (a VM's disk is named after the VM)`,
      });
    volumes.add(id);
  };
  st?.disks.forEach((d, i) => {
    badPool(d.pool, ['storage', 'disks', i, 'pool']);
    newVolume(d.id, ['storage', 'disks', i, 'id']);
  });
  st?.templates.forEach((t, i) => {
    badPool(t.pool, ['storage', 'templates', i, 'pool']);
    newVolume(t.name, ['storage', 'templates', i, 'name']);
  });
  const templates = new Set((st?.templates ?? []).map((t) => t.name));
  const disks = new Set((st?.disks ?? []).map((d) => d.id));
  const attached = new Map<string, string>();
  s.vms.forEach((vm, i) => {
    if (!vm.disk) return;
    const at = ['vms', i, 'disk'];
    badPool(vm.disk.pool, [...at, 'pool']);
    if (vm.disk.clone !== undefined && !templates.has(vm.disk.clone))
      ctx.addIssue({
        code: 'custom',
        path: [...at, 'clone'],
        message: `no template named ${vm.disk.clone} in storage.templates`,
      });
    if (vm.disk.volume === undefined) return;
    if (!disks.has(vm.disk.volume))
      ctx.addIssue({
        code: 'custom',
        path: [...at, 'volume'],
        message: `no disk named ${vm.disk.volume} in storage.disks`,
      });
    const other = attached.get(vm.disk.volume);
    if (other !== undefined)
      ctx.addIssue({
        code: 'custom',
        path: [...at, 'volume'],
        message: `${vm.disk.volume} is already the disk of ${other}`,
      });
    attached.set(vm.disk.volume, vm.name);
  });
  return volumes;
}

/** A scenario file that cannot be used; the message names the file and the bad field. */
export class ScenarioError extends Error {}

export function parseScenario(text: string, source: string): Scenario {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) throw new ScenarioError(`${source}: not valid YAML: ${doc.errors[0]!.message}`);
  const parsed = Scenario.safeParse(doc.toJS());
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`);
    throw new ScenarioError(`${source}: invalid scenario\n${[...new Set(lines)].join('\n')}`);
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
