import { z } from 'zod';
import type { Namespace } from '../subjects.ts';
import { token } from '../subjects.ts';
import { MAX_IO_BYTES } from './hypercall.ts';

/**
 * The host-agent's hardware operations. The hypervisor dispatches an operation with the
 * subject its completion must go to (`replyTo`), so the device answers the guest directly
 * and only tells the hypervisor, on `done`, that it is free again.
 */
const ticket = z.number().int().min(0);
/**
 * A subject a device may publish to: literal tokens only (no wildcards, no whitespace, no
 * empty token), since the client library throws on whitespace when the device answers.
 */
export const ReplySubject = z
  .string()
  .min(1)
  .max(512)
  .regex(/^[^.\s*>]+(\.[^.\s*>]+)*$/, 'a literal subject: dot-separated tokens without whitespace or wildcards');
const offset = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** The largest copy or zero fill: one pool chunk at most (64 MiB). */
export const MAX_CHUNK_OP_BYTES = 64 * 1024 * 1024;
const common = {
  /** The hypervisor's dispatch ticket, echoed on done. */
  t: ticket,
  vm: z.string().max(64),
  /** Where the completion goes (a guest's inbox, or a client's reply subject). */
  replyTo: ReplySubject,
  /** Simulated ms the request waited in the hypervisor before dispatch, echoed to the guest. */
  waitMs: z.number().min(0),
};

export const HwCpuOp = z.object({
  ...common,
  cycles: z.number().int().min(0).max(1e12),
  /**
   * What the burst costs more on a core that last ran another owner (`vm`): the world
   * switch, priced by the hypervisor type. Absent: switches are free.
   */
  switchCycles: z.number().int().min(0).max(1e9).optional(),
});
export type HwCpuOp = z.infer<typeof HwCpuOp>;

export const HwDiskOp = z.discriminatedUnion('op', [
  z.object({
    ...common,
    op: z.literal('read'),
    offset,
    length: z.number().int().min(1).max(MAX_IO_BYTES),
    /** A chunk allocated but never written (thick): timed like a read, answered with zeros. */
    zeros: z.boolean().optional(),
  }),
  z.object({
    ...common,
    op: z.literal('write'),
    offset,
    data: z.instanceof(Uint8Array).refine((d) => d.length <= MAX_IO_BYTES, `at most ${MAX_IO_BYTES} bytes`),
  }),
  z.object({ ...common, op: z.literal('flush') }),
  /** Zero fill of a newly allocated chunk's bytes that a write leaves alone (timed as a write). */
  z.object({ ...common, op: z.literal('zero'), offset, length: z.number().int().min(1).max(MAX_CHUNK_OP_BYTES) }),
  /**
   * Copy-on-write inside the host: bytes from this disk to `to` (this or another disk of the
   * host), timed as a read and a write on this disk; no byte crosses the bus.
   */
  z.object({
    ...common,
    op: z.literal('copy'),
    offset,
    length: z.number().int().min(1).max(MAX_CHUNK_OP_BYTES),
    to: z.object({ disk: z.string().min(1).max(64), offset }),
  }),
  /**
   * Swap traffic on the host's swap area: timed like a read (`in`) or a write (`out`) of
   * `length` bytes, but no page bytes cross the bus and none land in the backing file.
   */
  z.object({
    ...common,
    op: z.literal('swap'),
    dir: z.enum(['in', 'out']),
    length: z
      .number()
      .int()
      .min(1)
      .max(64 * 1024 * 1024),
  }),
]);
export type HwDiskOp = z.infer<typeof HwDiskOp>;

/** A frame crossing the physical NIC: `frame` is published verbatim to `replyTo` on arrival. */
export const HwNicOp = z.object({
  ...common,
  /** Declared bytes on the wire. */
  bytes: z.number().int().min(0),
  frame: z.instanceof(Uint8Array),
});
export type HwNicOp = z.infer<typeof HwNicOp>;

export const NicDirection = ['rx', 'tx'] as const;
export type NicDirection = (typeof NicDirection)[number];

