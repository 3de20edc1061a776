import type { PhysOp, ReadSegment } from './model.ts';

/**
 * Physical disks as byte arrays that carry out a plan: what the host-agent does with
 * backing files, in memory. Tests check the planner's ops against it.
 */
export class MemoryDisks {
  readonly bytes = new Map<string, Uint8Array>();

  /** A new disk full of `fill` bytes: stale data a thin disk must never show. */
  add(id: string, capacityBytes: number, fill = 0xa5): void {
    this.bytes.set(id, new Uint8Array(capacityBytes).fill(fill));
  }

  apply(ops: readonly PhysOp[], data: Uint8Array): void {
    for (const o of ops) {
      if (o.length < 1) throw new RangeError(`empty ${o.op}`);
      if (o.op === 'copy') {
        this.range(o.from.disk, o.from.offset, o.length);
        this.range(o.to.disk, o.to.offset, o.length);
      } else this.range(o.disk, o.offset, o.length);
      if (o.op === 'write' && o.dataOffset + o.length > data.length) throw new RangeError('write past the data');
      if (o.op === 'copy') {
        const src = this.disk(o.from.disk).slice(o.from.offset, o.from.offset + o.length);
        this.disk(o.to.disk).set(src, o.to.offset);
      } else if (o.op === 'zero') {
        this.disk(o.disk).fill(0, o.offset, o.offset + o.length);
      } else {
        this.disk(o.disk).set(data.subarray(o.dataOffset, o.dataOffset + o.length), o.offset);
      }
    }
  }

  read(segments: readonly ReadSegment[]): Uint8Array {
    const out = new Uint8Array(segments.reduce((s, g) => s + g.length, 0));
    let at = 0;
    for (const g of segments) {
      if (g.kind === 'data') this.range(g.disk, g.offset, g.length);
      if (g.kind === 'data') out.set(this.disk(g.disk).subarray(g.offset, g.offset + g.length), at);
      at += g.length;
    }
    return out;
  }

  private range(id: string, offset: number, length: number): void {
    if (offset < 0 || offset + length > this.disk(id).length)
      throw new RangeError(`${id} ${offset}+${length} is off the disk`);
  }

  private disk(id: string): Uint8Array {
    const d = this.bytes.get(id);
    if (!d) throw new RangeError(`no disk ${id}`);
    return d;
  }
}
