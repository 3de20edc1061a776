import type {
  Clock,
  Logger,
  Msg,
  NatsConnection,
  Namespace,
  Subscription,
  HwDiskOp,
  HwDoneItem,
  NicDirection,
} from '@vmsim/shared';
import {
  ErrorCode,
  HwCpuOp,
  HwDiskOp as HwDiskOpSchema,
  HwNicOp,
  MemAllocRequest,
  ReplySubject,
  MemFreeRequest,
  VmsimError,
  decode,
  decodeRaw,
  encode,
  errorReply,
  hardwareSubjects,
  serve,
  toVmsimError,
  LagMonitor,
  EmptyRequest,
  zeroFillCostBytes,
} from '@vmsim/shared';
import type { BlockStore } from './devices/block-store.ts';
import type { DiskOpKind } from './devices/disk-timing.ts';
import type { Hardware } from './hardware.ts';

/** Refuses bytes `offset..offset+length` outside `store`, naming the field and the disk. */
function inRange(store: BlockStore, disk: string, offset: number, length: number, field: string): void {
  if (offset + length > store.capacityBytes) {
    throw new VmsimError(
      ErrorCode.OUT_OF_RANGE,
      `${field}: bytes ${offset}..${offset + length} are outside disk "${disk}" (capacity ${store.capacityBytes})`,
    );
  }
}

export interface HostAgentDeps {
  nc: NatsConnection;
  ns: Namespace;
  host: string;
  hardware: Hardware;
  stores: Map<string, BlockStore>;
  clock: Clock;
  logger: Logger;
  bootId: string;
  timeScale: number;
}

/**
 * The NATS face of the hardware: it takes dispatched operations, runs them on the device
 * models, answers the requester directly (`replyTo`) and tells the hypervisor on `done`.
 */
export class HostAgent {
  private readonly d: HostAgentDeps;
  private readonly subs: Subscription[] = [];
  private readonly lag = new LagMonitor();
  private readonly doneSubject: string;
  /** Completions of this event-loop turn, sent together on the next. */
  private pendingDone: HwDoneItem[] = [];
  rejected = 0;

  private constructor(deps: HostAgentDeps) {
    this.d = deps;
    this.doneSubject = hardwareSubjects.done(deps.ns, deps.host);
  }

  static create(deps: HostAgentDeps): HostAgent {
    return new HostAgent(deps);
  }

  async start(): Promise<void> {
    const { nc, ns, host, logger } = this.d;
    const on = (subject: string, fn: (m: Msg) => void) =>
      nc.subscribe(subject, {
        callback: (err, m) => {
          if (err) logger.error({ err, subject }, 'subscription error');
          else fn(m);
        },
      });
    this.subs.push(on(hardwareSubjects.cpu(ns, host), (m) => this.onCpu(m)));
    this.subs.push(on(hardwareSubjects.anyDisk(ns, host), (m) => this.onDisk(m)));
    this.subs.push(on(hardwareSubjects.anyNic(ns, host), (m) => this.onNic(m)));
    this.subs.push(serve(nc, hardwareSubjects.inventory(ns, host), EmptyRequest, () => this.inventory(), logger));
    this.subs.push(serve(nc, hardwareSubjects.utilization(ns, host), EmptyRequest, () => this.utilization(), logger));
    this.subs.push(serve(nc, hardwareSubjects.stats(ns, host), EmptyRequest, () => this.stats(), logger));
    this.subs.push(
      serve(
        nc,
        hardwareSubjects.memAlloc(ns, host),
        MemAllocRequest,
        (r) => {
          this.d.hardware.ram.allocate(r.owner, r.mib);
          logger.info(
            { owner: r.owner, mib: r.mib, allocatedMiB: this.d.hardware.ram.allocatedMiB },
            'memory allocated',
          );
          return this.memReply();
        },
        logger,
      ),
    );
    this.subs.push(
      serve(
        nc,
        hardwareSubjects.memFree(ns, host),
        MemFreeRequest,
        (r) => {
          this.d.hardware.ram.free(r.owner);
          logger.info({ owner: r.owner, allocatedMiB: this.d.hardware.ram.allocatedMiB }, 'memory freed');
          return this.memReply();
        },
        logger,
      ),
    );
    await nc.flush();
    this.hello('boot');
  }

