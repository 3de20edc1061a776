import { z } from 'zod';
import { ErrorCode, VmsimError } from './errors.ts';

/**
 * Service configuration comes from the environment, parsed with zod; an error names the
 * variable that is wrong.
 */
export function loadConfig<S extends z.ZodType>(
  schema: S,
  env: Record<string, string | undefined> = process.env,
): z.output<S> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new VmsimError(ErrorCode.CONFIG, `bad configuration: ${lines.join('; ')}`);
  }
  return parsed.data;
}

const timeScale = z.coerce.number().positive().max(1000);

/** Variables every service reads. */
export const BaseEnv = z.object({
  NATS_URL: z.string().default('nats://127.0.0.1:4222'),
  VMSIM_NS: z
    .string()
    .regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){0,3}$/, 'dot-separated tokens of letters, digits, - or _')
    .default('vmsim'),
  VMSIM_HOST: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/)
    .default('host1'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Wall ms per simulated ms. */
  VMSIM_TIME_SCALE: timeScale.default(10),
  /** A creds file (user JWT + nkey seed) for the bus; see busAuthFromEnv. */
  NATS_CREDS: z.string().min(1).optional(),
  /** A user JWT and its nkey seed, inline (the hypervisor hands a guest its own this way). */
  NATS_JWT: z.string().min(1).optional(),
  NATS_SEED: z.string().min(1).optional(),
});
export type BaseEnv = z.infer<typeof BaseEnv>;
