import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { validate } from '@vmsim/shared';
import { isAlive } from './context.ts';

/**
 * How one of the stack's services was started, so an infrastructure fault can start it
 * again exactly so (same binary, arguments, environment, ports and data directories).
 */
export const LaunchSpec = z.object({
  name: z.string(),
  command: z.string(),
  args: z.array(z.string()),
  env: z.record(z.string(), z.string()),
  log: z.string(),
});
export type LaunchSpec = z.infer<typeof LaunchSpec>;

/** The stack's services as started; written next to the context file (it holds bus credentials). */
export const StackServices = z.object({
  version: z.literal(1),
  detached: z.boolean(),
  natsPort: z.number().int().nullable(),
  /** The nats-server the stack started (restarted on natsPort with the same store and arguments). */
  nats: z.object({ storeDir: z.string(), log: z.string(), extraArgs: z.array(z.string()) }).nullable(),
  hostAgent: LaunchSpec,
  hypervisor: LaunchSpec,
});
export type StackServices = z.infer<typeof StackServices>;

export function servicesFile(home: string): string {
  return path.join(home, 'services.json');
}

export function writeServices(home: string, s: StackServices): void {
  fs.mkdirSync(home, { recursive: true });
  const tmp = `${servicesFile(home)}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(s, null, 2), { mode: 0o600 });
  fs.renameSync(tmp, servicesFile(home));
}

export function readServices(home: string): StackServices | undefined {
  const file = servicesFile(home);
  if (!fs.existsSync(file)) return undefined;
  return validate(JSON.parse(fs.readFileSync(file, 'utf8')), StackServices, `stack services file ${file}`);
}

/**
 * Starts a service with its output appended to its log file (a file, never a pipe: a
 * service must not die of SIGPIPE when whoever started it goes away).
 */
export function launch(spec: LaunchSpec, detached: boolean): ChildProcess {
  fs.mkdirSync(path.dirname(spec.log), { recursive: true });
  const fd = fs.openSync(spec.log, 'a');
  const proc = spawn(spec.command, spec.args, { env: spec.env, stdio: ['ignore', fd, fd], detached });
  fs.closeSync(fd);
  if (detached) proc.unref();
  return proc;
}

/** Sends `signal` to a process (not necessarily our child) and waits until it is gone. */
export async function signalAndWait(pid: number, signal: NodeJS.Signals, timeoutMs: number): Promise<boolean> {
  try {
    process.kill(pid, signal);
  } catch {
    return true;
  }
  const deadline = Date.now() + timeoutMs;
  // A child of ours stays a zombie until reaped: its exit event is the reliable sign then.
  while (isAlive(pid) && !isZombie(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** A process that has exited but not been reaped yet (Linux only; elsewhere never). */
function isZombie(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The state follows the command name in parentheses, which may itself hold spaces.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return false;
  }
}

/** Kills a child of ours and resolves when Node has seen it exit (so it is reaped). */
export function killChild(proc: ChildProcess, signal: NodeJS.Signals, graceMs = 20_000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    proc.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    proc.kill(signal);
  });
}
