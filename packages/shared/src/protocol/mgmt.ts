import { z } from 'zod';
import type { Namespace } from '../subjects.ts';
import { token } from '../subjects.ts';
import { VM_STATES } from './lifecycle-states.ts';
import { STRESS_KINDS } from './guest-control.ts';
import { ErrorReply } from './reply.ts';
import { ActiveFault, FaultSpec, VM_HEALTH, WatchdogConfig } from './faults.ts';
import { StorageRequests, StorageResults, VmDiskSpec, VolumeInfo } from './storage.ts';

/** The hypervisor's management API (what virsh talks to), one subject per operation. */
export const APPS = ['web', 'mail', 'db', 'file', 'game'] as const;
export const GUEST_OSES = ['linux', 'windows', 'bsd'] as const;
export const CRASH_POLICIES = ['restart', 'destroy', 'preserve'] as const;

export const VmName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "a VM name is 1-64 letters, digits, '-' or '_'");

const rate = z.number().positive().nullable().optional();
/**
 * Rate limits per VM, changeable while it runs (`tune`): a CPU cap in percent of one core
 * (200 = two full cores), and token buckets on its disk and network traffic, per simulated
 * second, as Firecracker's rate limiters. `null` or absent: no limit.
 */
export const ResourceLimits = z.object({
  cpuCapPct: rate,
  diskBytesPerS: rate,
  diskOpsPerS: rate,
  netBytesPerS: rate,
  netOpsPerS: rate,
  /**
   * CPU guaranteed to the VM, in percent of one core (VMware's reservation): it is served
   * first while below it, whatever the shares; the sum over running VMs fits the cores.
   */
  cpuReservationPct: rate,
  /**
   * The most host RAM the VM may hold (cgroup memory.max on its process). A guest that
   * touches more is OOM-killed, alone. Absent: its memory size.
   */
  memLimitMiB: rate,
});
export type ResourceLimits = z.infer<typeof ResourceLimits>;

export const VmDefinition = z.object({
  name: VmName,
  app: z.enum(APPS).default('web'),
  os: z.enum(GUEST_OSES).default('linux'),
  vcpus: z.number().int().min(1).max(64).default(1),
  memoryMiB: z
    .number()
    .int()
    .min(64)
    .max(1024 * 1024)
    .default(1024),
  /** The guest lays out its OS and data across the first 128 MiB, so that is the smallest disk. */
  diskGiB: z
    .number()
    .min(0.125)
    .max(16 * 1024)
    .default(4),
  /** Where its virtual disk comes from (pool, thin or thick, clone of a template); absent: thick in the default pool. */
  disk: VmDiskSpec.optional(),
  /** Relative weight under the `fair` policy (cgroup cpu.weight's scale: default 100). */
  shares: z.number().int().min(1).max(10000).default(100),
  /**
   * What happens when the guest crashes (libvirt's on_crash): `restart` with exponential
   * backoff, `destroy` (power off, state stopped), or `preserve` (stay crashed for inspection).
   */
  crashPolicy: z.enum(CRASH_POLICIES).default('preserve'),
  /** Restarts allowed within `restartWindowMs` before the VM is marked failed (as Proxmox HA's max_restart). */
  maxRestarts: z.number().int().min(0).max(100).default(3),
  restartWindowMs: z.number().int().min(1000).max(86_400_000).default(600_000),
  /**
   * db only, UNSAFE, a teaching toggle ("what fsync is for"): the database acknowledges a
   * write once it is in the disk's volatile write cache and flushes in the background, so a
   * power cut loses acknowledged writes. A guest crash alone does not.
   */
  ackBeforeFlush: z.boolean().default(false),
  /** What the watchdog does when heartbeats stop, and after how long. */
  watchdog: WatchdogConfig.default({ action: 'reset' }),
  ...ResourceLimits.shape,
});
export type VmDefinition = z.infer<typeof VmDefinition>;
export type VmDefinitionInput = z.input<typeof VmDefinition>;

export const Extent = z.object({
  /** Offset in the virtual disk. */
  vOffset: z.number().int().min(0),
  disk: z.string(),
  /** Offset on the physical disk. */
  pOffset: z.number().int().min(0),
  length: z.number().int().min(1),
});
export type Extent = z.infer<typeof Extent>;

