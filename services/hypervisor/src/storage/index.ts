export { DEFAULT_CHUNK_BYTES, StoragePool, type ChunkRef, type PoolDiskState } from './pool.ts';
export {
  PROVISIONING,
  StorageModel,
  type DiskSpec,
  type Layer,
  type LayerChunk,
  type PhysAddr,
  type PhysOp,
  type PoolFigures,
  type Provisioning,
  type ReadSegment,
  type Snapshot,
  type SnapshotInfo,
  type Volume,
  type VolumeFigures,
  type WritePlan,
} from './model.ts';
export { checkStorage } from './check.ts';
export { MemoryDisks } from './memory-disks.ts';
export { StorageDoc, deserializeStorage, serializeStorage } from './persist.ts';
