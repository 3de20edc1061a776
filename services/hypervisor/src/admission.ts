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
