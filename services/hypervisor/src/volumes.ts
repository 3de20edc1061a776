import fs from 'node:fs';
import path from 'node:path';
import type {
  Clock,
  DiskIo,
  Extent,
  HardwareProfile,
  HypercallReply,
  Logger,
  Msg,
  NatsConnection,
  Namespace,
  PoolInfo,
  Subscription,
  VmDefinition,
  VmDiskSpec,
  VolumeInfo,
} from '@vmsim/shared';
import {
  DEFAULT_POOL,
  ErrorCode,
  HypercallReply as HypercallReplySchema,
  VmsimError,
  anyStorageIoSubject,
  emptyDiskIo,
  zeroFillCostBytes,
  decode,
  encode,
  errorReply,
  storageIoSubject,
  toVmsimError,
  validate,
} from '@vmsim/shared';
import { z } from 'zod';
import { ExtentAllocator } from './block-map.ts';
import type { HostDevices } from './devices.ts';
import { StorageDoc, StorageModel, checkStorage, deserializeStorage, serializeStorage } from './storage/index.ts';
import type { PhysOp, Provisioning } from './storage/index.ts';
import { RateGate } from './rate-gate.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** One I/O on a virtual disk, from a guest's hypercall or the management API. */
export type VolumeIo =
  | { op: 'read'; offset: number; length: number; snapshot?: string | undefined }
  | { op: 'write'; offset: number; data: Uint8Array }
  | { op: 'flush' };

interface IoRequest {
  volume: string;
  /** The scheduler flow it is charged to (the VM's name). */
  flow: string;
  io: VolumeIo;
  /** A guest's reply subject: when one device operation does it all, the device answers there itself. */
  replyTo?: string | undefined;
  respond?: ((r: HypercallReply) => void) | undefined;
  /** A guest's write that finds the pool full waits (its VM paused); the management API's fails at once. */
  stallOnFull: boolean;
  /** Simulated ms when it reached the hypervisor. */
  arrivedAt: number;
}

/** A device operation the hypervisor assembles itself, answered on its own I/O subject. */
type PieceResult =
  { ok: true; waitMs: number; serviceMs: number; data?: Uint8Array } | { ok: false; code: string; message: string };

interface VolumeState {
  io: DiskIo;
  /** Operations started and not finished (fast path included): a snapshot waits for 0. */
  inflight: number;
  /** A snapshot or snapshot delete is under way: new I/O waits. */
  frozen: boolean;
  /** I/O that may not start yet (frozen, chunk busy, metadata being saved), in arrival order. */
  waiting: IoRequest[];
  /** Chunks whose copy-up or zero fill is in flight: nothing else may touch them meanwhile. */
  busy: Set<number>;
  gate: RateGate | undefined;
  drained: Array<() => void>;
}

export interface VolumeEvents {
  /** A write of `vm`'s found its pool full: pause the VM (as libvirt's on-ENOSPC `pause`). */
  stalled(vm: string, reason: string): void;
  /** Every stalled write of `vm` went through: let it run again. */
  unstalled(vm: string, reason: string): void;
}

export interface VolumesDeps {
  nc: NatsConnection;
  ns: Namespace;
  host: string;
  clock: Clock;
  logger: Logger;
  devices: HostDevices;
  profile: HardwareProfile;
  dataDir: string;
  /** Swap the host wants on its last disk, outside every pool (decided once, at the first start). */
  swapBytes: number;
  events: VolumeEvents;
  /** Whether a VM runs now (revert and template refuse a disk in use). */
  isActive: (vm: string) => boolean;
  /** Fault injection for crash-consistency tests: called at named points of metadata changes. */
  crashPoint: (point: string) => void;
  /** The bytes the host-agent's backing files hold, per physical disk (null when it does not answer). */
  backingBytes: () => Promise<Map<string, number> | null>;
}

/** VM disks of an older data directory, placed as extents before pools existed. */
export interface LegacyDisk {
  vm: string;
  sizeBytes: number;
  extents: Extent[];
}

const StorageFile = z.object({
  version: z.literal(1),
  storage: StorageDoc,
});

/**
 * The hypervisor's storage: pools of the host's physical disks, every VM disk a volume in
 * one (thin or thick, snapshots, clones of templates), the I/O path from a guest's block
 * address to the chunks that hold it, and the metadata saved in the order the model needs
 * for crash consistency (see storage/model.ts).
 */
export class Volumes {
  readonly model: StorageModel;
  readonly swap: { disk: string; offset: number; length: number } | undefined;
  private readonly usable: Record<string, number>;
  private readonly d: VolumesDeps;
  private readonly file: string;
  private readonly state = new Map<string, VolumeState>();
  private readonly attached = new Map<string, string>();
  private readonly pieces = new Map<number, (r: PieceResult) => void>();
  private nextPiece = 1;
  private sub: Subscription | undefined;
  /** Writes waiting for pool space, oldest first, and the VMs they paused. */
  private stalled: IoRequest[] = [];
  private readonly stalledVms = new Map<string, string>();
  /** Metadata changed since it was last saved. */
  private dirty = false;
  /** Writes whose plan changed metadata and whose device work is not done: a save waits for 0. */
  private allocInflight = 0;
  private saveWaiters: Array<() => void> = [];
  /** Saves started, and the newest one renamed into place (an older one finishing later is dropped). */
  private saveGen = 0;
  private placedGen = 0;
  private savesInFlight = 0;
  private lastSave: Promise<void> = Promise.resolve();
  private saveTimer: NodeJS.Timeout | undefined;

