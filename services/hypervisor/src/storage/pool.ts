import { ErrorCode, VmsimError } from '@vmsim/shared';

/** Default allocation unit: 1 MiB, the alignment partitioning tools and LVM use. */
export const DEFAULT_CHUNK_BYTES = 1024 * 1024;

/** One physical chunk: a disk and the chunk's index on it (byte offset = index × chunkBytes). */
export interface ChunkRef {
  disk: string;
  index: number;
}

export interface PoolDiskState {
  readonly id: string;
  readonly capacityBytes: number;
  /** Whole chunks that fit; a tail smaller than a chunk is never used. */
  readonly chunks: number;
  /** 1 = allocated. A byte per chunk: 1 TiB of 1 MiB chunks is 1 MiB of map. */
  readonly used: Uint8Array;
  usedCount: number;
  /** No free chunk below this index (a search hint, not state). */
  hint: number;
}

/**
 * A storage pool: physical disks cut into fixed-size chunks, and the allocation map of
 * which chunk is in use. Allocation is round robin over the disks that have a free chunk
 * (first free chunk on each): consecutive chunks of a volume land on different disks, so
 * sequential I/O spreads over all spindles like a stripe, and a disk added to a full pool
 * takes new chunks at once instead of after the old disks are exhausted.
 */
export class StoragePool {
  readonly id: string;
  readonly chunkBytes: number;
  readonly disks: PoolDiskState[] = [];
  /** Index into `disks` of the next disk to try. */
  cursor = 0;

  constructor(id: string, chunkBytes = DEFAULT_CHUNK_BYTES) {
    if (!Number.isInteger(chunkBytes) || chunkBytes < 1) {
      throw new VmsimError(ErrorCode.CONFIG, `pool ${id}: chunk size must be a positive integer, not ${chunkBytes}`);
    }
    this.id = id;
    this.chunkBytes = chunkBytes;
  }

  addDisk(id: string, capacityBytes: number): void {
    if (this.disks.some((d) => d.id === id)) {
      throw new VmsimError(ErrorCode.CONFIG, `pool ${this.id} already has disk ${id}`);
    }
    if (!Number.isInteger(capacityBytes) || capacityBytes < 0) {
      throw new VmsimError(ErrorCode.CONFIG, `disk ${id}: capacity must be a non-negative integer`);
    }
    const chunks = Math.floor(capacityBytes / this.chunkBytes);
    this.disks.push({ id, capacityBytes, chunks, used: new Uint8Array(chunks), usedCount: 0, hint: 0 });
  }

  removeDisk(id: string): void {
    const i = this.disks.findIndex((d) => d.id === id);
    if (i < 0) throw new VmsimError(ErrorCode.NOT_FOUND, `pool ${this.id} has no disk ${id}`);
    const d = this.disks[i]!;
    if (d.usedCount > 0) {
      throw new VmsimError(
        ErrorCode.BAD_STATE,
        `disk ${id} holds ${d.usedCount} chunk(s) of pool ${this.id}'s volumes`,
      );
    }
    this.disks.splice(i, 1);
    this.cursor = 0;
  }

  disk(id: string): PoolDiskState | undefined {
    return this.disks.find((d) => d.id === id);
  }

  get totalChunks(): number {
    return this.disks.reduce((s, d) => s + d.chunks, 0);
  }

  get usedChunks(): number {
    return this.disks.reduce((s, d) => s + d.usedCount, 0);
  }

  get freeChunks(): number {
    return this.totalChunks - this.usedChunks;
  }

  /** `n` chunks, or undefined (and nothing taken) when fewer than `n` are free. */
  allocate(n: number): ChunkRef[] | undefined {
    if (n > this.freeChunks) return undefined;
    const out: ChunkRef[] = [];
    while (out.length < n) {
      const d = this.nextDiskWithRoom();
      let i = d.hint;
      while (d.used[i] === 1) i++;
      d.used[i] = 1;
      d.usedCount++;
      d.hint = i + 1;
      out.push({ disk: d.id, index: i });
    }
    return out;
  }

  /** Marks a chunk used (rebuilding from saved metadata). */
  claim(ref: ChunkRef): void {
    const d = this.mustDisk(ref);
    if (d.used[ref.index] === 1)
      throw new VmsimError(ErrorCode.INTERNAL, `chunk ${ref.disk}#${ref.index} claimed twice`);
    d.used[ref.index] = 1;
    d.usedCount++;
  }

  free(ref: ChunkRef): void {
    const d = this.mustDisk(ref);
    if (d.used[ref.index] !== 1) throw new VmsimError(ErrorCode.INTERNAL, `chunk ${ref.disk}#${ref.index} freed twice`);
    d.used[ref.index] = 0;
    d.usedCount--;
    if (ref.index < d.hint) d.hint = ref.index;
  }

  isUsed(ref: ChunkRef): boolean {
    return this.disk(ref.disk)?.used[ref.index] === 1;
  }

  private mustDisk(ref: ChunkRef): PoolDiskState {
    const d = this.disk(ref.disk);
    if (!d || !Number.isInteger(ref.index) || ref.index < 0 || ref.index >= d.chunks) {
      throw new VmsimError(ErrorCode.NO_SUCH_DEVICE, `pool ${this.id} has no chunk ${ref.disk}#${ref.index}`);
    }
    return d;
  }

  private nextDiskWithRoom(): PoolDiskState {
    for (let k = 0; k < this.disks.length; k++) {
      const d = this.disks[(this.cursor + k) % this.disks.length]!;
      if (d.usedCount < d.chunks) {
        this.cursor = (this.cursor + k + 1) % this.disks.length;
        return d;
      }
    }
    throw new VmsimError(ErrorCode.INTERNAL, `pool ${this.id}: no free chunk although the count said so`);
  }
}
