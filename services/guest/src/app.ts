import type { IngressReply, IngressRequest, Clock, Logger } from '@vmsim/shared';
import type { Machine } from './hypercalls.ts';
import type { OsProfile } from './os-profiles.ts';

/** What every server application gets from its guest: the machine (hypercalls), OS costs, time. */
export interface AppContext {
  machine: Machine;
  os: OsProfile;
  clock: Clock;
  logger: Logger;
  /** The virtual disk the application keeps its data on. */
  disk: number;
  diskBytes: number;
  /**
   * db only, a teaching toggle: acknowledge a PUT once its record is written (into the
   * disk's volatile write cache) and flush only in the background. Unsafe: a power cut
   * loses acknowledged writes. Absent: false.
   */
  ackBeforeFlush?: boolean | undefined;
}

/**
 * A server application running in a guest. Every CPU burst and disk access goes through
 * `machine` (hypercalls); the application never touches real hardware.
 */
export interface ServerApp {
  /** Memory the application keeps resident, MiB (counted against the VM's memory). */
  readonly footprintMiB: number;
  /**
   * Brings the application up on its disk: on a fresh disk (`fresh`) it lays out its data
   * (install); otherwise it recovers its state from what is there.
   */
  start(fresh: boolean): Promise<void>;
  /** One client request; a request of another app kind is refused with an error reply. */
  handle(req: IngressRequest): Promise<IngressReply>;
  /** Finishes in-flight work and makes acknowledged data durable (before power-off). */
  stop(): Promise<void>;
  /** Figures for the hypervisor (sent with heartbeats) and reports. */
  figures(): Record<string, number>;
}
