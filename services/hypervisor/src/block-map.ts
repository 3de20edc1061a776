import type { Extent } from '@vmsim/shared';
import { ErrorCode, VmsimError } from '@vmsim/shared';

export interface PhysicalDisk {
  id: string;
  capacityBytes: number;
}

/** Extents are aligned to 1 MiB, as partitioning tools align them. */
const ALIGN = 1024 * 1024;

/**
 * Hands out contiguous extents of the host's physical disks (first fit). VM disks live in
 * storage pools now (see volumes.ts); this places the host's swap area at the end of a
 * disk, after what older data directories' VM disks hold there.
 */
export class ExtentAllocator {
  private readonly disks: PhysicalDisk[];
  private readonly used = new Map<string, Extent[]>();

  constructor(disks: PhysicalDisk[]) {
    this.disks = disks;
    for (const d of disks) this.used.set(d.id, []);
  }

  /** Marks extents as used (VMs loaded from disk at start-up). */
  claim(extents: readonly Extent[]): void {
    for (const e of extents) {
      const list = this.used.get(e.disk);
      if (!list) throw new VmsimError(ErrorCode.NO_SUCH_DEVICE, `extent on unknown disk ${e.disk}`);
      list.push(e);
      list.sort((a, b) => a.pOffset - b.pOffset);
    }
  }

  release(extents: readonly Extent[]): void {
    for (const e of extents) {
      const list = this.used.get(e.disk);
      if (!list) continue;
      const i = list.findIndex((x) => x.pOffset === e.pOffset && x.length === e.length);
      if (i >= 0) list.splice(i, 1);
    }
  }

  freeBytes(diskId: string): number {
    const d = this.disks.find((x) => x.id === diskId);
    if (!d) return 0;
    return d.capacityBytes - (this.used.get(diskId) ?? []).reduce((s, e) => s + e.length, 0);
  }

  /**
   * An extent at the end of one disk, as installers put a swap partition, so that VM disks
   * keep being placed from the start. At most `length`; what fits after the last extent.
   */
  allocateAtEnd(diskId: string, length: number): Extent | undefined {
    const d = this.disks.find((x) => x.id === diskId);
    if (!d) throw new VmsimError(ErrorCode.NO_SUCH_DEVICE, `no disk ${diskId}`);
    const list = this.used.get(diskId)!;
    const end = list.reduce((m, e) => Math.max(m, Math.ceil((e.pOffset + e.length) / ALIGN) * ALIGN), 0);
    const top = Math.floor(d.capacityBytes / ALIGN) * ALIGN;
    const len = Math.min(Math.floor(length / ALIGN) * ALIGN, top - end);
    if (len <= 0) return undefined;
    const ext: Extent = { vOffset: 0, disk: diskId, pOffset: top - len, length: len };
    list.push(ext);
    list.sort((a, b) => a.pOffset - b.pOffset);
    return ext;
  }

  /** One contiguous extent of `length` bytes on the first disk that has room. */
  allocate(length: number, preferDisk?: string): Extent {
    const want = Math.ceil(length / ALIGN) * ALIGN;
    const order = preferDisk ? [...this.disks].sort((a) => (a.id === preferDisk ? -1 : 1)) : this.disks;
    for (const d of order) {
      const list = this.used.get(d.id)!;
      let cursor = 0;
      for (const e of list) {
        if (e.pOffset - cursor >= want) break;
        cursor = Math.max(cursor, Math.ceil((e.pOffset + e.length) / ALIGN) * ALIGN);
      }
      if (d.capacityBytes - cursor >= want) {
        const ext: Extent = { vOffset: 0, disk: d.id, pOffset: cursor, length: want };
        list.push(ext);
        list.sort((a, b) => a.pOffset - b.pOffset);
        return ext;
      }
    }
    const free = this.disks.map((d) => `${d.id} ${(this.freeBytes(d.id) / 2 ** 30).toFixed(1)} GiB free`).join(', ');
    throw new VmsimError(
      ErrorCode.NO_SPACE,
      `no physical disk has ${(want / 2 ** 30).toFixed(2)} GiB contiguous (${free})`,
    );
  }
}
