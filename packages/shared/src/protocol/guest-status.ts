import { z } from 'zod';
import type { Namespace } from '../subjects.ts';
import { anyVm, vmPrefix } from './vm.ts';

/** What a guest tells its hypervisor about itself: boot progress, ready, stopping, failure. */
export const GuestStatus = z.object({
  phase: z.enum(['booting', 'ready', 'stopping', 'failed']),
  stage: z.string().max(64).optional(),
  /** 0..1 through the boot stages. */
  progress: z.number().min(0).max(1).optional(),
  reason: z.string().max(1024),
  pid: z.number().int().min(0),
  /** Simulated ms the boot took, on ready. */
  bootMs: z.number().min(0).optional(),
});
export type GuestStatus = z.infer<typeof GuestStatus>;

export function guestStatusSubject(ns: Namespace, vmId: string): string {
  return `${vmPrefix(ns, vmId)}.status`;
}
export function anyGuestStatusSubject(ns: Namespace): string {
  return anyVm(ns, 'status');
}
