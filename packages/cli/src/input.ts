import { MgmtRequests, VmName, describeIssues, isToken, namespace } from '@vmsim/shared';
import { loadProfile } from '@vmsim/host-agent';
import { UsageError } from './commands.ts';

/**
 * Checks of command-line values that the services would refuse only once they run: each
 * throws a UsageError (exit code 2) naming the flag, before anything is started or called.
 */

export interface StackFlags {
  ns: string;
  host: string;
  profile: string;
  timeScale: number;
  overcommit: number;
}

/** The flags of a stack to start: its namespace, host id, hardware profile, time scale and overcommit. */
export function checkStackFlags<T extends StackFlags>(o: T): T {
  try {
    namespace(o.ns);
  } catch (e) {
    throw new UsageError(`--ns: ${(e as Error).message}`);
  }
  if (!isToken(o.host)) throw new UsageError(`--host: "${o.host}" must be 1-64 letters, digits, '-' or '_'`);
  checkTimeScale(o.timeScale);
  if (!(o.overcommit >= 1 && o.overcommit <= 10))
    throw new UsageError(`--overcommit: from 1 to 10, got ${o.overcommit}`);
  try {
    loadProfile(o.profile);
  } catch (e) {
    throw new UsageError(`--profile: ${(e as Error).message}`);
  }
  return o;
}

/** Wall ms per simulated ms, as every service accepts it. */
export function checkTimeScale(n: number): number {
  if (!(n > 0 && n <= 1000)) throw new UsageError(`--time-scale: must be > 0 and at most 1000, got ${n}`);
  return n;
}

export function positive(n: number, flag: string): number {
  if (!(n > 0)) throw new UsageError(`--${flag}: must be > 0, got ${n}`);
  return n;
}

export function fraction(n: number, flag: string): number {
  if (!(n >= 0 && n <= 1)) throw new UsageError(`--${flag}: must be from 0 to 1, got ${n}`);
  return n;
}

/** A VM name as the management API takes it. */
export function vmName(name: string): string {
  const r = VmName.safeParse(name);
  if (!r.success) throw new UsageError(`VM name "${name}": ${r.error.issues[0]?.message ?? 'invalid'}`);
  return name;
}

/** A tune request, checked as the hypervisor will check it (the message names the bad field). */
export function checkTune(req: Record<string, unknown>): void {
  const r = MgmtRequests.tune.safeParse(req);
  if (!r.success) throw new UsageError(`invalid tune: ${describeIssues(r.error)}`);
}
