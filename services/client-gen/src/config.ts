import { z } from 'zod';
import { APP_KINDS, BaseEnv, isToken } from '@vmsim/shared';
import { appProblems, MAX_FILE_BYTES, resolveMix } from './apps.ts';
import { Arrival, LoadModel, type TargetSpec } from './load.ts';

const count = (max: number) => z.number().int().min(1).max(max);

/** Fields every target has, whichever its model. */
const common = {
  vm: z.string().refine(isToken, "a VM name: 1-64 letters, digits, '-' or '_'"),
  app: z.enum(APP_KINDS).default('web'),
  /** Op weights of the app, e.g. {"GET": 9, "POST": 1}; checked against the app below. */
  mix: z.record(z.string(), z.number().min(0).max(1e9)).optional(),
  paths: z.array(z.string().min(1).max(1024).startsWith('/')).min(1).optional(),
  keys: count(1_000_000).optional(),
  keySkew: z.number().min(0).max(4).optional(),
  mailboxes: count(1_000_000).optional(),
  files: count(1_000_000).optional(),
  minFileBytes: z.number().int().min(0).max(MAX_FILE_BYTES).optional(),
  maxFileBytes: z.number().int().min(0).max(MAX_FILE_BYTES).optional(),
  players: count(1_000_000).optional(),
};

const OpenTarget = z
  .object({
    model: z.literal(LoadModel.OPEN),
    ...common,
    ratePerS: z.number().positive().max(1_000_000),
    arrival: z.enum([Arrival.POISSON, Arrival.CONSTANT]).default(Arrival.POISSON),
  })
  .strict();

const ClosedTarget = z
  .object({
    model: z.literal(LoadModel.CLOSED),
    ...common,
    users: count(100_000),
    /** Mean think time, simulated ms. */
    thinkMs: z
      .number()
      .min(0)
      .max(24 * 3600 * 1000),
  })
  .strict();

/**
 * One target as written in VMSIM_LOAD (or a scenario file): `ratePerS` makes it open,
 * `users` closed (or say so with `model`); defaults fill the rest, the mix included.
 */
export const TargetSpecSchema = z
  .preprocess(
    (v, ctx) => {
      if (typeof v !== 'object' || v === null || Array.isArray(v) || 'model' in v) return v;
      const closed = 'users' in v || 'thinkMs' in v;
      if (closed && 'ratePerS' in v) {
        ctx.addIssue({
          code: 'custom',
          message: 'give ratePerS (open model) or users and thinkMs (closed model), not both',
        });
      }
      return { ...v, model: closed ? LoadModel.CLOSED : LoadModel.OPEN };
    },
    z.discriminatedUnion('model', [OpenTarget, ClosedTarget]),
  )
  .superRefine((t, ctx) => {
    for (const p of appProblems(t.app, t.mix, t, false))
      ctx.addIssue({ code: 'custom', path: p.path, message: p.message });
  })
  .transform((t): TargetSpec => ({ ...t, mix: resolveMix(t.app, t.mix) }));

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
  /** JSON array of targets, e.g. [{"vm":"web1","ratePerS":50},{"vm":"db1","app":"db","users":20,"thinkMs":500}]. */
  VMSIM_LOAD: json.pipe(z.array(TargetSpecSchema).min(1)),
  /** Simulated ms during which requests are started. */
  VMSIM_DURATION_MS: z.coerce
    .number()
    .positive()
    .max(7 * 24 * 3600 * 1000)
    .default(60_000),
  VMSIM_SEED: z.string().min(1).default('1'),
  /** Simulated ms from a request's intended send time. */
  VMSIM_REQUEST_TIMEOUT_MS: z.coerce.number().positive().default(5_000),
  /** Per open target. */
  VMSIM_MAX_IN_FLIGHT: z.coerce.number().int().positive().default(10_000),
  /** Wall ms between progress logs. */
  VMSIM_PROGRESS_MS: z.coerce.number().int().positive().default(5_000),
});
export type ClientGenEnv = z.infer<typeof ClientGenEnv>;
