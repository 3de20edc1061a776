import type { HypervisorOverhead } from '@vmsim/shared';
import { ErrorCode, VmsimError } from '@vmsim/shared';

export interface MemoryPlan {
  hostMiB: number;
  overcommit: number;
  /** What the hypervisor itself keeps of host RAM. */
  reservedMiB: number;
}

/** Memory the host can commit to VMs: RAM × overcommit, less the hypervisor's own. */
export function committableMiB(p: MemoryPlan): number {
  return Math.floor(p.hostMiB * p.overcommit) - p.reservedMiB;
}

/** Refuses a VM that does not fit, saying how much is free. */
export function admitMemory(p: MemoryPlan, committedMiB: number, vm: string, wantMiB: number): void {
  const cap = committableMiB(p);
  if (committedMiB + wantMiB > cap) {
    throw new VmsimError(
      ErrorCode.NO_MEMORY,
      `VM ${vm} needs ${wantMiB} MiB but only ${Math.max(0, cap - committedMiB)} MiB of ${cap} MiB committable ` +
        `are free (host ${p.hostMiB} MiB × overcommit ${p.overcommit} − ${p.reservedMiB} MiB for the hypervisor)`,
      { wantMiB, freeMiB: Math.max(0, cap - committedMiB) },
    );
  }
}

export interface CpuPlan {
  cores: number;
  /** Percent of one core the host side's own periodic work needs: never reservable. */
  hostPct: number;
}

/** Percent of one core the host side's periodic tasks take with `guests` running guests. */
export function hostCpuPct(
  o: Pick<HypervisorOverhead, 'hostTaskBaseCycles' | 'hostTaskPerGuestCycles' | 'hostTaskPeriodMs'>,
  guests: number,
  mhz: number,
): number {
  const cycles = o.hostTaskBaseCycles + o.hostTaskPerGuestCycles * guests;
  return (100 * cycles) / (mhz * 1000 * o.hostTaskPeriodMs);
}

/** CPU that reservations may promise, in percent of one core: the cores less the host's own work. */
export function reservableCpuPct(p: CpuPlan): number {
  return p.cores * 100 - p.hostPct;
}

/** Refuses a CPU reservation the VM could never use: more than its vCPUs can run. */
export function checkReservation(vm: string, wantPct: number, vcpus: number): void {
  if (wantPct > vcpus * 100) {
    throw new VmsimError(
      ErrorCode.OUT_OF_RANGE,
      `VM ${vm} has ${vcpus} vCPU${vcpus === 1 ? '' : 's'}, so it can use at most ${vcpus * 100}% of a core; ` +
        `a reservation of ${wantPct}% is more than it could ever run`,
      { wantPct, maxPct: vcpus * 100 },
    );
  }
}

/**
 * Refuses a CPU reservation the VM could never use (above its vCPUs) or the host cannot
 * keep (the running VMs' reservations would exceed the reservable CPU), naming the figures.
 * `reservedPct` is what the other running VMs hold.
 */
export function admitCpuReservation(p: CpuPlan, reservedPct: number, vm: string, wantPct: number, vcpus: number): void {
  checkReservation(vm, wantPct, vcpus);
  const cap = reservableCpuPct(p);
  if (reservedPct + wantPct > cap + 1e-9) {
    const free = Math.max(0, cap - reservedPct);
    throw new VmsimError(
      ErrorCode.NO_CPU,
      `VM ${vm} wants a CPU reservation of ${wantPct}% but only ${fmt(free)}% of ${fmt(cap)}% reservable are free ` +
        `(${p.cores} cores × 100% − ${fmt(p.hostPct)}% for the host side's own work; running VMs hold ${fmt(reservedPct)}%)`,
      { wantPct, freePct: free, reservablePct: cap, reservedPct },
    );
  }
}

const fmt = (x: number) => String(Math.round(x * 10) / 10);
