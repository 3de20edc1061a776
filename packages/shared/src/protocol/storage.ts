import { z } from 'zod';
import type { Namespace } from '../subjects.ts';
import { token } from '../subjects.ts';
import { MAX_IO_BYTES } from './hypercall.ts';

/**
 * Storage virtualization on the management API: pools made of the host's physical disks,
 * virtual disks (volumes) carved from them, snapshots, templates and clones. The ops are
 * listed in `MgmtRequests` (mgmt.ts); their schemas and results live here.
 */
export const PROVISIONING = ['thin', 'thick'] as const;
export type Provisioning = (typeof PROVISIONING)[number];

const name = (what: string) =>
  z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, `a ${what} name is 1-64 letters, digits, '-' or '_'`);
export const PoolName = name('pool');
export const VolumeName = name('disk');
export const SnapshotName = name('snapshot');

/** The pool every host has from its first start: all of its physical disks. */
export const DEFAULT_POOL = 'default';

/**
 * Where a VM's disk comes from. A new volume named after the VM, in `pool`, thick or thin;
 * or a thin clone of a template (`clone`); or an existing volume (`volume`), which then
 * outlives the VM. Absent: a new thick volume in the default pool.
 */
export const VmDiskSpec = z
  .object({
    pool: PoolName.default(DEFAULT_POOL),
    provisioning: z.enum(PROVISIONING).default('thick'),
    clone: VolumeName.optional(),
    volume: VolumeName.optional(),
  })
  .refine((d) => !(d.clone && d.volume), 'a VM disk is either a clone of a template or an existing volume, not both');
export type VmDiskSpec = z.infer<typeof VmDiskSpec>;

/** What a virtual disk has done since its VM (or the hypervisor) started. */
export const DiskIo = z.object({
  reads: z.number().int(),
  writes: z.number().int(),
  flushes: z.number().int(),
  bytesRead: z.number(),
  bytesWritten: z.number(),
  /** Simulated ms from arrival at the hypervisor to completion, summed and worst, over reads and writes. */
  latencyMsSum: z.number(),
  latencyMsMax: z.number(),
  /** Reads of never-written chunks of a thin disk, answered with zeros by the hypervisor. */
  zeroReads: z.number().int(),
  /** Bytes copied up from a lower layer (copy-on-write) and zero-filled in new chunks. */
  copiedBytes: z.number(),
  zeroedBytes: z.number(),
  /** Writes that found the pool full (each pauses the VM until space is freed). */
  poolFullStalls: z.number().int(),
});
export type DiskIo = z.infer<typeof DiskIo>;

/** A disk that has done nothing yet. */
export function emptyDiskIo(): DiskIo {
  return {
    reads: 0,
    writes: 0,
    flushes: 0,
    bytesRead: 0,
    bytesWritten: 0,
    latencyMsSum: 0,
    latencyMsMax: 0,
    zeroReads: 0,
    copiedBytes: 0,
    zeroedBytes: 0,
    poolFullStalls: 0,
  };
}

export const SnapshotInfo = z.object({
  name: SnapshotName,
  /** Bytes its layer holds: what changed between it and the snapshot before. */
  bytes: z.number(),
});

export const VolumeInfo = z.object({
  id: VolumeName,
  pool: PoolName,
  provisioning: z.enum(PROVISIONING),
  virtualBytes: z.number(),
  /** Chunks the volume's own layers hold (top and snapshots). */
  allocatedBytes: z.number(),
  /** Chunks it shares with its template. */
  sharedBytes: z.number(),
  template: z.boolean(),
  /** The template it was cloned from. */
  origin: VolumeName.nullable(),
  snapshots: z.array(SnapshotInfo),
  /** The VM whose disk it is, if any. */
  attachedTo: z.string().nullable(),
  io: DiskIo,
});
export type VolumeInfo = z.infer<typeof VolumeInfo>;

export const PoolInfo = z.object({
  id: PoolName,
  chunkBytes: z.number().int(),
  disks: z.array(z.object({ id: z.string(), capacityBytes: z.number(), allocatedBytes: z.number() })),
  capacityBytes: z.number(),
  allocatedBytes: z.number(),
  freeBytes: z.number(),
  /** Sum of its volumes' virtual sizes; above capacity the pool is overcommitted (thin). */
  virtualBytes: z.number(),
  overcommit: z.number(),
  volumes: z.number().int(),
  /** VMs paused because a write of theirs found this pool full. */
  stalledVms: z.array(z.string()),
  /**
   * What the pool really occupies on the machine: the bytes its disks' backing files hold
   * (sparse files: what was ever written), from the host-agent. Null when it did not answer.
   */
  backingBytes: z.number().nullable(),
});
export type PoolInfo = z.infer<typeof PoolInfo>;

