import { z } from 'zod';
import type { Namespace } from '../subjects.ts';
import { token } from '../subjects.ts';
import { VM_STATES } from './lifecycle-states.ts';

/** Every VM state change, with why it happened. */
export const VmEvent = z.object({
  t: z.number(),
  host: z.string(),
  vm: z.string(),
  from: z.enum(VM_STATES).nullable(),
  to: z.enum(VM_STATES).nullable(),
  reason: z.string(),
  pid: z.number().int().nullable(),
});
export type VmEvent = z.infer<typeof VmEvent>;

/** Service-level events: started, stopping, degraded, peer lost. */
export const ServiceEvent = z.object({
  t: z.number(),
  host: z.string(),
  svc: z.string(),
  kind: z.string(),
  reason: z.string(),
});
export type ServiceEvent = z.infer<typeof ServiceEvent>;

export function vmEventSubject(ns: Namespace, hostId: string, vm: string): string {
  return `${ns}.evt.${token(hostId, 'host id')}.vm.${token(vm, 'vm name')}`;
}
export function anyVmEventSubject(ns: Namespace, hostId: string): string {
  return `${ns}.evt.${token(hostId, 'host id')}.vm.*`;
}
export function serviceEventSubject(ns: Namespace, hostId: string, svc: string): string {
  return `${ns}.evt.${token(hostId, 'host id')}.svc.${token(svc, 'service')}`;
}
export function anyEventSubject(ns: Namespace): string {
  return `${ns}.evt.>`;
}
