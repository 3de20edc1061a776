/**
 * Storage virtualization core: pools of physical disks cut into chunks, virtual disks
 * (volumes) as chains of copy-on-write layers, snapshots, templates and clones. Pure: it
 * plans the physical operations and keeps the metadata; an adapter performs the I/O.
 *
 * Crash consistency (what the adapter must do, in this order):
 * - Metadata is one JSON document (`serializeStorage`), written to a temp file, fsynced,
 *   renamed over the old one (and the directory fsynced). A crash leaves the old or the
 *   new document, never a mix. `deserializeStorage` validates it and runs the checker.
 * - Write: perform the plan's `copy`/`zero` ops, then its `write` ops, then persist the
 *   metadata that points the layer at the new chunks. A crash before the rename loses only
 *   an unacknowledged (or unflushed) write: the old metadata still maps the old chunks,
 *   which copy-on-write never touches, and the new chunks are free in it. Persist at least
 *   before acknowledging a `disk.flush`.
 * - A saved document covers every plan made before it, so every op of those plans must
 *   be done before it is saved (drain in-flight writes first). Likewise, a read of a chunk
 *   whose copy/zero ops are still in flight must wait for them (the metadata already
 *   points at the new chunk).
 * - Snapshot: drain the volume's in-flight I/O, persist the metadata with the new empty top
 *   layer, then let writes go to it. Old or new document: both read the same bytes.
 * - Delete snapshot: a pointer-only merge into the layer above (no data moves, no copy ops);
 *   one metadata switch. Revert and delete volume: likewise metadata only.
 * - Freed chunks: the document that frees a chunk must be durable before any op that reuses
 *   it runs, or a crash would bring back metadata pointing at overwritten data. Persisting
 *   right after every snapshot / revert / delete-snapshot / delete-volume call does this.
 * - Chunks come back dirty from earlier use: the plan zero-fills every part of a newly
 *   allocated chunk the write does not cover, so a thin disk never leaks old bytes.
 */
import type { Extent } from '@vmsim/shared';
import { ErrorCode, VmsimError } from '@vmsim/shared';
import { DEFAULT_CHUNK_BYTES, StoragePool, type ChunkRef } from './pool.ts';

export const PROVISIONING = ['thin', 'thick'] as const;
export type Provisioning = (typeof PROVISIONING)[number];

/** A chunk a layer holds. `fresh`: allocated (thick) but never written, so it reads as zeros. */
export interface LayerChunk extends ChunkRef {
  fresh: boolean;
}

export interface Layer {
  id: string;
  pool: string;
  /** The layer below (older), or null at the bottom of a chain. */
  parent: string | null;
  readOnly: boolean;
  /** Layers whose parent this is, plus volumes whose top this is. Freed at zero. */
  refs: number;
  /** Virtual chunk number → physical chunk. */
  chunks: Map<number, LayerChunk>;
}

export interface Snapshot {
  name: string;
  /** The layer that was the top when the snapshot was taken; read-only since. */
  layer: string;
}

export interface Volume {
  id: string;
  pool: string;
  sizeBytes: number;
  provisioning: Provisioning;
  template: boolean;
  /** The template this volume was cloned from. */
  origin: string | null;
  /** The origin's top layer: where this volume's own layers end and shared ones start. */
  base: string | null;
  top: string;
  /** Oldest first; exactly the volume's own layers below its top. */
  snapshots: Snapshot[];
}

/** A physical place: disk id and byte offset on it. */
export interface PhysAddr {
  disk: string;
  offset: number;
}

/** What the adapter does for a write, in order: every copy/zero before any write. */
export type PhysOp =
  | { op: 'copy'; from: PhysAddr; to: PhysAddr; length: number }
  | { op: 'zero'; disk: string; offset: number; length: number }
  /** Bytes `dataOffset .. dataOffset+length` of the guest's buffer go to disk at offset. */
  | { op: 'write'; disk: string; offset: number; length: number; dataOffset: number };

/**
 * A piece of a read, in order: bytes from a disk, or zeros (never-written chunks). A zero
 * piece of a thick chunk allocated but never written names its `disk`: a real thick disk
 * reads it from the medium (it takes the device's time), a thin one answers at once.
 */
export type ReadSegment =
  { kind: 'data'; disk: string; offset: number; length: number } | { kind: 'zero'; length: number; disk?: string };

