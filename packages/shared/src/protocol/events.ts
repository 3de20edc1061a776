import { z } from 'zod';
import type { Namespace } from '../subjects.ts';
import { token } from '../subjects.ts';
import { VM_STATES } from './lifecycle-states.ts';
import { STRESS_KINDS } from './guest-control.ts';
import { FaultEventInfo } from './faults.ts';

/**
 * What a VM event is about: a state change (also when absent, as older events are), its
 * stressor, its memory (ballooned, swapped, major faults, OOM kill), a fault injected or
 * cleared, its health (degraded, recovered), or its watchdog firing (published before the
 * state change the watchdog's action causes).
 */
export const VM_EVENT_KINDS = ['state', 'stress', 'memory', 'fault', 'health', 'watchdog', 'io-error'] as const;
export type VmEventKind = (typeof VM_EVENT_KINDS)[number];

/**
 * Every VM state change, with why it happened; and every stressor started or stopped
 * (`kind: 'stress'`, `from` and `to` both the VM's state then).
 */
export const VmEvent = z.object({
  t: z.number(),
  host: z.string(),
  vm: z.string(),
  from: z.enum(VM_STATES).nullable(),
  to: z.enum(VM_STATES).nullable(),
  reason: z.string(),
  pid: z.number().int().nullable(),
  kind: z.enum(VM_EVENT_KINDS).optional(),
  /** Stress events: the stressor that runs from now on (null: none). */
  stress: z.enum(STRESS_KINDS).nullable().optional(),
  /** Fault events: which fault, injected or cleared. */
  fault: FaultEventInfo.optional(),
  /** Health events: the VM's service degraded (the reason names the figure) or recovered. */
  health: z.enum(['degraded', 'recovered']).optional(),
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
