import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { VmDefinition, VmInfo, VmState } from '@vmsim/shared';
import { VmDefinition as VmDefinitionSchema, Extent as ExtentSchema, VM_STATES, validate } from '@vmsim/shared';
import { z } from 'zod';
import { newChaosState, type ChaosState } from './faults.ts';

interface OpFigures {
  count: number;
  errors: number;
  waitMs: number;
  bytes: number;
}

/** Everything the hypervisor knows about one VM. */
export interface VmRecord {
  def: VmDefinition;
  uuid: string;
  definedAt: number;
  /** Its virtual disk: a volume of a storage pool. */
  volume: string;
  /** Made for this VM (deleted with it), or an existing volume attached to it (kept). */
  ownsVolume: boolean;
  state: VmState;
  reason: string;
  proc: ChildProcess | undefined;
  pid: number | null;
  restarts: number;
  startedAt: number | null;
  startedWallMs: number;
  bootMs: number | null;
  lastHeartbeatWallMs: number | null;
  guestLagMs: number | null;
  appFigures: Record<string, number>;
  /** What the guest's last heartbeat said it waits for (null until one said so). */
  guestPending: { hypercalls: number; requests: number } | null;
  /** Why the guest said it failed, kept for the crash event. */
  guestReason: string | undefined;
  /** Set when the hypervisor itself ends the process, so its exit is not a crash. */
  expectExit: boolean;
  shutdownTimer: NodeJS.Timeout | undefined;
  /** A restart the crash policy has scheduled. */
  restartTimer: NodeJS.Timeout | undefined;
  /** Wall times of recent crashes, for the restart limit. */
  crashTimes: number[];
  hypercalls: { total: number; rejected: number; byOp: Record<string, OpFigures> };
  net: { requests: number; replies: number; dropped: number; rxBytes: number; txBytes: number; waitMs: number };
  /** Guest RAM figures (kept current by the memory manager). */
  memory: VmInfo['memory'];
  stress: VmInfo['stress'];
  /** Fault injected, watchdog and health detector. */
  chaos: ChaosState;
}

export function newRecord(
  def: VmDefinition,
  uuid: string,
  definedAt: number,
  volume: string,
  ownsVolume: boolean,
): VmRecord {
  return {
    def,
    uuid,
    definedAt,
    volume,
    ownsVolume,
    state: 'defined',
    reason: 'defined',
    proc: undefined,
    pid: null,
    restarts: 0,
    startedAt: null,
    startedWallMs: 0,
    bootMs: null,
    lastHeartbeatWallMs: null,
    guestLagMs: null,
    appFigures: {},
    guestPending: null,
    guestReason: undefined,
    expectExit: false,
    shutdownTimer: undefined,
    restartTimer: undefined,
    crashTimes: [],
    hypercalls: { total: 0, rejected: 0, byOp: {} },
    net: { requests: 0, replies: 0, dropped: 0, rxBytes: 0, txBytes: 0, waitMs: 0 },
    memory: {
      sizeMiB: def.memoryMiB,
      limitMiB: def.memLimitMiB ?? def.memoryMiB,
      usedMiB: 0,
      residentMiB: 0,
      swappedMiB: 0,
      balloonMiB: 0,
      majorFaults: 0,
      oomKills: 0,
    },
    stress: null,
    chaos: newChaosState(),
  };
}

export function diskBytes(def: VmDefinition): number {
  return Math.round(def.diskGiB * 1024 ** 3);
}

export function opFigures(rec: VmRecord, op: string): OpFigures {
  let f = rec.hypercalls.byOp[op];
  if (!f) {
    f = { count: 0, errors: 0, waitMs: 0, bytes: 0 };
    rec.hypercalls.byOp[op] = f;
  }
  return f;
}

