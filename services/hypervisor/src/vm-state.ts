import type { VmState } from '@vmsim/shared';
import { ErrorCode, VmsimError } from '@vmsim/shared';

/** What can happen to a VM; each moves it along libvirt's state graph. */
export const VM_COMMANDS = [
  'start',
  'ready',
  'pause',
  'resume',
  'shutdown',
  'exited',
  'destroy',
  'crash',
  'fail',
] as const;
export type VmCommand = (typeof VM_COMMANDS)[number];

const TABLE: Record<VmCommand, { from: readonly VmState[]; to: VmState }> = {
  start: { from: ['defined', 'stopped', 'crashed'], to: 'starting' },
  ready: { from: ['starting'], to: 'running' },
  pause: { from: ['running'], to: 'paused' },
  resume: { from: ['paused'], to: 'running' },
  shutdown: { from: ['running', 'paused'], to: 'stopping' },
  exited: { from: ['stopping'], to: 'stopped' },
  destroy: { from: ['starting', 'running', 'paused', 'stopping', 'crashed'], to: 'stopped' },
  crash: { from: ['starting', 'running', 'paused', 'stopping'], to: 'crashed' },
  fail: { from: ['crashed'], to: 'failed' },
};

/** States in which a VM holds host resources (memory, a guest process). */
export const ACTIVE_STATES: readonly VmState[] = ['starting', 'running', 'paused', 'stopping'];
/** States from which a VM may be undefined. */
export const INACTIVE_STATES: readonly VmState[] = ['defined', 'stopped', 'crashed', 'failed'];

export function canApply(state: VmState, cmd: VmCommand): boolean {
  return TABLE[cmd].from.includes(state);
}

/** The state after `cmd`, or a BAD_STATE error that says what is allowed. */
export function nextState(vm: string, state: VmState, cmd: VmCommand): VmState {
  const rule = TABLE[cmd];
  if (!rule.from.includes(state)) {
    throw new VmsimError(
      ErrorCode.BAD_STATE,
      `cannot ${cmd} VM ${vm}: it is ${state} (${cmd} needs ${rule.from.join(' or ')})`,
    );
  }
  return rule.to;
}
