import type { GUEST_OSES } from '@vmsim/shared';

export interface BootStage {
  name: string;
  /** CPU work of the stage. */
  cycles: number;
  /** Bytes the stage reads from the OS image on the virtual disk. */
  readBytes: number;
}

export interface OsProfile {
  name: (typeof GUEST_OSES)[number];
  description: string;
  /** Memory the OS itself keeps resident once booted. */
  footprintMiB: number;
  /** Cost of one system call (entry, work, return, with speculative-execution mitigations). */
  syscallCycles: number;
  /** Cost of one context switch between threads of the guest. */
  contextSwitchCycles: number;
  bootStages: BootStage[];
}

const MiB = 1024 * 1024;

/**
 * Guest operating systems as cost profiles. Figures are of the order measured on current
 * x86 servers: a syscall ≈ 0.1-0.5 µs, a context switch ≈ 1-3 µs, a cloud image boots in
 * about a second (Linux, BSD) to several seconds (Windows Server), reading tens of MiB.
 */
export const OS_PROFILES: Record<OsProfile['name'], OsProfile> = {
  linux: {
    name: 'linux',
    description: 'Linux cloud image (systemd, virtio drivers)',
    footprintMiB: 160,
    syscallCycles: 1_200,
    contextSwitchCycles: 6_000,
    bootStages: [
      { name: 'firmware', cycles: 150e6, readBytes: 0 },
      { name: 'bootloader', cycles: 30e6, readBytes: 1 * MiB },
      { name: 'kernel', cycles: 600e6, readBytes: 8 * MiB },
      { name: 'init', cycles: 900e6, readBytes: 12 * MiB },
      { name: 'services', cycles: 300e6, readBytes: 4 * MiB },
    ],
  },
  windows: {
    name: 'windows',
    description: 'Windows Server Core',
    footprintMiB: 1024,
    syscallCycles: 1_500,
    contextSwitchCycles: 7_000,
    bootStages: [
      { name: 'firmware', cycles: 250e6, readBytes: 0 },
      { name: 'bootmgr', cycles: 80e6, readBytes: 4 * MiB },
      { name: 'kernel', cycles: 1.4e9, readBytes: 24 * MiB },
      { name: 'session-manager', cycles: 1.6e9, readBytes: 24 * MiB },
      { name: 'services', cycles: 2.4e9, readBytes: 32 * MiB },
    ],
  },
  bsd: {
    name: 'bsd',
    description: 'FreeBSD',
    footprintMiB: 96,
    syscallCycles: 1_000,
    contextSwitchCycles: 5_000,
    bootStages: [
      { name: 'loader', cycles: 60e6, readBytes: 1 * MiB },
      { name: 'kernel', cycles: 500e6, readBytes: 8 * MiB },
      { name: 'rc', cycles: 500e6, readBytes: 8 * MiB },
    ],
  },
};