export type WritePlan =
  /**
   * `changed`: the plan changed the metadata (a chunk allocated, or a thick chunk's first
   * write, after which it no longer reads as zeros): it must be saved before a flush answers.
   */
  | { ok: true; ops: PhysOp[]; allocatedBytes: number; changed: boolean }
  /** Nothing changed: the adapter pauses the VM (IOError) and retries the same write later. */
  | { ok: false; reason: 'pool-full'; pool: string; volume: string; needBytes: number; freeBytes: number };

export interface VolumeFigures {
  id: string;
  pool: string;
  virtualBytes: number;
  provisioning: Provisioning;
  template: boolean;
  origin: string | null;
  /** Chunks in the volume's own layers (top and snapshots). */
  allocatedBytes: number;
  /** Chunks in the layers it shares with its template (and the template's other clones). */
  sharedBytes: number;
  snapshots: number;
}

export interface PoolFigures {
  id: string;
  chunkBytes: number;
  disks: number;
  /** Usable bytes: whole chunks only. */
  capacityBytes: number;
  allocatedBytes: number;
  freeBytes: number;
  /** Sum of the virtual sizes of the pool's volumes. */
  virtualBytes: number;
  /** virtualBytes / capacityBytes; above 1 the pool is overcommitted (thin). */
  overcommit: number;
}

export interface SnapshotInfo {
  name: string;
  layer: string;
  /** Bytes the snapshot's layer holds (what changed between it and the one before). */
  bytes: number;
}

export interface DiskSpec {
  id: string;
  capacityBytes: number;
}

export class StorageModel {
  readonly pools = new Map<string, StoragePool>();
  readonly layers = new Map<string, Layer>();
  readonly volumes = new Map<string, Volume>();
  nextLayer = 1;

  // ---------------------------------------------------------------- pools

  createPool(id: string, disks: readonly DiskSpec[], chunkBytes = DEFAULT_CHUNK_BYTES): StoragePool {
    if (this.pools.has(id)) throw new VmsimError(ErrorCode.CONFIG, `pool ${id} exists`);
    const pool = new StoragePool(id, chunkBytes);
    this.pools.set(id, pool);
    for (const d of disks) this.addDisk(id, d);
    return pool;
  }

  /** Adds a physical disk; its chunks are free at once (a paused writer can retry). */
  addDisk(poolId: string, disk: DiskSpec): void {
    const pool = this.pool(poolId);
    for (const p of this.pools.values()) {
      if (p.disk(disk.id)) throw new VmsimError(ErrorCode.CONFIG, `disk ${disk.id} is already in pool ${p.id}`);
    }
    pool.addDisk(disk.id, disk.capacityBytes);
  }

  /** Takes a disk out of a pool; only a disk none of whose chunks is in use. */
  removeDisk(poolId: string, diskId: string): void {
    this.pool(poolId).removeDisk(diskId);
  }

  /** The pool a physical disk belongs to, if any. */
  poolOfDisk(diskId: string): StoragePool | undefined {
    for (const p of this.pools.values()) if (p.disk(diskId)) return p;
    return undefined;
  }

  pool(id: string): StoragePool {
    const p = this.pools.get(id);
    if (!p) throw new VmsimError(ErrorCode.NOT_FOUND, `no pool ${id}`);
    return p;
  }

  // ---------------------------------------------------------------- volumes

  volume(id: string): Volume {
    const v = this.volumes.get(id);
    if (!v) throw new VmsimError(ErrorCode.NOT_FOUND, `no volume ${id}`);
    return v;
  }

  /** Thick allocates every chunk now and fails with NO_SPACE if the pool lacks them. */
  createVolume(spec: { id: string; pool: string; sizeBytes: number; provisioning: Provisioning }): Volume {
    if (this.volumes.has(spec.id)) throw new VmsimError(ErrorCode.CONFIG, `volume ${spec.id} exists`);
    if (!Number.isInteger(spec.sizeBytes) || spec.sizeBytes < 1) {
      throw new VmsimError(ErrorCode.CONFIG, `volume ${spec.id}: size must be a positive integer`);
    }
    const pool = this.pool(spec.pool);
    let chunks: ChunkRef[] = [];
    if (spec.provisioning === 'thick') {
      const n = Math.ceil(spec.sizeBytes / pool.chunkBytes);
      const got = pool.allocate(n);
      if (!got) {
        throw new VmsimError(
          ErrorCode.NO_SPACE,
          `pool ${pool.id} has ${pool.freeChunks * pool.chunkBytes} bytes free, thick volume ${spec.id} needs ${n * pool.chunkBytes}`,
          { pool: pool.id, needBytes: n * pool.chunkBytes, freeBytes: pool.freeChunks * pool.chunkBytes },
        );
      }
      chunks = got;
    }
    const top = this.newLayer(spec.pool, null);
    chunks.forEach((r, i) => top.chunks.set(i, { ...r, fresh: true }));
    const v: Volume = {
      id: spec.id,
      pool: spec.pool,
      sizeBytes: spec.sizeBytes,
      provisioning: spec.provisioning,
      template: false,
      origin: null,
      base: null,
      top: top.id,
      snapshots: [],
    };
    this.volumes.set(v.id, v);
    return v;
  }

