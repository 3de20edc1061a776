import { ErrorCode, VmsimError } from '@vmsim/shared';

/** Physical memory handed out in MiB to named owners (VMs, the hypervisor itself). */
export class Ram {
  readonly totalMiB: number;
  private readonly owners = new Map<string, number>();
  private allocated = 0;

  constructor(totalMiB: number) {
    this.totalMiB = totalMiB;
  }

  get allocatedMiB(): number {
    return this.allocated;
  }

  /** Sets what `owner` holds to `mib` (idempotent for the same figure). */
  allocate(owner: string, mib: number): void {
    const held = this.owners.get(owner) ?? 0;
    const after = this.allocated - held + mib;
    if (after > this.totalMiB) {
      throw new VmsimError(
        ErrorCode.NO_MEMORY,
        `${owner} asks for ${mib} MiB but only ${this.totalMiB - this.allocated + held} MiB of ${this.totalMiB} MiB are free`,
      );
    }
    this.owners.set(owner, mib);
    this.allocated = after;
  }

  free(owner: string): void {
    const held = this.owners.get(owner) ?? 0;
    this.owners.delete(owner);
    this.allocated -= held;
  }
}
