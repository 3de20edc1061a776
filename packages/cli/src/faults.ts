import {
  FAULT_KINDS,
  HOG_TARGETS,
  WATCHDOG_ACTIONS,
  type FaultKind,
  type HogTarget,
  type MgmtRequest,
  type VmInfo,
  type WatchdogAction,
  type WatchdogConfig,
} from '@vmsim/shared';
import { UsageError, withApi, type Out } from './commands.ts';
import { parseDuration } from './format.ts';
import { INFRA_TARGETS, isInfraTarget, runInfraFault } from './infra-faults.ts';

function dur(v: string, flag: string): number {
  try {
    return parseDuration(v, `--${flag}`);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export interface FaultFlags {
  for?: string | undefined;
  delay?: string | undefined;
  target?: string | undefined;
}

/** `vmsim fault <vm> <kind> [--for 5s] [--delay 5ms] [--target cpu|disk|net]` → the request; `clear` → unfault. */
export function parseFaultArgs(
  vm: string | undefined,
  kind: string | undefined,
  f: FaultFlags,
): { op: 'fault'; req: MgmtRequest<'fault'> } | { op: 'unfault'; req: MgmtRequest<'unfault'> } {
  if (!vm || !kind) {
    throw new UsageError(
      `fault needs a VM and one of ${FAULT_KINDS.join(', ')} or clear (or ${INFRA_TARGETS.join('|')} and an action), e.g. \`vmsim fault web1 hang --for 5s\``,
    );
  }
  if (kind === 'clear') {
    for (const k of ['for', 'delay', 'target'] as const) {
      if (f[k] !== undefined) throw new UsageError(`--${k}: only when injecting a fault`);
    }
    return { op: 'unfault', req: { name: vm } };
  }
  if (!(FAULT_KINDS as readonly string[]).includes(kind)) {
    throw new UsageError(`fault: "${kind}" is not one of ${FAULT_KINDS.join(', ')}, clear`);
  }
  const k = kind as FaultKind;
  const req: MgmtRequest<'fault'> = { name: vm, kind: k };
  if (f.for !== undefined) {
    if (k === 'crash' || k === 'kill' || k === 'resume') throw new UsageError(`--for: ${k} is one-shot`);
    const ms = dur(f.for, 'for');
    if (!(ms > 0)) throw new UsageError('--for: must be longer than 0');
    req.durationMs = ms;
  }
  if (f.delay !== undefined) {
    if (k !== 'slow') throw new UsageError('--delay: only for a slow fault');
    req.delayMs = dur(f.delay, 'delay');
  }
  if (f.target !== undefined) {
    if (k !== 'hog') throw new UsageError('--target: only for a hog fault');
    if (!(HOG_TARGETS as readonly string[]).includes(f.target))
      throw new UsageError(`--target: "${f.target}" is not one of ${HOG_TARGETS.join(', ')}`);
    req.target = f.target as HogTarget;
  }
  return { op: 'fault', req };
}

/** `--watchdog <action> [--watchdog-timeout 3s]`; undefined when neither flag is given. */
export function parseWatchdogFlags(
  action: string | undefined,
  timeout: string | undefined,
  current?: WatchdogConfig,
): WatchdogConfig | undefined {
  if (action === undefined && timeout === undefined) return undefined;
  if (action !== undefined && !(WATCHDOG_ACTIONS as readonly string[]).includes(action)) {
    throw new UsageError(`--watchdog: "${action}" is not one of ${WATCHDOG_ACTIONS.join(', ')}`);
  }
  const out: WatchdogConfig = { action: (action as WatchdogAction | undefined) ?? current?.action ?? 'reset' };
  if (timeout !== undefined) {
    const ms = Math.round(dur(timeout, 'watchdog-timeout'));
    if (ms < 200) throw new UsageError('--watchdog-timeout: at least 200ms');
    out.timeoutMs = ms;
  } else if (current?.timeoutMs !== undefined) out.timeoutMs = current.timeoutMs;
  return out;
}

export function faultCell(v: VmInfo): string {
  const f = v.fault;
  if (!f) return 'none';
  const what = f.kind === 'hog' ? `hog ${f.target}` : f.kind === 'slow' ? `slow +${f.delayMs} ms` : f.kind;
  return `${what} since ${new Date(f.since).toISOString()}${f.until !== null ? ` until ${new Date(f.until).toISOString()}` : ''}`;
}

/**
 * `vmsim fault …`: a VM fault through the management API, or an infrastructure fault when the
 * first argument names one of the stack's services (host-agent, hypervisor, nats).
 */
export async function runFaultCommand(
  home: string,
  sub: string | undefined,
  arg: string | undefined,
  f: FaultFlags & { graceful?: boolean | undefined },
  out: Out,
): Promise<number> {
  if (isInfraTarget(sub)) {
    if (!arg) throw new UsageError(`fault ${sub} needs an action, e.g. \`vmsim fault ${sub} restart\``);
    await runInfraFault({ home, target: sub, action: arg, graceful: f.graceful ?? false, out });
    return 0;
  }
  const parsed = parseFaultArgs(sub, arg, f);
  return withApi(home, async (api) => {
    if (parsed.op === 'unfault') {
      const info = await api.call('unfault', parsed.req);
      out(`${info.name}: no fault (${info.state}, health ${info.health})`);
      return 0;
    }
    const info = await api.call('fault', parsed.req);
    out(`${info.name}: fault ${parsed.req.kind} injected — now ${faultCell(info)} (${info.state})`);
    return 0;
  });
}