  /**
   * A thick volume over extents that already hold data (a VM disk the ExtentAllocator
   * placed before pools existed, found at start-up): its chunks are claimed, not copied.
   * Extents must be chunk-aligned (the allocator aligns to 1 MiB) and cover the size.
   */
  adoptVolume(spec: { id: string; pool: string; sizeBytes: number; extents: readonly Extent[] }): Volume {
    if (this.volumes.has(spec.id)) throw new VmsimError(ErrorCode.CONFIG, `volume ${spec.id} exists`);
    const pool = this.pool(spec.pool);
    const cb = pool.chunkBytes;
    const n = Math.ceil(spec.sizeBytes / cb);
    const map = new Map<number, ChunkRef>();
    for (const e of spec.extents) {
      if (
        e.vOffset % cb !== 0 ||
        e.pOffset % cb !== 0 ||
        (e.length % cb !== 0 && e.vOffset + e.length < spec.sizeBytes)
      ) {
        throw new VmsimError(ErrorCode.CONFIG, `volume ${spec.id}: extent on ${e.disk} is not aligned to ${cb} bytes`);
      }
      for (let k = 0; k * cb < e.length && e.vOffset / cb + k < n; k++) {
        map.set(e.vOffset / cb + k, { disk: e.disk, index: e.pOffset / cb + k });
      }
    }
    if (map.size !== n)
      throw new VmsimError(ErrorCode.CONFIG, `volume ${spec.id}: extents cover ${map.size} of ${n} chunks`);
    for (const ref of map.values()) {
      const d = pool.disk(ref.disk);
      if (!d || ref.index >= d.chunks || d.used[ref.index] === 1) {
        throw new VmsimError(
          ErrorCode.CONFIG,
          `volume ${spec.id}: chunk ${ref.disk}#${ref.index} is missing or in use`,
        );
      }
    }
    for (const ref of map.values()) pool.claim(ref);
    const top = this.newLayer(spec.pool, null);
    for (const [c, ref] of map) top.chunks.set(c, { ...ref, fresh: false });
    const v: Volume = {
      id: spec.id,
      pool: spec.pool,
      sizeBytes: spec.sizeBytes,
      provisioning: 'thick',
      template: false,
      origin: null,
      base: null,
      top: top.id,
      snapshots: [],
    };
    this.volumes.set(v.id, v);
    return v;
  }

  /** Frees the chunks nobody else references. A template with clones cannot go. */
  deleteVolume(id: string): { freedBytes: number } {
    const v = this.volume(id);
    const clones = this.clonesOf(id);
    if (clones.length > 0) {
      throw new VmsimError(ErrorCode.BAD_STATE, `template ${id} has ${clones.length} clone(s): ${clones.join(', ')}`);
    }
    const freed = this.release(v.top);
    this.volumes.delete(id);
    return { freedBytes: freed * this.pool(v.pool).chunkBytes };
  }

  clonesOf(templateId: string): string[] {
    return [...this.volumes.values()].filter((x) => x.origin === templateId).map((x) => x.id);
  }

  /** Read-only from now on; clones share its layers. */
  markTemplate(id: string): void {
    const v = this.volume(id);
    if (v.template) return;
    v.template = true;
    this.layer(v.top).readOnly = true;
  }

  /** A new thin volume: an empty top layer over the template's layers. Copies nothing. */
  clone(templateId: string, id: string): Volume {
    const t = this.volume(templateId);
    if (!t.template) throw new VmsimError(ErrorCode.BAD_STATE, `volume ${templateId} is not a template`);
    if (this.volumes.has(id)) throw new VmsimError(ErrorCode.CONFIG, `volume ${id} exists`);
    const top = this.newLayer(t.pool, t.top);
    const v: Volume = {
      id,
      pool: t.pool,
      sizeBytes: t.sizeBytes,
      provisioning: 'thin',
      template: false,
      origin: t.id,
      base: t.top,
      top: top.id,
      snapshots: [],
    };
    this.volumes.set(id, v);
    return v;
  }

