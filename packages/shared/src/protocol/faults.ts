import { z } from 'zod';

/**
 * Faults injected into one running VM (`vmsim fault`). crash: the guest exits on its own;
 * kill: the hypervisor SIGKILLs it; hang: its event loop blocks; pause/resume: SIGSTOP/SIGCONT
 * behind the hypervisor's back; slow: every hypercall delayed; hog: a stressor; leak: memory
 * grows until the limit; garbage: malformed messages on its own subjects; disconnect: it drops
 * its bus connection.
 */
export const FAULT_KINDS = [
  'crash',
  'kill',
  'hang',
  'pause',
  'resume',
  'slow',
  'hog',
  'leak',
  'garbage',
  'disconnect',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** What a `hog` fault saturates, each with its stressor (cpu → cpu, disk → disk, net → net-send). */
export const HOG_TARGETS = ['cpu', 'disk', 'net'] as const;
export type HogTarget = (typeof HOG_TARGETS)[number];

/** What the watchdog does to a running VM whose heartbeats stopped. */
export const WATCHDOG_ACTIONS = ['reset', 'poweroff', 'pause', 'none'] as const;
export type WatchdogAction = (typeof WATCHDOG_ACTIONS)[number];

/** Faults the guest itself acts out, told through its control subject. */
export const GUEST_FAULT_KINDS = ['crash', 'hang', 'leak', 'garbage', 'disconnect'] as const;
export type GuestFaultKind = (typeof GUEST_FAULT_KINDS)[number];

/** Default added delay of a `slow` fault, simulated ms per hypercall. */
export const DEFAULT_SLOW_DELAY_MS = 5;

/** A VM's watchdog: the action on missed heartbeats; `timeoutMs` absent: the hypervisor's VMSIM_WATCHDOG_MS. */
export const WatchdogConfig = z.object({
  action: z.enum(WATCHDOG_ACTIONS).default('reset'),
  /** Wall ms without a heartbeat. */
  timeoutMs: z.number().int().min(200).max(3_600_000).optional(),
});
export type WatchdogConfig = z.infer<typeof WatchdogConfig>;

/** The fields of a `fault` request besides the VM's name. */
export const FaultSpec = z.object({
  kind: z.enum(FAULT_KINDS),
  /** Simulated ms; absent: until cleared (crash and kill are one-shot). */
  durationMs: z.number().positive().max(86_400_000).optional(),
  /** `slow`: simulated ms added to each hypercall (default 5). */
  delayMs: z.number().min(0).max(60_000).optional(),
  /** `hog`: what it saturates (default cpu). */
  target: z.enum(HOG_TARGETS).optional(),
});
export type FaultSpec = z.infer<typeof FaultSpec>;

/** The fault a VM has now. */
export const ActiveFault = z.object({
  kind: z.enum(FAULT_KINDS),
  target: z.enum(HOG_TARGETS).optional(),
  delayMs: z.number().optional(),
  /** Epoch ms it was injected. */
  since: z.number(),
  /** Epoch ms it clears by itself; null: until cleared. */
  until: z.number().nullable(),
});
export type ActiveFault = z.infer<typeof ActiveFault>;

export const VM_HEALTH = ['ok', 'degraded'] as const;
export type VmHealth = (typeof VM_HEALTH)[number];

/** On a `fault` VM event. */
export const FaultEventInfo = z.object({
  kind: z.enum(FAULT_KINDS),
  phase: z.enum(['injected', 'cleared']),
  target: z.enum(HOG_TARGETS).optional(),
});
export type FaultEventInfo = z.infer<typeof FaultEventInfo>;