const byVolume = z.object({ id: VolumeName });
const partitionGiB = z
  .number()
  .positive()
  .max(1024 * 1024)
  .optional();
const ioOffset = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const StorageRequests = {
  poolList: z.object({}),
  /**
   * A new pool of physical disks that no volume uses yet (taken out of the default pool if
   * they are in it). `diskGiB`: use only the first GiB of each (a partition); absent: all of it.
   */
  poolCreate: z.object({
    id: PoolName,
    disks: z.array(z.string().min(1).max(64)).min(1).max(64),
    diskGiB: partitionGiB,
    chunkMiB: z.number().int().min(1).max(64).optional(),
  }),
  /** Grows a pool by a physical disk (or its first `sizeGiB`); writes waiting for space go on at once. */
  poolAddDisk: z.object({ id: PoolName, disk: z.string().min(1).max(64), sizeGiB: partitionGiB }),
  diskList: z.object({ pool: PoolName.optional() }),
  diskInfo: byVolume,
  diskCreate: z.object({
    id: VolumeName,
    pool: PoolName.default(DEFAULT_POOL),
    sizeGiB: z
      .number()
      .positive()
      .max(16 * 1024),
    provisioning: z.enum(PROVISIONING).default('thin'),
  }),
  diskSnapshot: byVolume.extend({ snapshot: SnapshotName }),
  /** Back to a snapshot: later snapshots and the changes since go (the VM must be off). */
  diskRevert: byVolume.extend({ snapshot: SnapshotName }),
  /** Deletes one snapshot: its layer is merged into the one above (no data moves). */
  diskDeleteSnapshot: byVolume.extend({ snapshot: SnapshotName }),
  /** Makes a volume a read-only golden image that clones share. */
  diskTemplate: byVolume,
  /** A thin clone of a template: copies nothing now. */
  diskClone: z.object({ template: VolumeName, id: VolumeName }),
  diskDelete: byVolume,
  /** Bytes of a volume (or of one of its snapshots), as `virsh vol-download`. */
  diskRead: byVolume.extend({
    offset: ioOffset,
    length: z.number().int().min(1).max(MAX_IO_BYTES),
    snapshot: SnapshotName.optional(),
  }),
  /** Writes bytes into a volume, as `virsh vol-upload`; `flush` makes them durable first. */
  diskWrite: byVolume.extend({
    offset: ioOffset,
    data: z
      .instanceof(Uint8Array)
      .refine((d) => d.length >= 1 && d.length <= MAX_IO_BYTES, `1 to ${MAX_IO_BYTES} bytes`),
    flush: z.boolean().default(false),
  }),
} as const;

export const StorageResults = {
  poolList: z.object({ pools: z.array(PoolInfo) }),
  poolCreate: PoolInfo,
  poolAddDisk: PoolInfo,
  diskList: z.object({ volumes: z.array(VolumeInfo) }),
  diskInfo: VolumeInfo,
  diskCreate: VolumeInfo,
  diskSnapshot: VolumeInfo,
  diskRevert: VolumeInfo.extend({ freedBytes: z.number(), droppedSnapshots: z.array(z.string()) }),
  diskDeleteSnapshot: VolumeInfo.extend({ freedBytes: z.number() }),
  diskTemplate: VolumeInfo,
  diskClone: VolumeInfo.extend({ cloneMs: z.number() }),
  diskDelete: z.object({ id: z.string(), freedBytes: z.number() }),
  diskRead: z.object({ data: z.instanceof(Uint8Array) }),
  diskWrite: z.object({ bytes: z.number().int() }),
} as const;

/**
 * Where the host-agent answers the pieces of one virtual disk operation the hypervisor
 * assembles itself (`id`): reads that span chunks, copy-on-write, zero fill.
 */
export function storageIoSubject(ns: Namespace, hostId: string, id: number): string {
  return `${ns}.hv.${token(hostId, 'host id')}.io.${id}`;
}
export function anyStorageIoSubject(ns: Namespace, hostId: string): string {
  return `${ns}.hv.${token(hostId, 'host id')}.io.*`;
}