  // ---------------------------------------------------------------- I/O planning

  /**
   * Where a virtual range's bytes are: the newest layer holding each chunk, else zeros.
   * With `snapshot`, the range as it was when that snapshot was taken (backup, export).
   */
  read(volumeId: string, offset: number, length: number, snapshot?: string): ReadSegment[] {
    const v = this.volume(volumeId);
    this.checkRange(v, offset, length);
    const cb = this.pool(v.pool).chunkBytes;
    const from = snapshot === undefined ? v.top : v.snapshots[this.snapshotIndex(v, snapshot)]!.layer;
    const out: ReadSegment[] = [];
    for (let c = Math.floor(offset / cb); c * cb < offset + length; c++) {
      const s = Math.max(offset, c * cb);
      const e = Math.min(offset + length, (c + 1) * cb);
      const ch = this.lookup(from, c);
      if (!ch) pushRead(out, { kind: 'zero', length: e - s });
      else if (ch.fresh) pushRead(out, { kind: 'zero', length: e - s, disk: ch.disk });
      else pushRead(out, { kind: 'data', disk: ch.disk, offset: ch.index * cb + (s - c * cb), length: e - s });
    }
    return out;
  }

  /**
   * Plans a write into the volume's top layer, allocating chunks it lacks (all or none).
   * A chunk only a lower layer holds is copied up for the bytes the write leaves alone.
   * The metadata changes at once; the adapter must perform the ops before persisting it.
   */
  planWrite(volumeId: string, offset: number, length: number): WritePlan {
    const v = this.volume(volumeId);
    this.checkRange(v, offset, length);
    const top = this.layer(v.top);
    if (top.readOnly) throw new VmsimError(ErrorCode.BAD_STATE, `volume ${v.id} is read-only (template)`);
    const pool = this.pool(v.pool);
    const cb = pool.chunkBytes;
    const first = Math.floor(offset / cb);
    const last = Math.floor((offset + length - 1) / cb);
    let need = 0;
    for (let c = first; c <= last; c++) if (!top.chunks.has(c)) need++;
    const fresh = need > 0 ? pool.allocate(need) : [];
    if (!fresh) {
      return {
        ok: false,
        reason: 'pool-full',
        pool: pool.id,
        volume: v.id,
        needBytes: need * cb,
        freeBytes: pool.freeChunks * cb,
      };
    }
    const prep: PhysOp[] = [];
    const writes: PhysOp[] = [];
    let k = 0;
    let changed = need > 0;
    for (let c = first; c <= last; c++) {
      const cStart = c * cb;
      const cLen = Math.min(cb, v.sizeBytes - cStart);
      const ws = Math.max(offset, cStart) - cStart;
      const we = Math.min(offset + length, cStart + cLen) - cStart;
      let own = top.chunks.get(c);
      if (!own) {
        const below = top.parent === null ? undefined : this.lookup(top.parent, c);
        own = { ...fresh[k++]!, fresh: false };
        top.chunks.set(c, own);
        fill(prep, below, own, 0, ws, cb);
        fill(prep, below, own, we, cLen, cb);
      } else if (own.fresh) {
        fill(prep, undefined, own, 0, ws, cb);
        fill(prep, undefined, own, we, cLen, cb);
        own.fresh = false;
        changed = true;
      }
      const w = { op: 'write' as const, disk: own.disk, offset: own.index * cb + ws, length: we - ws };
      const prev = writes.at(-1);
      const dataOffset = cStart + ws - offset;
      if (prev?.op === 'write' && prev.disk === w.disk && prev.offset + prev.length === w.offset) {
        prev.length += w.length;
      } else writes.push({ ...w, dataOffset });
    }
    return { ok: true, ops: [...prep, ...writes], allocatedBytes: need * cb, changed };
  }