  private constructor(
    deps: VolumesDeps,
    model: StorageModel,
    swap: Volumes['swap'],
    usable: Record<string, number>,
    file: string,
  ) {
    this.d = deps;
    this.model = model;
    this.swap = swap;
    this.usable = usable;
    this.file = file;
  }

  /**
   * Loads the storage metadata, or makes it on a first start: the default pool on the first
   * physical disk, the swap area at the end of the last one, and VM disks of an older data
   * directory adopted in place (their bytes stay where they are).
   */
  static open(deps: VolumesDeps, legacy: readonly LegacyDisk[]): Volumes {
    const file = path.join(deps.dataDir, 'storage.json');
    fs.mkdirSync(deps.dataDir, { recursive: true });
    const disks = deps.profile.disks.map((x) => ({ id: x.id, capacityBytes: Math.floor(x.capacityGiB * GiB) }));
    const last = disks[disks.length - 1]!;
    // Temporary documents a crash left before their rename: never in place, so never valid.
    for (const f of fs.readdirSync(deps.dataDir)) {
      if (f.startsWith('storage.json.tmp')) fs.rmSync(path.join(deps.dataDir, f), { force: true });
    }
    let model: StorageModel;
    const fresh = !fs.existsSync(file);
    if (!fresh) {
      const doc = validate(JSON.parse(fs.readFileSync(file, 'utf8')), StorageFile, `storage metadata in ${file}`);
      model = deserializeStorage(doc.storage);
    } else {
      model = new StorageModel();
      const first = disks[0]!;
      // A one-disk host keeps half of it out of the pool for swap at most.
      const room =
        disks.length === 1
          ? first.capacityBytes - Math.min(deps.swapBytes, first.capacityBytes / 2)
          : first.capacityBytes;
      model.createPool(DEFAULT_POOL, [{ id: first.id, capacityBytes: Math.floor(room / MiB) * MiB }]);
    }
    // Swap goes where the host keeps its own things: the end of the last disk, past what any
    // pool (or an older data directory's VM disks) holds there, so a hog swapping does not
    // stand in front of VM disk I/O. Placed at every start, sized for this start's overcommit.
    const alloc = new ExtentAllocator([last]);
    const inPool = model.poolOfDisk(last.id)?.disk(last.id)?.capacityBytes ?? 0;
    if (inPool > 0) alloc.claim([{ vOffset: 0, disk: last.id, pOffset: 0, length: inPool }]);
    alloc.claim(legacy.flatMap((l) => l.extents.filter((e) => e.disk === last.id)));
    const swapExt = alloc.allocateAtEnd(last.id, deps.swapBytes);
    const swap = swapExt ? { disk: last.id, offset: swapExt.pOffset, length: swapExt.length } : undefined;
    const usable: Record<string, number> = {};
    for (const d of disks) usable[d.id] = swap && swap.disk === d.id ? swap.offset : d.capacityBytes;
    const v = new Volumes(deps, model, swap, usable, file);
    for (const id of model.volumes.keys()) v.stateOf(id);
    if (fresh) {
      for (const l of legacy) {
        try {
          model.adoptVolume({ id: l.vm, pool: DEFAULT_POOL, sizeBytes: l.sizeBytes, extents: l.extents });
          v.stateOf(l.vm);
        } catch (e) {
          deps.logger.error({ vm: l.vm, err: (e as Error).message }, `storage: could not adopt the disk of ${l.vm}`);
        }
      }
      v.saveNowSync();
    }
    deps.logger.info(
      { pools: model.pools.size, volumes: model.volumes.size, swap, file },
      `storage: ${model.pools.size} pools, ${model.volumes.size} volumes ${fresh ? 'created' : 'loaded'}`,
    );
    return v;
  }

  start(): void {
    this.sub = this.d.nc.subscribe(anyStorageIoSubject(this.d.ns, this.d.host), {
      callback: (err, m) => {
        if (!err) this.onPiece(m);
      },
    });
    // Allocation since the last save is lost by a hypervisor crash unless a flush saved it;
    // a periodic save bounds that to a second.
    this.saveTimer = setInterval(() => {
      if (this.dirty) this.save().catch(() => undefined);
    }, 1000);
    this.saveTimer.unref();
  }

  stop(): void {
    this.sub?.unsubscribe();
    if (this.saveTimer) clearInterval(this.saveTimer);
    for (const s of this.state.values()) s.gate?.stop();
    if (this.dirty && this.allocInflight === 0) this.saveNowSync();
  }

  // ---------------------------------------------------------------- VM disks