  /** Tells the hypervisor who we are: after a boot, or after the bus came back. */
  hello(reason: 'boot' | 'reconnect'): void {
    const { nc, ns, host } = this.d;
    nc.publish(hardwareSubjects.hello(ns, host), encode({ host, bootId: this.d.bootId, reason }));
  }

  async stop(): Promise<void> {
    for (const s of this.subs.splice(0)) s.unsubscribe();
    this.lag.stop();
  }

  private memReply() {
    const ram = this.d.hardware.ram;
    return { totalMiB: ram.totalMiB, allocatedMiB: ram.allocatedMiB };
  }

  inventory() {
    return { host: this.d.host, profile: this.d.hardware.profile, timeScale: this.d.timeScale, bootId: this.d.bootId };
  }

  utilization() {
    const hw = this.d.hardware;
    return {
      host: this.d.host,
      simNowMs: this.d.clock.now(),
      devices: hw.utilization(),
      memory: { totalMiB: hw.ram.totalMiB, allocatedMiB: hw.ram.allocatedMiB },
      disks: [...this.d.stores].map(([id, s]) => ({
        id,
        dirtyBytes: s.dirtyBytes,
        allocatedBytes: s.allocatedBytes(),
      })),
      lagMs: this.lag.sample().p99Ms,
    };
  }

  /** What is in flight now, from the device models themselves (no side effect, unlike utilization). */
  stats() {
    const inFlight: Record<string, number> = {};
    for (const d of this.d.hardware.inFlight()) inFlight[d.device] = d.inFlight;
    let flushing = 0;
    for (const s of this.d.stores.values()) flushing += s.flushesInProgress;
    return {
      host: this.d.host,
      bootId: this.d.bootId,
      inFlight,
      pendingDone: this.pendingDone.length,
      flushing,
      rejected: this.rejected,
      disks: [...this.d.stores].map(([id, st]) => ({ id, backingBytes: st.allocatedBytes() })),
    };
  }

  /**
   * Publishes where an operation said its answer goes. A subject the client library refuses
   * (or a closed connection) costs that answer only, never the process: this runs in device
   * timers, where a throw would be uncaught.
   */
  private send(subject: string, data: Uint8Array): void {
    try {
      this.d.nc.publish(subject, data);
    } catch (e) {
      this.d.logger.warn({ err: (e as Error).message, subject: subject.slice(0, 128) }, 'could not publish');
    }
  }

  /** Refuses an operation: an error to whoever waits for it, and the slot back to the hypervisor. */
  private refuse(msg: Msg, err: unknown, device: string): void {
    const e = toVmsimError(err);
    this.rejected++;
    let raw: { t?: unknown; replyTo?: unknown } | undefined;
    try {
      raw = decodeRaw(msg.data) as typeof raw;
    } catch {
      raw = undefined;
    }
    this.d.logger.warn({ code: e.code, err: e.message, subject: msg.subject }, 'operation refused');
    const reply = encode(errorReply(e.code, e.message));
    if (raw && ReplySubject.safeParse(raw.replyTo).success) this.send(raw.replyTo as string, reply);
    // The hypervisor never sets a NATS reply on these; anyone else who does gets the error too.
    if (msg.reply && msg.reply !== raw?.replyTo) this.send(msg.reply, reply);
    // Only a well-formed ticket goes on `done`: a bad item must not spoil the batch it joins.
    if (raw && Number.isSafeInteger(raw.t) && (raw.t as number) >= 0) {
      this.done({ t: raw.t as number, device: device.slice(0, 64), ok: false, serviceMs: 0 });
    }
  }

  /** Tells the hypervisor a device slot is free; the reply to the requester has gone already. */
  private diskKind(diskId: string): 'ssd' | 'nvme' | 'hdd' {
    return this.d.hardware.profile.disks.find((x) => x.id === diskId)?.kind ?? 'hdd';
  }

  private done(item: HwDoneItem): void {
    this.pendingDone.push(item);
    if (this.pendingDone.length === 1) {
      setImmediate(() => {
        const done = this.pendingDone;
        this.pendingDone = [];
        this.send(this.doneSubject, encode({ done }));
      });
    }
  }

  private finish(t: number, device: string, replyTo: string, reply: unknown, serviceMs: number): void {
    this.send(replyTo, encode(reply));
    this.done({ t, device, ok: true, serviceMs });
  }

