import { z } from 'zod';
import type { Namespace } from '../subjects.ts';
import { vmPrefix } from './vm.ts';
import { GUEST_FAULT_KINDS } from './faults.ts';

/** Commands the hypervisor sends to a guest's virtual firmware (ACPI-like). */
/**
 * The six stress tests of the Isolation Benchmark Suite (Matthews et al., 2007). Each asks
 * for at least the whole capacity of what it stresses.
 */
export const STRESS_KINDS = ['cpu', 'memory', 'fork-bomb', 'disk', 'net-send', 'net-recv'] as const;
export type StressKind = (typeof STRESS_KINDS)[number];

export const GuestControl = z.discriminatedUnion('cmd', [
  z.object({ cmd: z.literal('shutdown'), reason: z.string().max(1024) }),
  /** Start a stressor inside the guest, for `durationMs` simulated ms (absent: until stopped). */
  z.object({ cmd: z.literal('stress'), kind: z.enum(STRESS_KINDS), durationMs: z.number().positive().optional() }),
  z.object({ cmd: z.literal('stress-stop') }),
  /** Act out a fault (see FAULT_KINDS), for `durationMs` simulated ms (absent: until stopped or dead). */
  z.object({
    cmd: z.literal('fault'),
    kind: z.enum(GUEST_FAULT_KINDS),
    durationMs: z.number().positive().optional(),
  }),
  z.object({ cmd: z.literal('fault-stop') }),
]);
export type GuestControl = z.infer<typeof GuestControl>;

export function guestControlSubject(ns: Namespace, vmId: string): string {
  return `${vmPrefix(ns, vmId)}.ctl`;
}
