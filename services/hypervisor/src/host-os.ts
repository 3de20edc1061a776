import type { HypervisorOverhead } from '@vmsim/shared';

/** The scheduler flow the host side's own work runs as (no VM name can contain ':'). */
export const HOST_FLOW = 'host:vmm';
/** Its weight: far above any VM's shares, so host work runs as soon as a core frees up. */
export const HOST_FLOW_WEIGHT = 1_000_000;

/**
 * What virtualization costs on top of the guests' own work, as one model with two
 * parameter sets. A type-1 hypervisor runs on the hardware: a hypercall costs a VM exit and
 * entry, an I/O operation a little VMM work. A type-2 hypervisor is a program on a host OS:
 * every exit also returns to the host kernel and the VMM's user-space process, devices are
 * emulated there, and the host OS runs tasks of its own — more of them with every guest
 * process it has to manage — on the very cores the guests use.
 *
 * Figures, in cycles of a ~3 GHz core, are of the order measured on x86 servers: a VM exit
 * and entry ≈ 0.5 µs; a world switch to a hosted VMM's process ≈ 3 µs; a virtio notification
 * served in the kernel ≈ 2 µs, an emulated device in a user-space VMM ≈ 10-15 µs; a desktop
 * host OS keeps ≈ 5% of a core busy, and each VM process it hosts ≈ 1% more.
 *
 * A core that turns from one guest (or the host side) to another pays a switch
 * (`switchCycles`, charged by the host-agent's cores, which remember whose burst they ran
 * last): with more guests than cores it happens on a large share of the bursts. A type-1
 * hypervisor switches VMCS and vCPU registers in its own context, ≈ 1.5 µs with a little
 * cache refill. A type-2 one has the host kernel switch between two VMM processes: the
 * kernel's scheduler, an address-space switch, and the caches and TLB refilled behind it.
 * Li, Ding & Shen ("Quantifying the cost of context switch", ExpCS 2007) measured a direct
 * cost of a few µs for a process switch and an indirect, cache-refill cost from a few µs to
 * far more as the working set grows; we take ≈ 20 µs in all. Of-the-order figures, not a
 * measurement.
 */
export const OVERHEADS: Record<HypervisorOverhead['type'], HypervisorOverhead> = {
  type1: {
    type: 'type1',
    description: 'bare-metal VMM: VM exits only, devices in the hypervisor, a thin control domain',
    exitCycles: 1_500,
    switchCycles: 4_500,
    ioCycles: 6_000,
    hostTaskPeriodMs: 10,
    hostTaskBaseCycles: 30_000,
    hostTaskPerGuestCycles: 5_000,
    reservedMiB: 512,
  },
  type2: {
    type: 'type2',
    description: 'hosted VMM: exits return to the host OS, devices emulated in a host process, host tasks compete',
    exitCycles: 9_500,
    switchCycles: 60_000,
    ioCycles: 40_000,
    hostTaskPeriodMs: 10,
    hostTaskBaseCycles: 1_400_000,
    hostTaskPerGuestCycles: 280_000,
    reservedMiB: 2048,
  },
};

/**
 * The host side's own CPU work: VMM work for guests' I/O accumulates between periods and
 * goes out with the host's periodic tasks as one burst on the shared cores.
 */
export class HostWork {
  readonly params: HypervisorOverhead;
  private pendingIoCycles = 0;
  /** Cycles handed to the CPU so far. */
  totalCycles = 0;

  constructor(params: HypervisorOverhead) {
    this.params = params;
  }

  /** Extra cycles a guest's CPU burst carries: the exit into the VMM and back. */
  cpuBurst(cycles: number): number {
    return cycles + this.params.exitCycles;
  }

  /** A disk or network operation the VMM carried for a guest. */
  noteIo(count = 1): void {
    this.pendingIoCycles += count * (this.params.ioCycles + this.params.exitCycles);
  }

  /** The burst of one period, for `guests` running guests; resets the I/O work. */
  takeBurst(guests: number): number {
    const p = this.params;
    const cycles = p.hostTaskBaseCycles + p.hostTaskPerGuestCycles * guests + this.pendingIoCycles;
    this.pendingIoCycles = 0;
    this.totalCycles += cycles;
    return cycles;
  }
}