  /**
   * The volume's current view as extents (newest layer per chunk, runs merged), in the
   * shape VM info reports; unwritten chunks are absent.
   */
  extentsOf(volumeId: string): Extent[] {
    const v = this.volume(volumeId);
    const cb = this.pool(v.pool).chunkBytes;
    const out: Extent[] = [];
    for (let c = 0; c * cb < v.sizeBytes; c++) {
      const ch = this.lookup(v.top, c);
      if (!ch || ch.fresh) continue;
      const length = Math.min(cb, v.sizeBytes - c * cb);
      const prev = out.at(-1);
      if (
        prev &&
        prev.disk === ch.disk &&
        prev.vOffset + prev.length === c * cb &&
        prev.pOffset + prev.length === ch.index * cb
      ) {
        prev.length += length;
      } else out.push({ vOffset: c * cb, disk: ch.disk, pOffset: ch.index * cb, length });
    }
    return out;
  }

  /** Physical disks the volume's chain has chunks on: where a flush must go. */
  disksOf(volumeId: string): string[] {
    const v = this.volume(volumeId);
    const ids = new Set<string>();
    for (let id: string | null = v.top; id !== null; id = this.layer(id).parent) {
      for (const ch of this.layer(id).chunks.values()) ids.add(ch.disk);
    }
    return [...ids].sort();
  }

  // ---------------------------------------------------------------- snapshots

  /** The top becomes read-only; writes go to a new empty top. Metadata only. */
  snapshot(volumeId: string, name: string): Snapshot {
    const v = this.writable(volumeId, 'snapshot');
    if (v.snapshots.some((s) => s.name === name)) {
      throw new VmsimError(ErrorCode.CONFIG, `volume ${v.id} already has a snapshot ${name}`);
    }
    const old = this.layer(v.top);
    old.readOnly = true;
    // The volume's reference moves from the old top to the new one, which refers to the old.
    const top = this.newLayer(v.pool, old.id);
    old.refs--;
    v.top = top.id;
    const s = { name, layer: old.id };
    v.snapshots.push(s);
    return s;
  }

  /** Back to the snapshot's contents: drops every layer above it (and later snapshots). */
  revert(volumeId: string, name: string): { freedBytes: number; droppedSnapshots: string[] } {
    const v = this.writable(volumeId, 'revert');
    const i = this.snapshotIndex(v, name);
    const snap = v.snapshots[i]!;
    const top = this.newLayer(v.pool, snap.layer);
    const freed = this.release(v.top);
    v.top = top.id;
    const dropped = v.snapshots.splice(i + 1).map((s) => s.name);
    return { freedBytes: freed * this.pool(v.pool).chunkBytes, droppedSnapshots: dropped };
  }

  /**
   * Merges the snapshot's layer into the layer above it. Not into the one below: that one
   * is the previous snapshot's image and must not change. The layer above holds the newer
   * bytes of the chunks it has, so the snapshot's copies of those are freed and the rest
   * are handed up by pointer. No data moves, so there are no copy ops.
   */
  deleteSnapshot(volumeId: string, name: string): { freedBytes: number; ops: PhysOp[] } {
    const v = this.writable(volumeId, 'delete a snapshot of');
    const i = this.snapshotIndex(v, name);
    const gone = this.layer(v.snapshots[i]!.layer);
    const aboveId = v.snapshots[i + 1]?.layer ?? v.top;
    const above = this.layer(aboveId);
    if (above.parent !== gone.id || gone.refs !== 1) {
      throw new VmsimError(ErrorCode.INTERNAL, `snapshot ${name} of ${v.id}: layer ${gone.id} is shared`);
    }
    const pool = this.pool(v.pool);
    let freed = 0;
    for (const [c, ch] of gone.chunks) {
      if (above.chunks.has(c)) {
        pool.free(ch);
        freed++;
      } else above.chunks.set(c, ch);
    }
    above.parent = gone.parent;
    this.layers.delete(gone.id);
    v.snapshots.splice(i, 1);
    return { freedBytes: freed * pool.chunkBytes, ops: [] };
  }

  listSnapshots(volumeId: string): SnapshotInfo[] {
    const v = this.volume(volumeId);
    const cb = this.pool(v.pool).chunkBytes;
    return v.snapshots.map((s) => ({ name: s.name, layer: s.layer, bytes: this.layer(s.layer).chunks.size * cb }));
  }

  // ---------------------------------------------------------------- figures