  /** The volume a new VM's disk is: made now (owned by the VM) or an existing one. */
  createForVm(def: VmDefinition, sizeBytes: number): { volume: string; owned: boolean } {
    const spec: VmDiskSpec = def.disk ?? { pool: DEFAULT_POOL, provisioning: 'thick' };
    if (spec.volume) {
      const v = this.model.volume(spec.volume);
      if (v.template) throw new VmsimError(ErrorCode.BAD_STATE, `volume ${v.id} is a template: clone it instead`);
      const owner = this.attached.get(v.id);
      if (owner) throw new VmsimError(ErrorCode.BAD_STATE, `volume ${v.id} is already the disk of VM ${owner}`);
      return { volume: v.id, owned: false };
    }
    if (this.model.volumes.has(def.name)) {
      throw new VmsimError(
        ErrorCode.CONFIG,
        `a volume named ${def.name} exists already: attach it with disk.volume, or delete it first`,
      );
    }
    if (spec.clone) this.model.clone(spec.clone, def.name);
    else {
      this.model.createVolume({ id: def.name, pool: spec.pool, sizeBytes, provisioning: spec.provisioning });
    }
    this.stateOf(def.name);
    this.saveNowSync();
    return { volume: def.name, owned: true };
  }

  attach(volume: string, vm: string): void {
    this.model.volume(volume);
    this.attached.set(volume, vm);
  }

  /** Applies the VM's disk rate limits to its volume (at start and on tune). */
  configure(volume: string, def: VmDefinition): void {
    const s = this.stateOf(volume);
    s.gate?.stop();
    s.gate =
      def.diskOpsPerS || def.diskBytesPerS ? new RateGate(this.d.clock, def.diskOpsPerS, def.diskBytesPerS) : undefined;
  }

  /** The VM is gone: its own volume goes with it (freeing space); an attached one stays. */
  releaseForVm(volume: string, owned: boolean): void {
    this.attached.delete(volume);
    if (!owned || !this.model.volumes.has(volume)) return;
    const { freedBytes } = this.model.deleteVolume(volume);
    this.state.delete(volume);
    this.saveNowSync();
    if (freedBytes > 0) this.retryStalled(`volume ${volume} deleted`);
  }

  /** Forgets a VM's stalled writes (it was powered off: nobody waits for them). */
  dropStalled(vm: string): void {
    this.stalled = this.stalled.filter((r) => r.flow !== vm);
    this.stalledVms.delete(vm);
  }

  isStalled(vm: string): boolean {
    return this.stalledVms.has(vm);
  }

  sizeOf(volume: string): number {
    return this.model.volume(volume).sizeBytes;
  }

  // ---------------------------------------------------------------- I/O

  /** A guest's disk hypercall: answered at `replyTo`, by the device itself when it can. */
  guestIo(vm: string, volume: string, io: VolumeIo, replyTo: string): void {
    this.submit({ volume, flow: vm, io, replyTo, stallOnFull: true, arrivedAt: this.d.clock.now() });
  }

  /** I/O from the management API (vol-download / vol-upload). */
  apiIo(volume: string, io: VolumeIo): Promise<HypercallReply> {
    this.model.volume(volume);
    const flow = this.attached.get(volume) ?? 'storage';
    return new Promise((respond) =>
      this.submit({ volume, flow, io, respond, stallOnFull: false, arrivedAt: this.d.clock.now() }),
    );
  }

  private submit(req: IoRequest): void {
    const s = this.stateOf(req.volume);
    const bytes = req.io.op === 'read' ? req.io.length : req.io.op === 'write' ? req.io.data.length : 0;
    if (s.gate) s.gate.admit(bytes, () => this.enqueue(req));
    else this.enqueue(req);
  }

  private enqueue(req: IoRequest): void {
    const s = this.state.get(req.volume);
    if (!s) return this.reply(req, errorReply(ErrorCode.NOT_FOUND, `volume ${req.volume} is gone`));
    if (s.waiting.length > 0 || !this.canStart(s, req)) {
      s.waiting.push(req);
      return;
    }
    this.begin(s, req);
  }

  private canStart(s: VolumeState, req: IoRequest): boolean {
    if (s.frozen) return false;
    if (req.io.op === 'flush') return true;
    // While a save waits for allocating writes to finish, new writes wait, so it cannot starve.
    if (req.io.op === 'write' && this.saveWaiters.length > 0) return false;
    if (s.busy.size === 0) return true;
    const cb = this.model.pool(this.model.volume(req.volume).pool).chunkBytes;
    const len = req.io.op === 'read' ? req.io.length : req.io.data.length;
    for (let c = Math.floor(req.io.offset / cb); c * cb < req.io.offset + len; c++) if (s.busy.has(c)) return false;
    return true;
  }

  /** Starts what waits on a volume, in order, as far as it can. */
  private wake(volume: string): void {
    const s = this.state.get(volume);
    if (!s) return;
    while (s.waiting.length > 0 && this.canStart(s, s.waiting[0]!)) this.begin(s, s.waiting.shift()!);
  }

  private wakeAll(): void {
    for (const id of this.state.keys()) this.wake(id);
  }

