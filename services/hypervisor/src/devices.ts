import type {
  Clock,
  HardwareProfile,
  Logger,
  NatsConnection,
  Namespace,
  NicDirection,
  VmDefinition,
} from '@vmsim/shared';
import { ErrorCode, VmsimError, encode, errorReply, hardwareSubjects } from '@vmsim/shared';
import { ResourceScheduler, type Job, type Policy } from './scheduler.ts';

/** One operation waiting for a device: where it goes and what it carries. */
export interface DeviceRequest {
  subject: string;
  /** The operation's fields; the ticket and queue wait are added at dispatch. */
  body: Record<string, unknown>;
  /** Which hypercall or traffic kind this is, for per-VM figures. */
  kind: string;
  /**
   * A NIC frame built at dispatch, when the queue wait is known: a guest's own network
   * hypercall is answered by the frame itself, and that answer carries the wait.
   */
  frameAt?: (waitMs: number) => Uint8Array;
  /**
   * Who to tell when the device loses the operation (it restarted, the bus went away), for
   * work that is not a guest's hypercall (those are answered at their replyTo): a client
   * frame's connection, say.
   */
  onLost?: (why: string) => void;
  /** Told once when the operation ends: done on the device, failed, or lost. */
  onSettled?: (ok: boolean, waitMs: number, serviceMs: number) => void;
}

interface InFlight {
  sched: ResourceScheduler<DeviceRequest>;
  vm: string;
  kind: string;
  /** What the scheduler charged for it, returned at completion. */
  cost: number;
  dispatchedWallMs: number;
  /** Tells the waiting guest or client, should the device never answer. */
  onLost: ((why: string) => void) | undefined;
  waitMs: number;
  onSettled: DeviceRequest['onSettled'];
}

/** Device work that answers a guest's hypercall (the rest is the VMM's own: host work, swap, client frames). */
const HYPERCALL_KINDS = new Set(['cpu', 'disk.read', 'disk.write', 'disk.flush', 'net.send', 'net.recv']);

export interface DeviceEvents {
  dispatched(vm: string, kind: string, waitMs: number): void;
  failed(vm: string, kind: string): void;
}

/**
 * The hypervisor's side of the host's devices: one scheduler per device, dispatch with
 * tickets, and completions (`done`) that free the device for the next request.
 */
export class HostDevices {
  readonly cpu: ResourceScheduler<DeviceRequest>;
  readonly disks = new Map<string, ResourceScheduler<DeviceRequest>>();
  readonly nic: Record<NicDirection, ResourceScheduler<DeviceRequest>>;
  readonly nicId: string;
  readonly subjects: { cpu: string; disk: Map<string, string>; nic: Record<NicDirection, string> };
  private readonly profile: HardwareProfile;
  private readonly inFlight = new Map<number, InFlight>();
  private nextTicket = 1;
  private readonly nc: NatsConnection;
  private readonly logger: Logger;
  private readonly events: DeviceEvents;

  constructor(opts: {
    nc: NatsConnection;
    ns: Namespace;
    host: string;
    clock: Clock;
    policy: Policy;
    profile: HardwareProfile;
    logger: Logger;
    events: DeviceEvents;
  }) {
    const { nc, ns, host, clock, policy, profile } = opts;
    this.nc = nc;
    this.logger = opts.logger;
    this.events = opts.events;
    this.profile = profile;
    const reg = (name: string, capacity: number, fairDepthMs?: number): ResourceScheduler<DeviceRequest> => {
      const sched: ResourceScheduler<DeviceRequest> = new ResourceScheduler<DeviceRequest>({
        name,
        policy,
        capacity,
        fairDepthMs,
        clock,
        dispatch: (job, waitMs) => this.dispatch(sched, job, waitMs),
      });
      return sched;
    };
    this.cpu = reg('cpu', profile.cpu.sockets * profile.cpu.coresPerSocket);
    // Serial devices keep a quarter of a ms of work outstanding under `fair` (twice the access
    // latency when that is longer, so a drive's pipeline stays full): enough for full speed
    // on small requests, while a neighbour's backlog waits in the fair queue, not the device's.
    const depth = (latencyMs: number) => Math.max(0.25, 2 * latencyMs);
    for (const d of profile.disks) this.disks.set(d.id, reg(`disk.${d.id}`, d.queueDepth, depth(d.latencyMs)));
    const nic = profile.nics[0]!;
    this.nicId = nic.id;
    this.nic = {
      rx: reg(`nic.${nic.id}.rx`, nic.ring, depth(nic.latencyMs)),
      tx: reg(`nic.${nic.id}.tx`, nic.ring, depth(nic.latencyMs)),
    };
    this.subjects = {
      cpu: hardwareSubjects.cpu(ns, host),
      disk: new Map(profile.disks.map((d) => [d.id, hardwareSubjects.disk(ns, host, d.id)])),
      nic: { rx: hardwareSubjects.nic(ns, host, nic.id, 'rx'), tx: hardwareSubjects.nic(ns, host, nic.id, 'tx') },
    };
  }

