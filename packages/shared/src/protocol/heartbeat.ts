import { z } from 'zod';
import type { Namespace } from '../subjects.ts';
import { anyVm, vmPrefix } from './vm.ts';

/** A guest's periodic sign of life, with the figures the hypervisor watches. */
export const Heartbeat = z.object({
  seq: z.number().int().min(0),
  pid: z.number().int().min(0),
  uptimeMs: z.number().min(0),
  /** The guest process's own event-loop lag, wall ms (p99 over the last interval). */
  lagMs: z.number().min(0),
  served: z.number().int().min(0),
  inFlight: z.number().int().min(0),
  /** The application's own figures (e.g. a game's tick lateness). */
  app: z
    .record(z.string().max(64), z.number())
    // Bounded: the hypervisor keeps them and every VmInfo carries them (a list must fit a reply).
    .refine((o) => Object.keys(o).length <= 64, 'at most 64 figures')
    .default({}),
  /**
   * What the guest waits for now: hypercalls without an answer yet, and client requests
   * taken from its vNIC and not yet answered (from its own tables, so they cannot drift).
   */
  pending: z.object({ hypercalls: z.number().int().min(0), requests: z.number().int().min(0) }).optional(),
});
export type Heartbeat = z.infer<typeof Heartbeat>;

export function heartbeatSubject(ns: Namespace, vmId: string): string {
  return `${vmPrefix(ns, vmId)}.hb`;
}
export function anyHeartbeatSubject(ns: Namespace): string {
  return anyVm(ns, 'hb');
}