export function toInfo(rec: VmRecord, nowWallMs: number, disks: VmInfo['disks']): VmInfo {
  return {
    name: rec.def.name,
    uuid: rec.uuid,
    definition: rec.def,
    state: rec.state,
    reason: rec.reason,
    pid: rec.pid,
    restarts: rec.restarts,
    definedAt: rec.definedAt,
    startedAt: rec.startedAt,
    bootMs: rec.bootMs,
    lastHeartbeatAgoMs: rec.lastHeartbeatWallMs === null ? null : nowWallMs - rec.lastHeartbeatWallMs,
    guestLagMs: rec.guestLagMs,
    disks,
    hypercalls: structuredClone(rec.hypercalls),
    app: { ...rec.appFigures },
    net: { ...rec.net },
    memory: { ...rec.memory },
    stress: rec.stress,
    guestPending: rec.guestPending,
    fault: rec.chaos.fault ? { ...rec.chaos.fault } : null,
    health: rec.chaos.health.state,
    badMessages: rec.chaos.badMessages,
  };
}

/** A VM's run as last recorded, so a restarted hypervisor can find its guest again (see adoption.ts). */
const PersistedRun = z.object({
  state: z.enum(VM_STATES),
  pid: z.number().int().nullable(),
  startedAt: z.number().nullable(),
  bootMs: z.number().nullable(),
  restarts: z.number().int().min(0),
  usedMiB: z.number().min(0),
  /** Powered off by the hypervisor's own shutdown: the next hypervisor starts it again (as libvirt-guests does). */
  resume: z.boolean().optional(),
});

const Persisted = z.object({
  version: z.literal(1),
  /** The hypervisor that wrote the file last (absent in files older than re-adoption). */
  hypervisor: z.object({ pid: z.number().int(), startedAt: z.number() }).optional(),
  vms: z.array(
    z.object({
      def: VmDefinitionSchema,
      uuid: z.string(),
      definedAt: z.number(),
      /** Where the disk was, in data directories older than storage pools (adopted as a volume). */
      extents: z.array(ExtentSchema).default([]),
      /** Its volume (absent in data directories older than storage pools). */
      volume: z.string().optional(),
      ownsVolume: z.boolean().optional(),
      run: PersistedRun.optional(),
    }),
  ),
});
export type PersistedVm = z.infer<typeof Persisted>['vms'][number];

/** VM definitions on disk, written atomically, so a restarted hypervisor knows its VMs. */
export class DefinitionStore {
  private readonly file: string;

  constructor(dir: string) {
    fs.mkdirSync(dir, { recursive: true });
    this.file = path.join(dir, 'vms.json');
  }

  load(): z.infer<typeof Persisted>['vms'] {
    return this.loadAll().vms;
  }

  /** The VMs and the hypervisor that wrote them. */
  loadAll(): z.infer<typeof Persisted> {
    if (!fs.existsSync(this.file)) return { version: 1, vms: [] };
    return validate(JSON.parse(fs.readFileSync(this.file, 'utf8')), Persisted, `VM definitions in ${this.file}`);
  }

  /** Definitions with each VM's run (state, guest pid) and this hypervisor's identity. */
  save(
    records: Iterable<VmRecord>,
    self?: { pid: number; startedAt: number },
    resume: ReadonlySet<string> = new Set(),
  ): void {
    const body = {
      version: 1,
      ...(self ? { hypervisor: self } : {}),
      vms: [...records].map((r) => ({
        def: r.def,
        uuid: r.uuid,
        definedAt: r.definedAt,
        volume: r.volume,
        ownsVolume: r.ownsVolume,
        run: {
          state: r.state,
          pid: r.pid,
          startedAt: r.startedAt,
          bootMs: r.bootMs,
          restarts: r.restarts,
          usedMiB: r.memory.usedMiB,
          ...(resume.has(r.def.name) ? { resume: true } : {}),
        },
      })),
    };
    const tmp = `${this.file}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(body, null, 2));
    fs.renameSync(tmp, this.file);
  }
}