  all(): ResourceScheduler<DeviceRequest>[] {
    return [this.cpu, ...this.disks.values(), this.nic.rx, this.nic.tx];
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Requests waiting in the schedulers' queues, every device. */
  get queuedCount(): number {
    let n = 0;
    for (const s of this.all()) n += s.queued;
    return n;
  }

  /** Simulated ms one core needs for `cycles`. */
  cpuCost(cycles: number): number {
    return cycles / (this.profile.cpu.mhz * 1000);
  }

  /** Estimated media time of a disk transfer (what fair queueing charges). */
  diskCost(diskId: string, bytes: number): number {
    const d = this.profile.disks.find((x) => x.id === diskId);
    if (!d) throw new VmsimError(ErrorCode.NO_SUCH_DEVICE, `no disk ${diskId}`);
    return Math.max(1000 / d.iops, bytes / ((d.bandwidthMBps * 1e6) / 1000));
  }

  nicCost(bytes: number): number {
    const n = this.profile.nics[0]!;
    return bytes / ((n.gbps * 1e9) / 8 / 1000) + n.latencyMs;
  }

  diskScheduler(diskId: string): ResourceScheduler<DeviceRequest> {
    const s = this.disks.get(diskId);
    if (!s) throw new VmsimError(ErrorCode.NO_SUCH_DEVICE, `no disk ${diskId}`);
    return s;
  }

  /**
   * Applies a VM's shares, vCPU count, CPU reservation and rate limits to every device's
   * scheduler. Byte and operation buckets hold 100 ms of their rate, so short bursts pass and
   * the average is held; the CPU cap and reservation hold 10 ms (at least 1 ms).
   */
  configureVm(vm: string, def: VmDefinition): void {
    const limit = (perS: number | null | undefined) => (perS ? { ratePerMs: perS / 1000, burst: perS / 10 } : null);
    this.cpu.configureVm(vm, {
      weight: def.shares,
      limit: def.vcpus,
      cap: def.cpuCapPct ? { ratePerMs: def.cpuCapPct / 100, burst: Math.max(1, def.cpuCapPct / 10) } : null,
      reservation: def.cpuReservationPct
        ? { ratePerMs: def.cpuReservationPct / 100, burst: Math.max(1, def.cpuReservationPct / 10) }
        : null,
    });
    // Disk rate limits hold per virtual disk, whatever physical disks its chunks are on:
    // the volume manager applies them before its I/O reaches these queues.
    for (const d of this.disks.values()) d.configureVm(vm, { weight: def.shares, bytes: null, ops: null });
    for (const n of [this.nic.rx, this.nic.tx]) {
      n.configureVm(vm, { weight: def.shares, bytes: limit(def.netBytesPerS), ops: limit(def.netOpsPerS) });
    }
  }

  setPolicy(policy: Policy): void {
    for (const s of this.all()) s.policy = policy;
  }

  /** Forgets every queued request of a VM; in-flight ones complete on the device. */
  dropVm(vm: string): number {
    let n = 0;
    for (const s of this.all()) n += s.drop(vm).length;
    return n;
  }

  private dispatch(sched: ResourceScheduler<DeviceRequest>, job: Job<DeviceRequest>, waitMs: number): void {
    const t = this.nextTicket++;
    const { body, frameAt } = job.payload;
    const replyTo =
      HYPERCALL_KINDS.has(job.payload.kind) && typeof body['replyTo'] === 'string' ? body['replyTo'] : undefined;
    const kind = job.payload.kind;
    const onLost =
      job.payload.onLost ??
      (replyTo
        ? (why: string) =>
            // The guest would otherwise wait out its own hypercall timeout (tens of seconds)
            // for an answer that cannot come: tell it now, as a device that went away would.
            this.nc.publish(
              replyTo,
              encode(errorReply(ErrorCode.HOST_UNAVAILABLE, `${kind} lost on ${sched.name}: ${why}`)),
            )
        : undefined);
    this.inFlight.set(t, {
      sched,
      vm: job.vm,
      kind,
      cost: job.cost,
      dispatchedWallMs: Date.now(),
      onLost,
      waitMs,
      onSettled: job.payload.onSettled,
    });
    this.events.dispatched(job.vm, job.payload.kind, waitMs);
    this.nc.publish(
      job.payload.subject,
      encode({ ...body, ...(frameAt ? { frame: frameAt(waitMs) } : {}), t, vm: job.vm, waitMs }),
    );
  }

  /**
   * A device says it finished ticket `t`. A completion naming another device than the one
   * the ticket went to is not this ticket's (a stray or forged message): it frees nothing.
   */
  onDone(t: number, ok: boolean, device?: string, serviceMs = 0): boolean {
    const f = this.inFlight.get(t);
    if (!f) return false;
    if (device !== undefined && device !== f.sched.name) return false;
    this.inFlight.delete(t);
    if (!ok) this.events.failed(f.vm, f.kind);
    f.sched.complete(f.vm, f.cost);
    f.onSettled?.(ok, f.waitMs, serviceMs);
    return true;
  }

  /**
   * Frees slots whose completion never came (the host-agent restarted or lost a message),
   * so a lost message cannot shrink a device for ever. Returns how many were released.
   */
  releaseStale(olderThanWallMs: number, why = 'its completion never came'): number {
    const cutoff = Date.now() - olderThanWallMs;
    let n = 0;
    for (const [t, f] of this.inFlight) {
      if (f.dispatchedWallMs <= cutoff) {
        this.inFlight.delete(t);
        f.sched.complete(f.vm, f.cost);
        f.onLost?.(why);
        f.onSettled?.(false, f.waitMs, 0);
        n++;
      }
    }
    if (n > 0) this.logger.warn({ released: n }, 'released device slots whose completion never came');
    return n;
  }

  releaseAll(why: string): number {
    return this.releaseStale(-1, why);
  }
}