export const HwDoneItem = z.object({
  t: ticket,
  device: z.string().max(64),
  ok: z.boolean(),
  serviceMs: z.number().min(0),
});
export type HwDoneItem = z.infer<typeof HwDoneItem>;
/**
 * Completions, batched: the host-agent sends the ones of one event-loop turn together, so
 * under load the hypervisor handles one message for many freed device slots.
 */
export const HwDone = z.object({ done: z.array(HwDoneItem).min(1).max(100_000) });
export type HwDone = z.infer<typeof HwDone>;
/** The same batch with its items unchecked, for a receiver that checks them one by one. */
export const HwDoneBatch = z.object({ done: z.array(z.unknown()).min(1).max(100_000) });

export const CpuSpec = z.object({
  model: z.string(),
  sockets: z.number().int().min(1),
  coresPerSocket: z.number().int().min(1),
  mhz: z.number().positive(),
});
/**
 * Device time of zeroing `length` bytes: a flash drive takes a Write Zeroes command (NVMe,
 * SCSI WRITE SAME with unmap) as one small operation that deallocates the blocks; a spinning
 * disk writes the zeros.
 */
export function zeroFillCostBytes(kind: 'ssd' | 'nvme' | 'hdd', length: number): number {
  return kind === 'hdd' ? length : Math.min(length, 4096);
}

export const DiskSpec = z.object({
  id: z.string(),
  model: z.string(),
  kind: z.enum(['ssd', 'nvme', 'hdd']),
  capacityGiB: z.number().positive(),
  /** Random 4 KiB operations per second the drive sustains. */
  iops: z.number().positive(),
  bandwidthMBps: z.number().positive(),
  /** Access latency of one operation at queue depth 1, ms. */
  latencyMs: z.number().min(0),
  queueDepth: z.number().int().min(1),
  writeCacheMiB: z.number().min(0),
});
export type DiskSpec = z.infer<typeof DiskSpec>;
export const NicSpec = z.object({
  id: z.string(),
  model: z.string(),
  gbps: z.number().positive(),
  latencyMs: z.number().min(0),
  /** Descriptors per direction the NIC accepts at once. */
  ring: z.number().int().min(1),
});
export type NicSpec = z.infer<typeof NicSpec>;

export const HardwareProfile = z.object({
  name: z.string(),
  description: z.string(),
  source: z.string(),
  cpu: CpuSpec,
  memoryGiB: z.number().positive(),
  disks: z.array(DiskSpec).min(1),
  nics: z.array(NicSpec).min(1),
});
export type HardwareProfile = z.infer<typeof HardwareProfile>;

export const Inventory = z.object({
  host: z.string(),
  profile: HardwareProfile,
  timeScale: z.number().positive(),
  bootId: z.string(),
});
export type Inventory = z.infer<typeof Inventory>;

export const DeviceUtil = z.object({
  device: z.string(),
  inFlight: z.number().int().min(0),
  capacity: z.number().int().min(1),
  /** Busy fraction since the previous utilization query (or since start). */
  utilization: z.number().min(0),
  ops: z.number().int().min(0),
  bytes: z.number().min(0),
  /** CPU only, since start: bursts that found their core coming from another owner, and the cycles that cost. */
  switches: z.number().int().min(0).optional(),
  switchCycles: z.number().min(0).optional(),
});
export type DeviceUtil = z.infer<typeof DeviceUtil>;
export const Utilization = z.object({
  host: z.string(),
  simNowMs: z.number(),
  devices: z.array(DeviceUtil),
  memory: z.object({ totalMiB: z.number(), allocatedMiB: z.number() }),
  disks: z.array(z.object({ id: z.string(), dirtyBytes: z.number(), allocatedBytes: z.number() })),
  lagMs: z.number(),
});
export type Utilization = z.infer<typeof Utilization>;

