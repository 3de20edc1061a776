import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { ErrorCode, VmsimError, validate } from '@vmsim/shared';

/**
 * Where a running stack can be found, written by `vmsim up` and read by every later
 * command (as kubectl and docker keep their contexts).
 */
export const Context = z.object({
  version: z.literal(1),
  natsUrl: z.string(),
  ns: z.string(),
  host: z.string(),
  home: z.string(),
  startedAt: z.string(),
  pids: z.object({ nats: z.number().int().nullable(), hostAgent: z.number().int(), hypervisor: z.number().int() }),
  logs: z.object({ nats: z.string().nullable(), hostAgent: z.string(), hypervisor: z.string() }),
  timeScale: z.number(),
  /** The management API's bus creds (the stack's own); absent or null: NATS_CREDS, or no auth. */
  credsFile: z.string().nullable().optional(),
});
export type Context = z.infer<typeof Context>;

export function vmsimHome(env: Record<string, string | undefined> = process.env): string {
  return env['VMSIM_HOME'] ?? path.join(os.homedir(), '.vmsim');
}

export function contextFile(home: string): string {
  return path.join(home, 'context.json');
}

export function readContext(home: string): Context | undefined {
  const file = contextFile(home);
  if (!fs.existsSync(file)) return undefined;
  return validate(JSON.parse(fs.readFileSync(file, 'utf8')), Context, `context file ${file}`);
}

/**
 * The stack to talk to: the context file, or else NATS_URL (+ VMSIM_NS, VMSIM_HOST) from the
 * environment, which is how containers that did not start the stack find it.
 */
export function requireContext(home: string, env: Record<string, string | undefined> = process.env): Context {
  const ctx = readContext(home);
  if (ctx) return ctx;
  const natsUrl = env['NATS_URL'];
  if (natsUrl) {
    return {
      version: 1,
      natsUrl,
      ns: env['VMSIM_NS'] ?? 'vmsim',
      host: env['VMSIM_HOST'] ?? 'host1',
      home,
      startedAt: '',
      pids: { nats: null, hostAgent: 0, hypervisor: 0 },
      logs: { nats: null, hostAgent: '', hypervisor: '' },
      timeScale: Number(env['VMSIM_TIME_SCALE'] ?? 10),
    };
  }
  throw new VmsimError(
    ErrorCode.NOT_FOUND,
    `no running stack: ${contextFile(home)} does not exist and NATS_URL is not set ` +
      '(start one with `vmsim up`, or `docker compose up`)',
  );
}

export function writeContext(home: string, ctx: Context): void {
  fs.mkdirSync(home, { recursive: true });
  const tmp = `${contextFile(home)}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(ctx, null, 2));
  fs.renameSync(tmp, contextFile(home));
}

export function removeContext(home: string): void {
  fs.rmSync(contextFile(home), { force: true });
}

export function isAlive(pid: number | null): boolean {
  if (pid === null) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
