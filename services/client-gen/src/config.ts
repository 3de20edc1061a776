import { z } from 'zod';
import { BaseEnv, isToken } from '@vmsim/shared';
import { Arrival } from './load.ts';

/** One target as written in VMSIM_LOAD (or a scenario file): defaults fill the rest. */
export const TargetSpecSchema = z
  .object({
    vm: z.string().refine(isToken, "a VM name: 1-64 letters, digits, '-' or '_'"),
    ratePerS: z.number().positive().max(1_000_000),
    arrival: z.enum([Arrival.POISSON, Arrival.CONSTANT]).default(Arrival.POISSON),
    mix: z
      .object({ GET: z.number().min(0).default(0), POST: z.number().min(0).default(0) })
      .refine((m) => m.GET + m.POST > 0, 'GET and POST weights must not both be 0')
      .default({ GET: 9, POST: 1 }),
    paths: z.array(z.string().min(1).max(1024).startsWith('/')).min(1).optional(),
  })
  .strict();

/** A JSON string parsed into a value, or an issue saying why it is not JSON. */
const json = z.string().transform((s, ctx) => {
  try {
    return JSON.parse(s) as unknown;
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: `not JSON: ${(e as Error).message}` });
    return z.NEVER;
  }
});

export const ClientGenEnv = BaseEnv.extend({
  /** JSON array of targets, e.g. [{"vm":"web1","ratePerS":50}]. */
  VMSIM_LOAD: json.pipe(z.array(TargetSpecSchema).min(1)),
  /** Simulated ms of arrivals. */
  VMSIM_DURATION_MS: z.coerce
    .number()
    .positive()
    .max(7 * 24 * 3600 * 1000)
    .default(60_000),
  VMSIM_SEED: z.string().min(1).default('1'),
  /** Simulated ms from a request's intended send time. */
  VMSIM_REQUEST_TIMEOUT_MS: z.coerce.number().positive().default(5_000),
  /** Per target. */
  VMSIM_MAX_IN_FLIGHT: z.coerce.number().int().positive().default(10_000),
  /** Wall ms between progress logs. */
  VMSIM_PROGRESS_MS: z.coerce.number().int().positive().default(5_000),
});
export type ClientGenEnv = z.infer<typeof ClientGenEnv>;