export const OpStats = z.object({
  count: z.number().int(),
  errors: z.number().int(),
  /** Simulated ms spent waiting in the hypervisor's queues, summed. */
  waitMs: z.number(),
  bytes: z.number(),
});

export const VmInfo = z.object({
  name: z.string(),
  uuid: z.string(),
  definition: VmDefinition,
  state: z.enum(VM_STATES),
  reason: z.string(),
  pid: z.number().int().nullable(),
  restarts: z.number().int(),
  definedAt: z.number(),
  startedAt: z.number().nullable(),
  bootMs: z.number().nullable(),
  lastHeartbeatAgoMs: z.number().nullable(),
  guestLagMs: z.number().nullable(),
  disks: z.array(
    z.object({
      index: z.number().int(),
      sizeBytes: z.number().int(),
      /** Where its written chunks are now (newest layer per chunk); unwritten chunks are absent. */
      extents: z.array(Extent),
      /** The volume behind it: pool, allocation, snapshots, I/O figures. */
      volume: VolumeInfo.optional(),
    }),
  ),
  hypercalls: z.object({ total: z.number().int(), rejected: z.number().int(), byOp: z.record(z.string(), OpStats) }),
  /** Figures the guest's application reports (tick lateness, queue lengths, commit batches…). */
  app: z.record(z.string(), z.number()),
  net: z.object({
    requests: z.number().int(),
    replies: z.number().int(),
    dropped: z.number().int(),
    rxBytes: z.number(),
    txBytes: z.number(),
    /** Simulated ms this VM's frames waited for the host NIC behind other VMs' frames. */
    waitMs: z.number(),
  }),
  /** Guest RAM as the hypervisor backs it (all MiB). */
  memory: z.object({
    sizeMiB: z.number(),
    limitMiB: z.number(),
    /** What the guest has touched and not given back. */
    usedMiB: z.number(),
    /** Host pages backing it now. */
    residentMiB: z.number(),
    /** Its pages the host wrote out to swap. */
    swappedMiB: z.number(),
    /** Taken back by the balloon driver (pages the guest had freed). */
    balloonMiB: z.number(),
    /** Bursts that had to wait for a page to come back from swap. */
    majorFaults: z.number().int(),
    oomKills: z.number().int(),
  }),
  /** The stressor the guest runs now, if any. */
  stress: z.enum(STRESS_KINDS).nullable(),
  /** The fault injected now, if any. */
  fault: ActiveFault.nullable(),
  /** `degraded` while its own figures (hypercall wait, rejected messages, guest lag) are off. */
  health: z.enum(VM_HEALTH),
  /** Malformed or schema-invalid messages it published (hypercalls, heartbeats, status, vNIC frames), rejected. */
  badMessages: z.number().int(),
  /** What its guest said it waits for, in its last heartbeat (null before one said so). */
  guestPending: z.object({ hypercalls: z.number().int(), requests: z.number().int() }).nullable().optional(),
});
export type VmInfo = z.infer<typeof VmInfo>;

/** The cost model of a hypervisor type, published with every host description and report. */
export const HypervisorOverhead = z.object({
  type: z.enum(['type1', 'type2']),
  description: z.string(),
  /** Cycles a guest's CPU burst carries for the VM exit and entry around it. */
  exitCycles: z.number(),
  /**
   * Cycles a CPU burst costs more on a core that last ran another guest (or the host side):
   * the world switch between them, with the cache and TLB refill it causes.
   */
  switchCycles: z.number(),
  /** Cycles of VMM (and, for type 2, host OS) work per guest disk or network operation. */
  ioCycles: z.number(),
  /** The host side's own periodic tasks on the same cores: base + per running guest. */
  hostTaskPeriodMs: z.number(),
  hostTaskBaseCycles: z.number(),
  hostTaskPerGuestCycles: z.number(),
  /** Host RAM the hypervisor (and host OS) keeps. */
  reservedMiB: z.number(),
});
export type HypervisorOverhead = z.infer<typeof HypervisorOverhead>;