  private onCpu(msg: Msg): void {
    try {
      const op = decode(msg.data, HwCpuOp, 'cpu operation');
      this.d.hardware.runCpu(
        op.cycles,
        (serviceMs) => this.finish(op.t, 'cpu', op.replyTo, { ok: true, waitMs: op.waitMs, serviceMs }, serviceMs),
        op.vm,
        op.switchCycles,
      );
    } catch (e) {
      this.refuse(msg, e, 'cpu');
    }
  }

  private onDisk(msg: Msg): void {
    const diskId = msg.subject.slice(msg.subject.lastIndexOf('.') + 1);
    const device = `disk.${diskId}`;
    try {
      const op: HwDiskOp = decode(msg.data, HwDiskOpSchema, 'disk operation');
      const store = this.d.stores.get(diskId);
      if (!store) throw new VmsimError(ErrorCode.NO_SUCH_DEVICE, `no disk "${diskId}" on this host`);
      // Refused before any byte moves, so a busy disk leaves the store as it was.
      const timing = this.d.hardware.diskTiming(diskId);
      if (timing.inFlight >= timing.capacity) {
        throw new VmsimError(ErrorCode.DEVICE_BUSY, `disk ${diskId} queue depth ${timing.capacity} is full`);
      }
      // Bytes move at admission, in admission order; the reply waits for the modeled time.
      let data: Buffer | undefined;
      let durable: Promise<unknown> = Promise.resolve();
      let bytes = 0;
      let kind: DiskOpKind;
      switch (op.op) {
        case 'read':
          if (op.zeros) {
            // Allocated but never written: the backing store holds nothing worth reading.
            inRange(store, diskId, op.offset, op.length, 'offset');
            data = Buffer.alloc(op.length);
          } else data = store.read(op.offset, op.length);
          bytes = op.length;
          kind = 'read';
          break;
        case 'write':
          store.write(op.offset, op.data);
          bytes = op.data.length;
          kind = 'write';
          break;
        case 'zero':
          store.zero(op.offset, op.length);
          bytes = zeroFillCostBytes(this.diskKind(diskId), op.length);
          kind = 'write';
          break;
        case 'copy': {
          const target = this.d.stores.get(op.to.disk);
          if (!target) {
            throw new VmsimError(ErrorCode.NO_SUCH_DEVICE, `to.disk: no disk "${op.to.disk}" on this host`);
          }
          inRange(store, diskId, op.offset, op.length, 'offset');
          inRange(target, op.to.disk, op.to.offset, op.length, 'to.offset');
          // The source as it reads now (cache included), handed over whole: no per-block copies.
          target.write(op.to.offset, store.read(op.offset, op.length), true);
          // A read and a write on this disk, as one operation.
          bytes = 2 * op.length;
          kind = 'write';
          break;
        }
        case 'swap':
          // Timing only: the page bytes live in the hypervisor's model, not in the file.
          bytes = op.length;
          kind = op.dir === 'in' ? 'read' : 'write';
          break;
        case 'flush':
          durable = store.flush();
          kind = 'flush';
          break;
      }
      this.d.hardware.runDisk(diskId, kind, bytes, (serviceMs) => {
        durable.then(
          () =>
            this.finish(
              op.t,
              device,
              op.replyTo,
              { ok: true, waitMs: op.waitMs, serviceMs, ...(data ? { data } : {}) },
              serviceMs,
            ),
          (err: unknown) =>
            this.refuse(msg, new VmsimError(ErrorCode.IO, `flush failed: ${(err as Error).message}`), device),
        );
      });
    } catch (e) {
      this.refuse(msg, e, device);
    }
  }

  private onNic(msg: Msg): void {
    const parts = msg.subject.split('.');
    const dir = parts[parts.length - 1] as NicDirection;
    const nicId = parts[parts.length - 2] ?? '';
    const device = `nic.${nicId}.${dir}`;
    try {
      if (dir !== 'rx' && dir !== 'tx') throw new VmsimError(ErrorCode.NO_SUCH_DEVICE, `no NIC direction "${dir}"`);
      const op = decode(msg.data, HwNicOp, 'NIC operation');
      this.d.hardware.runNic(nicId, dir, op.bytes, (serviceMs) => {
        // The frame arrives where it was sent: a guest's vNIC or a client's reply subject.
        this.send(op.replyTo, op.frame);
        this.done({ t: op.t, device, ok: true, serviceMs });
      });
    } catch (e) {
      this.refuse(msg, e, device);
    }
  }
}