export const MemAllocRequest = z.object({
  owner: z.string().max(64),
  mib: z
    .number()
    .int()
    .min(1)
    .max(64 * 1024 * 1024),
});
export const MemFreeRequest = z.object({ owner: z.string().max(64) });
export const MemReply = z.object({ totalMiB: z.number(), allocatedMiB: z.number() });

/**
 * What the host-agent holds right now, from its device models and queues: operations on
 * each device, completions not yet sent, disk flushes running. A test reads it to check
 * that nothing is left pending after bad input.
 */
export const HostAgentStats = z.object({
  host: z.string(),
  bootId: z.string(),
  inFlight: z.record(z.string(), z.number().int().min(0)),
  pendingDone: z.number().int().min(0),
  flushing: z.number().int().min(0),
  /** Operations refused so far (bad payload, busy device, unknown device). */
  rejected: z.number().int().min(0),
  /** Bytes each disk's sparse backing file really occupies on the machine (what was ever written). */
  disks: z.array(z.object({ id: z.string(), backingBytes: z.number().min(0) })).optional(),
});
export type HostAgentStats = z.infer<typeof HostAgentStats>;

/**
 * Announced when a host-agent starts, so a hypervisor can forget work dispatched to a previous
 * one; and again when its bus connection comes back (`reconnect`): work sent meanwhile is lost.
 */
export const HostHello = z.object({
  host: z.string(),
  bootId: z.string(),
  reason: z.enum(['boot', 'reconnect']).optional(),
});

function hw(ns: Namespace, hostId: string): string {
  return `${ns}.hw.${token(hostId, 'host id')}`;
}
export const hardwareSubjects = {
  cpu: (ns: Namespace, host: string) => `${hw(ns, host)}.cpu`,
  disk: (ns: Namespace, host: string, diskId: string) => `${hw(ns, host)}.disk.${token(diskId, 'disk id')}`,
  anyDisk: (ns: Namespace, host: string) => `${hw(ns, host)}.disk.*`,
  nic: (ns: Namespace, host: string, nicId: string, dir: NicDirection) =>
    `${hw(ns, host)}.nic.${token(nicId, 'nic id')}.${dir}`,
  anyNic: (ns: Namespace, host: string) => `${hw(ns, host)}.nic.*.*`,
  done: (ns: Namespace, host: string) => `${hw(ns, host)}.done`,
  inventory: (ns: Namespace, host: string) => `${hw(ns, host)}.inventory`,
  utilization: (ns: Namespace, host: string) => `${hw(ns, host)}.util`,
  stats: (ns: Namespace, host: string) => `${hw(ns, host)}.stats`,
  memAlloc: (ns: Namespace, host: string) => `${hw(ns, host)}.mem.alloc`,
  memFree: (ns: Namespace, host: string) => `${hw(ns, host)}.mem.free`,
  hello: (ns: Namespace, host: string) => `${hw(ns, host)}.hello`,
  /** Every hardware subject of one host (for the host-agent's permissions). */
  all: (ns: Namespace, host: string) => `${hw(ns, host)}.>`,
};

/**
 * Where the host-agent answers one chain of the hypervisor's own swap I/O (`id`), which a
 * guest's reply or CPU burst waits for.
 */
export function swapDoneSubject(ns: Namespace, hostId: string, id: number): string {
  return `${ns}.hv.${token(hostId, 'host id')}.swap.${id}`;
}
export function anySwapDoneSubject(ns: Namespace, hostId: string): string {
  return `${ns}.hv.${token(hostId, 'host id')}.swap.*`;
}

/**
 * Where the host-agent answers the hypervisor's own CPU work (host tasks): nobody waits
 * for it there, the completion on `done` is what frees the core.
 */
export function hostWorkSubject(ns: Namespace, hostId: string): string {
  return `${ns}.hv.${token(hostId, 'host id')}.work`;
}
/** Every subject the hypervisor of one host gets completions on (swap, host work). */
export function anyHypervisorReplySubject(ns: Namespace, hostId: string): string {
  return `${ns}.hv.${token(hostId, 'host id')}.>`;
}