  private begin(s: VolumeState, req: IoRequest): void {
    s.inflight++;
    let finished = false;
    const finish = (ok: boolean) => {
      if (finished) return;
      finished = true;
      s.inflight--;
      const lat = Math.max(0, this.d.clock.now() - req.arrivedAt);
      if (ok && req.io.op !== 'flush') {
        s.io.latencyMsSum += lat;
        s.io.latencyMsMax = Math.max(s.io.latencyMsMax, lat);
      }
      if (s.inflight === 0) for (const f of s.drained.splice(0)) f();
      this.wake(req.volume);
    };
    try {
      if (req.io.op === 'read') this.read(s, req, req.io, finish);
      else if (req.io.op === 'write') this.write(s, req, req.io, finish);
      else this.flush(s, req, finish);
    } catch (e) {
      const ve = toVmsimError(e);
      this.reply(req, errorReply(ve.code, ve.message));
      finish(false);
    }
  }

  private read(
    s: VolumeState,
    req: IoRequest,
    io: Extract<VolumeIo, { op: 'read' }>,
    finish: (ok: boolean) => void,
  ): void {
    const segs = this.model.read(req.volume, io.offset, io.length, io.snapshot);
    s.io.reads++;
    s.io.bytesRead += io.length;
    const only = segs.length === 1 ? segs[0]! : undefined;
    if (only && only.kind === 'zero' && only.disk === undefined) {
      // Never written on a thin disk: no medium holds it, zeros at once.
      s.io.zeroReads++;
      this.reply(req, { ok: true, waitMs: 0, serviceMs: 0, data: new Uint8Array(io.length) });
      return finish(true);
    }
    if (only && req.replyTo) {
      // One device read answers the guest directly, as before pools.
      const disk = only.disk!;
      const offset = only.kind === 'data' ? only.offset : 0;
      if (only.kind === 'zero') s.io.zeroReads++;
      this.d.devices.diskScheduler(disk).submit(
        req.flow,
        this.d.devices.diskCost(disk, io.length),
        {
          subject: this.d.devices.subjects.disk.get(disk)!,
          kind: 'disk.read',
          body:
            only.kind === 'data'
              ? { replyTo: req.replyTo, op: 'read', offset, length: io.length }
              : { replyTo: req.replyTo, op: 'read', offset: 0, length: io.length, zeros: true },
          onSettled: (ok) => finish(ok),
        },
        io.length,
      );
      return;
    }
    const out = new Uint8Array(io.length);
    const started = this.d.clock.now();
    let pos = 0;
    const parts: Array<Promise<PieceResult>> = [];
    for (const seg of segs) {
      const at = pos;
      pos += seg.length;
      if (seg.kind === 'zero' && seg.disk === undefined) continue;
      const disk = seg.disk!;
      const body =
        seg.kind === 'data'
          ? { op: 'read', offset: seg.offset, length: seg.length }
          : { op: 'read', offset: 0, length: seg.length, zeros: true };
      parts.push(
        this.piece(req.flow, disk, 'disk.read', body, seg.length).then((r) => {
          if (r.ok && r.data && seg.kind === 'data') out.set(r.data.subarray(0, seg.length), at);
          return r;
        }),
      );
    }
    void Promise.all(parts).then((results) => {
      const bad = results.find((r) => !r.ok);
      if (bad && !bad.ok) {
        this.reply(req, errorReply(bad.code, bad.message));
        return finish(false);
      }
      this.reply(req, { ok: true, ...this.timing(results, started), data: out });
      finish(true);
    });
  }

