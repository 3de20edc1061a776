import fs from 'node:fs';
import { EventEmitter } from 'node:events';
import type { VmState } from '@vmsim/shared';

/**
 * What a restarted hypervisor finds of a guest the previous one ran: the guest process may
 * have lived through the restart (it is not the hypervisor's child then, so its exit is seen
 * by polling), or died while nobody watched.
 */

/** What the previous hypervisor last recorded of a VM's run. */
export interface PersistedRun {
  state: VmState;
  pid: number | null;
  startedAt: number | null;
  bootMs: number | null;
  restarts: number;
  /** Guest RAM the guest had touched, MiB. */
  usedMiB: number;
  /** Powered off by the previous hypervisor's shutdown, to be started again. */
  resume?: boolean | undefined;
}

/** A process as seen from outside: running, stopped by a signal (paused), or gone (exited, zombie, never there). */
export const PROC_STATES = ['alive', 'stopped', 'gone'] as const;
export type ProcState = (typeof PROC_STATES)[number];

export interface GuestProbe {
  proc: ProcState;
  /** The process is this VM's guest (not another process that got the pid since). */
  isGuest: boolean;
}

export type AdoptionDecision =
  /** Nothing ran: the VM keeps the state it had (stopped, crashed, failed or just defined). */
  | { kind: 'keep'; state: VmState; reason: string }
  /** The guest lives on: take it back in the state it had. */
  | { kind: 'adopt'; state: 'running' | 'paused'; reason: string }
  /** The guest lives on but was booting (its boot's hypercalls are lost): kill it, it crashed. */
  | { kind: 'kill-crash'; reason: string }
  /** The guest lives on but was shutting down: force it off. */
  | { kind: 'kill-stop'; reason: string }
  /** The guest is gone while it should run: it crashed (the crash policy decides what next). */
  | { kind: 'crashed'; reason: string }
  /** The guest is gone and was shutting down: its shutdown finished. */
  | { kind: 'stopped'; reason: string }
  /** The previous hypervisor's shutdown powered it off: start it again. */
  | { kind: 'start'; reason: string };

const ACTIVE: readonly VmState[] = ['starting', 'running', 'paused', 'stopping'];

/** Per VM, what a restarted hypervisor does with what the previous one left (pure). */
export function decideAdoption(run: PersistedRun | undefined, probe: GuestProbe | undefined): AdoptionDecision {
  if (!run) return { kind: 'keep', state: 'defined', reason: 'definition loaded at hypervisor start' };
  if (run.state === 'stopped' && run.resume) {
    return { kind: 'start', reason: "powered off by the previous hypervisor's shutdown: started again" };
  }
  if (!ACTIVE.includes(run.state)) {
    return { kind: 'keep', state: run.state, reason: `was ${run.state} before the hypervisor restarted` };
  }
  const pid = run.pid;
  if (pid === null) {
    return { kind: 'crashed', reason: `was ${run.state} with no guest process recorded when the hypervisor restarted` };
  }
  const alive = probe !== undefined && probe.proc !== 'gone' && probe.isGuest;
  if (!alive) {
    const why =
      probe && probe.proc !== 'gone' && !probe.isGuest
        ? `pid ${pid} now belongs to another process`
        : `guest process pid ${pid} is gone`;
    if (run.state === 'stopping') {
      return { kind: 'stopped', reason: `${why}: its shutdown finished while the hypervisor was down` };
    }
    return { kind: 'crashed', reason: `${why}: it died while the hypervisor was down` };
  }
  if (run.state === 'starting') {
    return {
      kind: 'kill-crash',
      reason: `guest pid ${pid} was booting when the hypervisor went down (its boot's hypercalls are lost): reset`,
    };
  }
  if (run.state === 'stopping') {
    return {
      kind: 'kill-stop',
      reason: `guest pid ${pid} was shutting down when the hypervisor went down: forced off`,
    };
  }
  const state = run.state === 'paused' ? 'paused' : 'running';
  return { kind: 'adopt', state, reason: `re-adopted ${state} guest pid ${pid} after a hypervisor restart` };
}

/**
 * A process's state from /proc (Linux): a zombie counts as gone (an adopted guest is not our
 * child, so we cannot reap it), `T` as stopped. Without /proc, signal 0 tells alive or gone.
 */
export function probeProcess(pid: number, procRoot = '/proc'): ProcState {
  try {
    const stat = fs.readFileSync(`${procRoot}/${pid}/stat`, 'utf8');
    return procStateOfStat(stat);
  } catch {
    // no /proc entry: gone on Linux; elsewhere ask the kernel
  }
  if (fs.existsSync(`${procRoot}/self`)) return 'gone';
  try {
    process.kill(pid, 0);
    return 'alive';
  } catch (e) {
    // EPERM: it exists but is not ours to signal, so it is no guest of ours either.
    return (e as NodeJS.ErrnoException).code === 'EPERM' ? 'alive' : 'gone';
  }
}

/** The state letter follows the command name, which is in parentheses and may hold anything. */
export function procStateOfStat(stat: string): ProcState {
  const close = stat.lastIndexOf(')');
  const letter = stat.slice(close + 2, close + 3);
  if (letter === 'Z' || letter === 'X' || letter === 'x' || letter === '') return 'gone';
  if (letter === 'T' || letter === 't') return 'stopped';
  return 'alive';
}

/**
 * Whether pid is the guest of `vm` in namespace `ns` (its environment says so): after a host
 * or container restart another process may hold a recorded pid. Without /proc, trust the pid.
 */
export function isGuestProcess(pid: number, ns: string, vm: string, procRoot = '/proc'): boolean {
  let env: string;
  try {
    env = fs.readFileSync(`${procRoot}/${pid}/environ`, 'utf8');
  } catch {
    return !fs.existsSync(`${procRoot}/self`);
  }
  const vars = new Set(env.split('\0'));
  return vars.has(`VMSIM_VM=${vm}`) && vars.has(`VMSIM_NS=${ns}`);
}

/**
 * A re-adopted guest stands where its ChildProcess stood, so that every path that signals a
 * guest or waits for its exit works unchanged: `kill` signals the pid, and polling stands in
 * for the exit event a parent gets (the exit status of a process that is not our child is
 * unknown: code and signal are null unless we sent the fatal signal ourselves).
 */
export class AdoptedProcess extends EventEmitter {
  readonly pid: number;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  private readonly timer: NodeJS.Timeout;
  private lastSignal: NodeJS.Signals | null = null;
  private exited = false;
  private readonly probe: (pid: number) => ProcState;

  constructor(pid: number, pollMs: number, probe: (pid: number) => ProcState = (p) => probeProcess(p)) {
    super();
    this.pid = pid;
    this.probe = probe;
    this.timer = setInterval(() => this.poll(), pollMs);
    this.timer.unref();
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    try {
      process.kill(this.pid, signal);
      this.lastSignal = signal;
      return true;
    } catch {
      return false;
    }
  }

  /** Checks once whether the process is gone; emits 'exit' the first time it is. */
  poll(): void {
    if (this.exited || this.probe(this.pid) !== 'gone') return;
    this.exited = true;
    clearInterval(this.timer);
    const fatal = this.lastSignal === 'SIGKILL' || this.lastSignal === 'SIGTERM' ? this.lastSignal : null;
    this.signalCode = fatal;
    this.emit('exit', null, fatal);
  }
}
