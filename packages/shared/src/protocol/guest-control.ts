import { z } from 'zod';
import type { Namespace } from '../subjects.ts';
import { vmPrefix } from './vm.ts';

/** Commands the hypervisor sends to a guest's virtual firmware (ACPI-like). */
export const GuestControl = z.discriminatedUnion('cmd', [
  z.object({ cmd: z.literal('shutdown'), reason: z.string().max(1024) }),
]);
export type GuestControl = z.infer<typeof GuestControl>;

export function guestControlSubject(ns: Namespace, vmId: string): string {
  return `${vmPrefix(ns, vmId)}.ctl`;
}