  private write(
    s: VolumeState,
    req: IoRequest,
    io: Extract<VolumeIo, { op: 'write' }>,
    finish: (ok: boolean) => void,
  ): void {
    const plan = this.model.planWrite(req.volume, io.offset, io.data.length);
    if (!plan.ok) {
      const need = `${(plan.needBytes / MiB).toFixed(0)} MiB`;
      const reason = `I/O error: pool ${plan.pool} is full (volume ${plan.volume} needs ${need}, ${(plan.freeBytes / MiB).toFixed(0)} MiB free)`;
      s.io.poolFullStalls++;
      if (!req.stallOnFull) {
        this.reply(req, errorReply(ErrorCode.NO_SPACE, reason));
        return finish(false);
      }
      // Not in flight while it waits: a snapshot or delete that frees space must not wait for it.
      this.stalled.push(req);
      if (!this.stalledVms.has(req.flow)) {
        this.stalledVms.set(req.flow, plan.pool);
        this.d.events.stalled(req.flow, `${reason}: paused until the pool has room`);
      }
      s.inflight--;
      if (s.inflight === 0) for (const f of s.drained.splice(0)) f();
      return;
    }
    s.io.writes++;
    s.io.bytesWritten += io.data.length;
    const prep = plan.ops.filter((o) => o.op !== 'write');
    const writes = plan.ops.filter((o): o is Extract<PhysOp, { op: 'write' }> => o.op === 'write');
    const changed = plan.changed;
    if (!changed && writes.length === 1 && req.replyTo) {
      const w = writes[0]!;
      this.d.devices.diskScheduler(w.disk).submit(
        req.flow,
        this.d.devices.diskCost(w.disk, io.data.length),
        {
          subject: this.d.devices.subjects.disk.get(w.disk)!,
          kind: 'disk.write',
          body: { replyTo: req.replyTo, op: 'write', offset: w.offset, data: io.data },
          onSettled: (ok) => finish(ok),
        },
        io.data.length,
      );
      return;
    }
    // Copy-up and zero fill first, then the guest's bytes: until both are done, nothing else
    // may touch those chunks, and the metadata that maps them may not be saved.
    const cb = this.model.pool(this.model.volume(req.volume).pool).chunkBytes;
    const held: number[] = [];
    if (changed) {
      this.dirty = true;
      this.allocInflight++;
      for (let c = Math.floor(io.offset / cb); c * cb < io.offset + io.data.length; c++) {
        if (!s.busy.has(c)) {
          s.busy.add(c);
          held.push(c);
        }
      }
    }
    const started = this.d.clock.now();
    const release = () => {
      for (const c of held) s.busy.delete(c);
      if (changed) {
        this.allocInflight--;
        if (this.allocInflight === 0) for (const f of this.saveWaiters.splice(0)) f();
      }
    };
    const prepParts = prep.map((o) => {
      if (o.op === 'copy') {
        s.io.copiedBytes += o.length;
        return this.piece(
          req.flow,
          o.from.disk,
          'disk.write',
          { op: 'copy', offset: o.from.offset, length: o.length, to: o.to },
          2 * o.length,
        );
      }
      const z = o as Extract<PhysOp, { op: 'zero' }>;
      s.io.zeroedBytes += z.length;
      // Charged as the device will time it (a flash drive's Write Zeroes is one small command).
      const kind = this.d.profile.disks.find((x) => x.id === z.disk)?.kind ?? 'hdd';
      return this.piece(
        req.flow,
        z.disk,
        'disk.write',
        { op: 'zero', offset: z.offset, length: z.length },
        zeroFillCostBytes(kind, z.length),
      );
    });
    void Promise.all(prepParts)
      .then(async (prepResults) => {
        const badPrep = prepResults.find((r) => !r.ok);
        if (badPrep) return [badPrep];
        const wr = await Promise.all(
          writes.map((w) =>
            this.piece(
              req.flow,
              w.disk,
              'disk.write',
              { op: 'write', offset: w.offset, data: io.data.subarray(w.dataOffset, w.dataOffset + w.length) },
              w.length,
            ),
          ),
        );
        return [...prepResults, ...wr];
      })
      .then((results) => {
        release();
        const bad = results.find((r) => !r.ok);
        if (bad && !bad.ok) {
          // The chunks stay allocated: a write that failed on the device leaves them as the
          // device left them, as a real disk's failed write leaves its sectors undefined.
          this.reply(req, errorReply(bad.code, bad.message));
          return finish(false);
        }
        this.reply(req, { ok: true, ...this.timing(results, started) });
        finish(true);
      });
  }

  private flush(s: VolumeState, req: IoRequest, finish: (ok: boolean) => void): void {
    s.io.flushes++;
    // Every layer of a volume is in its pool: a one-disk pool needs no walk over the chunks.
    const pool = this.model.pool(this.model.volume(req.volume).pool);
    const disks = pool.disks.length === 1 ? [pool.disks[0]!.id] : this.model.disksOf(req.volume);
    if (disks.length === 1 && !this.dirty && this.savesInFlight === 0 && req.replyTo) {
      const disk = disks[0]!;
      this.d.devices.diskScheduler(disk).submit(req.flow, this.d.devices.diskCost(disk, 0), {
        subject: this.d.devices.subjects.disk.get(disk)!,
        kind: 'disk.flush',
        body: { replyTo: req.replyTo, op: 'flush' },
        onSettled: (ok) => finish(ok),
      });
      return;
    }
    const started = this.d.clock.now();
    // The data first, then the metadata that points at it: saved metadata never maps a
    // chunk whose bytes a power cut could still take.
    void Promise.all(disks.map((disk) => this.piece(req.flow, disk, 'disk.flush', { op: 'flush' }, 0))).then(
      async (results) => {
        const bad = results.find((r) => !r.ok);
        if (bad && !bad.ok) {
          this.reply(req, errorReply(bad.code, bad.message));
          return finish(false);
        }
        try {
          // A save already under way covers earlier allocations too: it must be in place.
          if (this.dirty) await this.save();
          else if (this.savesInFlight > 0) await this.lastSave;
        } catch (e) {
          this.reply(req, errorReply(ErrorCode.IO, `metadata save failed: ${(e as Error).message}`));
          return finish(false);
        }
        this.reply(req, { ok: true, ...this.timing(results, started) });
        finish(true);
      },
    );
  }

  private timing(results: PieceResult[], started: number): { waitMs: number; serviceMs: number } {
    let waitMs = 0;
    for (const r of results) if (r.ok) waitMs = Math.max(waitMs, r.waitMs);
    return { waitMs, serviceMs: Math.max(0, this.d.clock.now() - started - waitMs) };
  }

