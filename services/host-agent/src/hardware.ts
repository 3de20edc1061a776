import type { Clock, HardwareProfile, DeviceUtil, NicDirection } from '@vmsim/shared';
import { ErrorCode, VmsimError } from '@vmsim/shared';
import { CpuPackage } from './devices/cpu.ts';
import { DiskTiming, type DiskOpKind } from './devices/disk-timing.ts';
import { NicLink } from './devices/nic.ts';
import { Ram } from './devices/ram.ts';

/** What completes an operation: called at its modeled completion time. */
export type Completion = (serviceMs: number) => void;

interface Disk {
  id: string;
  timing: DiskTiming;
}

/**
 * The simulated hardware of one host on an injected clock: it times operations and says
 * when they complete. It holds no queue beyond each device's own concurrency, and knows
 * nothing of VMs or policy (that is the hypervisor's).
 */
export class Hardware {
  readonly profile: HardwareProfile;
  readonly cpu: CpuPackage;
  readonly ram: Ram;
  private readonly disks = new Map<string, Disk>();
  private readonly nics = new Map<string, Record<NicDirection, NicLink>>();
  private readonly clock: Clock;

  constructor(profile: HardwareProfile, clock: Clock) {
    this.profile = profile;
    this.clock = clock;
    const now = clock.now();
    this.cpu = new CpuPackage(profile.cpu, now);
    this.ram = new Ram(profile.memoryGiB * 1024);
    for (const d of profile.disks) this.disks.set(d.id, { id: d.id, timing: new DiskTiming(d, now) });
    for (const n of profile.nics) this.nics.set(n.id, { rx: new NicLink(n, now), tx: new NicLink(n, now) });
  }

  /**
   * Runs `owner`'s burst on a free core, `switchCycles` longer when that core last ran
   * another owner; throws DEVICE_BUSY when none is free.
   */
  runCpu(cycles: number, done: Completion, owner = '', switchCycles = 0): void {
    const now = this.clock.now();
    const slot = this.cpu.start(cycles, now, owner, switchCycles);
    if (!slot) throw new VmsimError(ErrorCode.DEVICE_BUSY, `all ${this.cpu.capacity} cores are busy`);
    this.complete(slot.doneAt, slot.serviceMs, () => this.cpu.finish(slot.core, this.clock.now()), done);
  }

  diskTiming(diskId: string): DiskTiming {
    const d = this.disks.get(diskId);
    if (!d) throw new VmsimError(ErrorCode.NO_SUCH_DEVICE, `no disk "${diskId}" on this host`);
    return d.timing;
  }

  runDisk(diskId: string, kind: DiskOpKind, bytes: number, done: Completion): void {
    const timing = this.diskTiming(diskId);
    const slot = timing.start(kind, bytes, this.clock.now());
    if (!slot) throw new VmsimError(ErrorCode.DEVICE_BUSY, `disk ${diskId} queue depth ${timing.capacity} is full`);
    this.complete(slot.doneAt, slot.serviceMs, () => timing.finish(), done);
  }

  nic(nicId: string, dir: NicDirection): NicLink {
    const n = this.nics.get(nicId);
    if (!n) throw new VmsimError(ErrorCode.NO_SUCH_DEVICE, `no NIC "${nicId}" on this host`);
    return n[dir];
  }

  runNic(nicId: string, dir: NicDirection, bytes: number, done: Completion): void {
    const link = this.nic(nicId, dir);
    const slot = link.start(bytes, this.clock.now());
    if (!slot) throw new VmsimError(ErrorCode.DEVICE_BUSY, `NIC ${nicId} ${dir} ring of ${link.capacity} is full`);
    this.complete(slot.doneAt, slot.serviceMs, () => link.finish(), done);
  }

  private complete(doneAt: number, serviceMs: number, release: () => void, done: Completion): void {
    if (serviceMs <= 0) {
      release();
      done(0);
      return;
    }
    this.clock.at(doneAt, () => {
      release();
      done(serviceMs);
    });
  }

  /** Operations on each device now (utilization() also has them, but restarts its windows). */
  inFlight(): { device: string; inFlight: number }[] {
    const out = [{ device: 'cpu', inFlight: this.cpu.inFlight }];
    for (const d of this.disks.values()) out.push({ device: `disk.${d.id}`, inFlight: d.timing.inFlight });
    for (const [id, links] of this.nics) {
      for (const dir of ['rx', 'tx'] as const) out.push({ device: `nic.${id}.${dir}`, inFlight: links[dir].inFlight });
    }
    return out;
  }

  /** Per-device figures since the previous call. */
  utilization(): DeviceUtil[] {
    const now = this.clock.now();
    const out: DeviceUtil[] = [
      {
        device: 'cpu',
        inFlight: this.cpu.inFlight,
        capacity: this.cpu.capacity,
        utilization: this.cpu.meter.takeUtilization(now),
        ops: this.cpu.ops,
        bytes: 0,
        switches: this.cpu.switches,
        switchCycles: this.cpu.switchCycles,
      },
    ];
    for (const d of this.disks.values()) {
      out.push({
        device: `disk.${d.id}`,
        inFlight: d.timing.inFlight,
        capacity: d.timing.capacity,
        utilization: d.timing.meter.takeUtilization(now),
        ops: d.timing.ops,
        bytes: d.timing.bytes,
      });
    }
    for (const [id, links] of this.nics) {
      for (const dir of ['rx', 'tx'] as const) {
        const l = links[dir];
        out.push({
          device: `nic.${id}.${dir}`,
          inFlight: l.inFlight,
          capacity: l.capacity,
          utilization: l.meter.takeUtilization(now),
          ops: l.ops,
          bytes: l.bytes,
        });
      }
    }
    return out;
  }

  dropDiskCaches(): void {
    for (const d of this.disks.values()) d.timing.dropCache();
  }
}