  volumeFigures(volumeId: string): VolumeFigures {
    const v = this.volume(volumeId);
    const cb = this.pool(v.pool).chunkBytes;
    let own = 0;
    let shared = 0;
    let mine = true;
    for (let id: string | null = v.top; id !== null; id = this.layer(id).parent) {
      if (id === v.base) mine = false;
      const n = this.layer(id).chunks.size;
      if (mine) own += n;
      else shared += n;
    }
    return {
      id: v.id,
      pool: v.pool,
      virtualBytes: v.sizeBytes,
      provisioning: v.provisioning,
      template: v.template,
      origin: v.origin,
      allocatedBytes: own * cb,
      sharedBytes: shared * cb,
      snapshots: v.snapshots.length,
    };
  }

  poolFigures(poolId: string): PoolFigures {
    const p = this.pool(poolId);
    const capacity = p.totalChunks * p.chunkBytes;
    const allocated = p.usedChunks * p.chunkBytes;
    let virtual = 0;
    for (const v of this.volumes.values()) if (v.pool === poolId) virtual += v.sizeBytes;
    return {
      id: p.id,
      chunkBytes: p.chunkBytes,
      disks: p.disks.length,
      capacityBytes: capacity,
      allocatedBytes: allocated,
      freeBytes: capacity - allocated,
      virtualBytes: virtual,
      overcommit: capacity > 0 ? virtual / capacity : virtual > 0 ? Infinity : 0,
    };
  }

  // ---------------------------------------------------------------- internals

  layer(id: string): Layer {
    const l = this.layers.get(id);
    if (!l) throw new VmsimError(ErrorCode.INTERNAL, `no layer ${id}`);
    return l;
  }

  private newLayer(pool: string, parent: string | null): Layer {
    const l: Layer = { id: `L${this.nextLayer++}`, pool, parent, readOnly: false, refs: 1, chunks: new Map() };
    if (parent !== null) this.layer(parent).refs++;
    this.layers.set(l.id, l);
    return l;
  }

  /** Drops one reference; a layer at zero frees its chunks and drops its parent's. Chunks freed. */
  private release(layerId: string): number {
    let freed = 0;
    for (let id: string | null = layerId; id !== null;) {
      const l = this.layer(id);
      if (--l.refs > 0) break;
      const pool = this.pool(l.pool);
      for (const ch of l.chunks.values()) pool.free(ch);
      freed += l.chunks.size;
      this.layers.delete(id);
      id = l.parent;
    }
    return freed;
  }

  private lookup(layerId: string, chunk: number): LayerChunk | undefined {
    for (let id: string | null = layerId; id !== null;) {
      const l = this.layer(id);
      const ch = l.chunks.get(chunk);
      if (ch) return ch;
      id = l.parent;
    }
    return undefined;
  }

  private writable(id: string, what: string): Volume {
    const v = this.volume(id);
    if (v.template) throw new VmsimError(ErrorCode.BAD_STATE, `cannot ${what} template ${id}: it is read-only`);
    return v;
  }

  private snapshotIndex(v: Volume, name: string): number {
    const i = v.snapshots.findIndex((s) => s.name === name);
    if (i < 0) throw new VmsimError(ErrorCode.NOT_FOUND, `volume ${v.id} has no snapshot ${name}`);
    return i;
  }

  private checkRange(v: Volume, offset: number, length: number): void {
    if (
      !Number.isInteger(offset) ||
      !Number.isInteger(length) ||
      offset < 0 ||
      length < 1 ||
      offset + length > v.sizeBytes
    ) {
      throw new VmsimError(
        ErrorCode.OUT_OF_RANGE,
        `volume ${v.id} access ${offset}..${offset + length} is outside its ${v.sizeBytes} bytes`,
      );
    }
  }
}

/** Fills bytes a..b of a new chunk from the chunk below (copy) or with zeros. */
function fill(out: PhysOp[], from: LayerChunk | undefined, to: ChunkRef, a: number, b: number, cb: number): void {
  if (a >= b) return;
  const dst = { disk: to.disk, offset: to.index * cb + a };
  if (from && !from.fresh) {
    out.push({ op: 'copy', from: { disk: from.disk, offset: from.index * cb + a }, to: dst, length: b - a });
  } else out.push({ op: 'zero', ...dst, length: b - a });
}

function pushRead(out: ReadSegment[], s: ReadSegment): void {
  const prev = out.at(-1);
  if (prev?.kind === 'zero' && s.kind === 'zero' && prev.disk === s.disk) prev.length += s.length;
  else if (
    prev?.kind === 'data' &&
    s.kind === 'data' &&
    prev.disk === s.disk &&
    prev.offset + prev.length === s.offset
  ) {
    prev.length += s.length;
  } else out.push(s);
}