  /** One device operation whose answer comes back to the hypervisor (not to the guest). */
  private piece(
    flow: string,
    disk: string,
    kind: string,
    body: Record<string, unknown>,
    bytes: number,
  ): Promise<PieceResult> {
    const id = this.nextPiece++;
    return new Promise<PieceResult>((resolve) => {
      let done = false;
      const settle = (r: PieceResult) => {
        if (done) return;
        done = true;
        this.pieces.delete(id);
        resolve(r);
      };
      this.pieces.set(id, settle);
      const replyTo = storageIoSubject(this.d.ns, this.d.host, id);
      this.d.devices.diskScheduler(disk).submit(
        flow,
        this.d.devices.diskCost(disk, bytes),
        {
          subject: this.d.devices.subjects.disk.get(disk)!,
          kind,
          body: { ...body, replyTo },
          // The answer normally comes first; a refusal may come only as a failed completion.
          onSettled: (ok) => {
            if (!ok) settle({ ok: false, code: ErrorCode.IO, message: `${kind} on ${disk} failed` });
          },
        },
        bytes,
      );
    });
  }

  private onPiece(m: Msg): void {
    const id = Number(m.subject.slice(m.subject.lastIndexOf('.') + 1));
    const settle = this.pieces.get(id);
    if (!settle) return;
    try {
      const r = decode(m.data, HypercallReplySchema, 'disk operation answer');
      settle(r.ok ? { ok: true, waitMs: r.waitMs, serviceMs: r.serviceMs, ...(r.data ? { data: r.data } : {}) } : r);
    } catch (e) {
      const ve = toVmsimError(e);
      settle({ ok: false, code: ve.code, message: ve.message });
    }
  }

  private reply(req: IoRequest, r: HypercallReply): void {
    if (req.respond) req.respond(r);
    else if (req.replyTo) this.d.nc.publish(req.replyTo, encode(r));
  }

  /** Writes that waited for space try again, oldest first; VMs none of whose writes still wait run again. */
  private retryStalled(why: string): void {
    if (this.stalled.length === 0) return;
    const before = new Map(this.stalledVms);
    const list = this.stalled;
    this.stalled = [];
    this.stalledVms.clear();
    for (const req of list) {
      if (this.stalledVms.has(req.flow)) {
        // An earlier write of the same VM is still stalled: keep the order.
        this.stalled.push(req);
        continue;
      }
      this.enqueue(req);
    }
    for (const [vm, pool] of before) {
      if (!this.stalledVms.has(vm)) this.d.events.unstalled(vm, `pool ${pool} has room again (${why})`);
    }
  }

  // ---------------------------------------------------------------- metadata

  /** Saves once no allocating write is in flight (the document must cover only completed plans). */
  save(): Promise<void> {
    if (this.allocInflight === 0) return this.writeAsync();
    return new Promise<void>((resolve, reject) => {
      this.saveWaiters.push(() => {
        // Serialized now, before any new plan: the document covers completed plans only.
        const written = this.dirty ? this.writeAsync() : Promise.resolve();
        this.wakeAll();
        written.then(resolve, reject);
      });
    });
  }

  private document(): string {
    return JSON.stringify({ version: 1, storage: serializeStorage(this.model) });
  }

  /**
   * The save of a flush or of the periodic timer: the document is taken now, written and
   * fsynced off the event loop (guests' I/O goes on meanwhile), then renamed into place
   * unless a newer document got there first.
   */
  private writeAsync(): Promise<void> {
    this.savesInFlight++;
    this.lastSave = this.writeDocument().finally(() => this.savesInFlight--);
    // Whoever waits for it hears a failure; nobody waiting must not make it unhandled.
    this.lastSave.catch(() => undefined);
    return this.lastSave;
  }