export const HostInfo = z.object({
  host: z.string(),
  hypervisor: z.enum(['type1', 'type2']),
  scheduler: z.enum(['fifo', 'fair']),
  timeScale: z.number(),
  overcommit: z.number(),
  memory: z.object({
    totalMiB: z.number(),
    committedMiB: z.number(),
    reservedMiB: z.number(),
    /** Host RAM backing guests now, written out to swap, and reclaimed by balloons. */
    residentMiB: z.number(),
    swappedMiB: z.number(),
    balloonMiB: z.number(),
  }),
  cpu: z.object({ cores: z.number().int(), mhz: z.number() }),
  vms: z.number().int(),
  lagMs: z.number(),
  hostAgent: z.object({ bootId: z.string(), profile: z.string() }),
  overhead: HypervisorOverhead,
  /** Simulated CPU ms the host side (VMM and host OS work) has used so far. */
  hostCpuMs: z.number(),
  /**
   * Work the hypervisor holds now, read from its own tables: open client connections,
   * requests queued in its device schedulers, operations dispatched to the host-agent and
   * not yet done, swap I/O chains something waits for.
   */
  pending: z
    .object({
      connections: z.number().int(),
      deviceQueued: z.number().int(),
      deviceInFlight: z.number().int(),
      memChains: z.number().int(),
      /** Virtual disk I/O started or waiting in the storage layer (writes stalled on a full pool not counted). */
      diskIo: z.number().int().optional(),
    })
    .optional(),
});
export type HostInfo = z.infer<typeof HostInfo>;

const byName = z.object({ name: VmName });
export const MgmtRequests = {
  ping: z.object({}),
  define: VmDefinition,
  undefine: byName,
  start: byName,
  shutdown: byName.extend({ timeoutMs: z.number().int().min(0).max(600_000).optional() }),
  destroy: byName,
  pause: byName,
  resume: byName,
  /** Changes shares and rate limits, also while the VM runs. */
  tune: byName.extend({
    shares: z.number().int().min(1).max(10000).optional(),
    /** Memory hot-plug (up) or a balloon target (down) for a running VM. */
    memoryMiB: z
      .number()
      .int()
      .min(64)
      .max(1024 * 1024)
      .optional(),
    ...ResourceLimits.shape,
    watchdog: WatchdogConfig.optional(),
  }),
  /** Starts one of the isolation benchmark's stressors inside the guest. */
  stress: byName.extend({ kind: z.enum(STRESS_KINDS), durationMs: z.number().positive().optional() }),
  unstress: byName,
  /** Injects a fault into a running VM (replacing the one it has). */
  fault: byName.extend(FaultSpec.shape),
  /** Clears a VM's fault now. */
  unfault: byName,
  /** Switches every device scheduler of the host between `fifo` and `fair`, live. */
  policy: z.object({ policy: z.enum(['fifo', 'fair']) }),
  list: z.object({}),
  info: byName,
  ...StorageRequests,
} as const;
export type MgmtOp = keyof typeof MgmtRequests;
export const MGMT_OPS = Object.keys(MgmtRequests) as MgmtOp[];

export const MgmtResults = {
  ping: HostInfo,
  define: VmInfo,
  undefine: z.object({ name: z.string() }),
  start: VmInfo,
  shutdown: VmInfo,
  destroy: VmInfo,
  pause: VmInfo,
  resume: VmInfo,
  tune: VmInfo,
  stress: VmInfo,
  unstress: VmInfo,
  fault: VmInfo,
  unfault: VmInfo,
  policy: HostInfo,
  list: z.object({ vms: z.array(VmInfo) }),
  info: VmInfo,
  ...StorageResults,
} as const satisfies Record<MgmtOp, z.ZodType>;

export type MgmtRequest<Op extends MgmtOp> = z.input<(typeof MgmtRequests)[Op]>;
export type MgmtResult<Op extends MgmtOp> = z.infer<(typeof MgmtResults)[Op]>;

export function mgmtReplySchema<Op extends MgmtOp>(op: Op) {
  return z.discriminatedUnion('ok', [z.object({ ok: z.literal(true), result: MgmtResults[op] }), ErrorReply]);
}

export function mgmtSubject(ns: Namespace, hostId: string, op: MgmtOp): string {
  return `${ns}.mgmt.${token(hostId, 'host id')}.${op}`;
}