  private async writeDocument(): Promise<void> {
    const gen = ++this.saveGen;
    const body = this.document();
    this.dirty = false;
    const tmp = `${this.file}.tmp${gen}`;
    try {
      const fh = await fs.promises.open(tmp, 'w');
      try {
        await fh.writeFile(body);
        await fh.sync();
      } finally {
        await fh.close();
      }
      if (gen < this.placedGen) {
        await fs.promises.rm(tmp, { force: true });
        return;
      }
      this.d.crashPoint('save:before-rename');
      fs.renameSync(tmp, this.file);
      this.placedGen = gen;
      const dir = await fs.promises.open(path.dirname(this.file), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (e) {
      this.dirty = true;
      this.d.logger.error({ err: (e as Error).message }, 'storage: could not save the metadata');
      throw e;
    }
  }

  /** The save of a metadata operation (snapshot, delete, …): durable before anything else runs. */
  private saveNowSync(): void {
    const gen = ++this.saveGen;
    const body = this.document();
    const tmp = `${this.file}.tmp${gen}`;
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeFileSync(fd, body);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    this.d.crashPoint('save:before-rename');
    fs.renameSync(tmp, this.file);
    this.placedGen = gen;
    const dir = fs.openSync(path.dirname(this.file), 'r');
    try {
      fs.fsyncSync(dir);
    } finally {
      fs.closeSync(dir);
    }
    this.dirty = false;
  }

  /** Waits until no I/O of the volume is in flight, new I/O held back meanwhile; then runs `fn`. */
  private async quiesce<T>(volume: string, fn: () => T): Promise<T> {
    const s = this.stateOf(volume);
    if (s.frozen) throw new VmsimError(ErrorCode.BAD_STATE, `volume ${volume} is busy with another snapshot operation`);
    s.frozen = true;
    try {
      if (s.inflight > 0) await new Promise<void>((r) => s.drained.push(r));
      if (this.allocInflight > 0) await this.save();
      return fn();
    } finally {
      s.frozen = false;
      this.wake(volume);
    }
  }

  // ---------------------------------------------------------------- management

  async poolList(): Promise<PoolInfo[]> {
    const backing = await this.d.backingBytes();
    return [...this.model.pools.keys()].map((id) => this.poolInfo(id, backing));
  }

  async poolCreate(req: {
    id: string;
    disks: string[];
    diskGiB?: number | undefined;
    chunkMiB?: number | undefined;
  }): Promise<PoolInfo> {
    if (this.model.pools.has(req.id)) throw new VmsimError(ErrorCode.CONFIG, `pool ${req.id} exists`);
    const specs = req.disks.map((d) => this.takeDisk(d, req.diskGiB, req.id));
    this.model.createPool(req.id, specs, (req.chunkMiB ?? 1) * MiB);
    this.saveNowSync();
    this.d.logger.info({ pool: req.id, disks: specs }, `storage: pool ${req.id} created`);
    return this.poolInfo(req.id, await this.d.backingBytes());
  }

  async poolAddDisk(req: { id: string; disk: string; sizeGiB?: number | undefined }): Promise<PoolInfo> {
    this.model.pool(req.id);
    const spec = this.takeDisk(req.disk, req.sizeGiB, req.id);
    this.model.addDisk(req.id, spec);
    this.saveNowSync();
    this.d.logger.info({ pool: req.id, disk: spec }, `storage: disk ${req.disk} added to pool ${req.id}`);
    this.retryStalled(`disk ${req.disk} added to pool ${req.id}`);
    return this.poolInfo(req.id, await this.d.backingBytes());
  }

  /** A physical disk for a pool: free, or taken out of the default pool if nothing is on it there. */
  private takeDisk(disk: string, sizeGiB: number | undefined, forPool: string): { id: string; capacityBytes: number } {
    const usable = this.usable[disk];
    if (usable === undefined) {
      const known = this.d.profile.disks.map((x) => x.id).join(', ');
      throw new VmsimError(ErrorCode.NO_SUCH_DEVICE, `no physical disk ${disk} on this host (it has ${known})`);
    }
    const owner = this.model.poolOfDisk(disk);
    if (owner) {
      if (owner.id !== DEFAULT_POOL || owner.id === forPool) {
        throw new VmsimError(ErrorCode.BAD_STATE, `disk ${disk} is already in pool ${owner.id}`);
      }
      this.model.removeDisk(owner.id, disk);
    }
    const want = sizeGiB === undefined ? usable : Math.floor(sizeGiB * GiB);
    if (want > usable) {
      throw new VmsimError(
        ErrorCode.CONFIG,
        `disk ${disk} has ${(usable / GiB).toFixed(2)} GiB for pools, not ${(want / GiB).toFixed(2)}`,
      );
    }
    return { id: disk, capacityBytes: want };
  }

  diskList(pool?: string): VolumeInfo[] {
    if (pool !== undefined) this.model.pool(pool);
    return [...this.model.volumes.values()]
      .filter((v) => pool === undefined || v.pool === pool)
      .map((v) => this.volumeInfo(v.id));
  }

  diskCreate(req: { id: string; pool: string; sizeGiB: number; provisioning: Provisioning }): VolumeInfo {
    this.model.createVolume({
      id: req.id,
      pool: req.pool,
      sizeBytes: Math.round(req.sizeGiB * GiB),
      provisioning: req.provisioning,
    });
    this.stateOf(req.id);
    this.saveNowSync();
    this.d.logger.info(
      { volume: req.id, pool: req.pool, provisioning: req.provisioning },
      `storage: volume ${req.id} created`,
    );
    return this.volumeInfo(req.id);
  }

  async diskSnapshot(id: string, name: string): Promise<VolumeInfo> {
    await this.quiesce(id, () => {
      this.model.snapshot(id, name);
      this.d.crashPoint('snapshot:before-save');
      this.saveNowSync();
      this.d.crashPoint('snapshot:after-save');
    });
    this.d.logger.info({ volume: id, snapshot: name }, `storage: snapshot ${name} of ${id} taken`);
    return this.volumeInfo(id);
  }

  diskRevert(id: string, name: string): VolumeInfo & { freedBytes: number; droppedSnapshots: string[] } {
    this.refuseInUse(id, 'revert');
    const r = this.model.revert(id, name);
    this.saveNowSync();
    this.d.logger.info({ volume: id, snapshot: name, ...r }, `storage: ${id} reverted to snapshot ${name}`);
    if (r.freedBytes > 0) this.retryStalled(`volume ${id} reverted`);
    return { ...this.volumeInfo(id), ...r };
  }

  async diskDeleteSnapshot(id: string, name: string): Promise<VolumeInfo & { freedBytes: number }> {
    const r = await this.quiesce(id, () => {
      const out = this.model.deleteSnapshot(id, name);
      this.d.crashPoint('delete-snapshot:before-save');
      this.saveNowSync();
      this.d.crashPoint('delete-snapshot:after-save');
      return out;
    });
    this.d.logger.info(
      { volume: id, snapshot: name, freedBytes: r.freedBytes },
      `storage: snapshot ${name} of ${id} deleted`,
    );
    if (r.freedBytes > 0) this.retryStalled(`snapshot ${name} of ${id} deleted`);
    return { ...this.volumeInfo(id), freedBytes: r.freedBytes };
  }

  diskTemplate(id: string): VolumeInfo {
    const vm = this.attached.get(id);
    if (vm) throw new VmsimError(ErrorCode.BAD_STATE, `volume ${id} is the disk of VM ${vm}: undefine the VM first`);
    this.model.markTemplate(id);
    this.saveNowSync();
    return this.volumeInfo(id);
  }

  diskClone(template: string, id: string): VolumeInfo & { cloneMs: number } {
    const t0 = performance.now();
    this.model.clone(template, id);
    this.stateOf(id);
    this.saveNowSync();
    const cloneMs = performance.now() - t0;
    this.d.logger.info({ template, volume: id, cloneMs }, `storage: ${id} cloned from ${template}`);
    return { ...this.volumeInfo(id), cloneMs };
  }

  diskDelete(id: string): { id: string; freedBytes: number } {
    const vm = this.attached.get(id);
    if (vm) throw new VmsimError(ErrorCode.BAD_STATE, `volume ${id} is the disk of VM ${vm}: undefine the VM first`);
    const s = this.state.get(id);
    if (s && (s.inflight > 0 || s.waiting.length > 0)) {
      throw new VmsimError(ErrorCode.BAD_STATE, `volume ${id} has I/O in flight`);
    }
    const { freedBytes } = this.model.deleteVolume(id);
    s?.gate?.stop();
    this.state.delete(id);
    this.saveNowSync();
    this.d.logger.info({ volume: id, freedBytes }, `storage: volume ${id} deleted`);
    if (freedBytes > 0) this.retryStalled(`volume ${id} deleted`);
    return { id, freedBytes };
  }

  private refuseInUse(id: string, what: string): void {
    this.model.volume(id);
    const vm = this.attached.get(id);
    if (vm && this.d.isActive(vm)) {
      throw new VmsimError(ErrorCode.BAD_STATE, `cannot ${what} ${id}: VM ${vm} is running on it; shut it down first`);
    }
  }

  // ---------------------------------------------------------------- figures

  volumeInfo(id: string): VolumeInfo {
    const f = this.model.volumeFigures(id);
    return {
      id,
      pool: f.pool,
      provisioning: f.provisioning,
      virtualBytes: f.virtualBytes,
      allocatedBytes: f.allocatedBytes,
      sharedBytes: f.sharedBytes,
      template: f.template,
      origin: f.origin,
      snapshots: this.model.listSnapshots(id).map((s) => ({ name: s.name, bytes: s.bytes })),
      attachedTo: this.attached.get(id) ?? null,
      io: { ...this.stateOf(id).io },
    };
  }

  extentsOf(id: string): Extent[] {
    return this.model.extentsOf(id);
  }

  poolInfo(id: string, backing: Map<string, number> | null): PoolInfo {
    const f = this.model.poolFigures(id);
    const p = this.model.pool(id);
    let volumes = 0;
    for (const v of this.model.volumes.values()) if (v.pool === id) volumes++;
    const stalled = [...this.stalledVms].filter(([, pool]) => pool === id).map(([vm]) => vm);
    return {
      id,
      chunkBytes: f.chunkBytes,
      disks: p.disks.map((d) => ({
        id: d.id,
        capacityBytes: d.chunks * p.chunkBytes,
        allocatedBytes: d.usedCount * p.chunkBytes,
      })),
      capacityBytes: f.capacityBytes,
      allocatedBytes: f.allocatedBytes,
      freeBytes: f.freeBytes,
      virtualBytes: f.virtualBytes,
      overcommit: Number.isFinite(f.overcommit) ? f.overcommit : 0,
      volumes,
      stalledVms: stalled,
      backingBytes: backing ? p.disks.reduce((sum, d) => sum + (backing.get(d.id) ?? 0), 0) : null,
    };
  }

  /** Problems the consistency checker finds now (none expected). */
  check(): string[] {
    return checkStorage(this.model);
  }

  /** Pending state, for the fuzz tests' leak checks. */
  get pending(): { pieces: number; stalled: number; waiting: number; inflight: number } {
    let waiting = 0;
    let inflight = 0;
    for (const s of this.state.values()) {
      waiting += s.waiting.length;
      inflight += s.inflight;
    }
    return { pieces: this.pieces.size, stalled: this.stalled.length, waiting, inflight };
  }

  private stateOf(id: string): VolumeState {
    let s = this.state.get(id);
    if (!s) {
      s = { io: emptyDiskIo(), inflight: 0, frozen: false, waiting: [], busy: new Set(), gate: undefined, drained: [] };
      this.state.set(id, s);
    }
    return s;
  }
}
