import { connect } from '@nats-io/transport-node';
import {
  ErrorCode,
  Inventory,
  ManagementClient,
  VmsimError,
  call,
  hardwareSubjects,
  namespace,
  waitFor,
  type BusAuth,
  type NatsConnection,
} from '@vmsim/shared';
import { isAlive, readContext, requireContext, writeContext } from './context.ts';
import { launch, readServices, signalAndWait, type LaunchSpec, type StackServices } from './launch.ts';
import { startNatsServer } from './nats-server.ts';
import { attachAuth } from './stack-auth.ts';

/** The stack's own services an infrastructure fault can hit (`vmsim fault <target> <action>`). */
export const INFRA_TARGETS = ['host-agent', 'hypervisor', 'nats'] as const;
export type InfraTarget = (typeof INFRA_TARGETS)[number];

export const INFRA_ACTIONS = {
  /** restart: SIGTERM (the write caches are flushed) then start; power-cut: SIGKILL (they are lost) then start. */
  'host-agent': ['restart', 'power-cut'],
  /** restart: SIGKILL then start (guests are re-adopted); with --graceful, SIGTERM (guests are powered off). */
  hypervisor: ['restart'],
  /** restart: stop the server and start it on the same port with the same store; every service reconnects. */
  nats: ['restart'],
} as const satisfies Record<InfraTarget, readonly string[]>;

export function isInfraTarget(s: string | undefined): s is InfraTarget {
  return (INFRA_TARGETS as readonly string[]).includes(s ?? '');
}

/** One service of a stack: its pid now, how to end it, how to start it again. */
export interface ServiceSlot {
  readonly pid: number | null;
  /** Sends the signal and resolves when the process is gone (a SIGKILL follows after graceMs). */
  kill(signal: NodeJS.Signals, graceMs: number): Promise<void>;
  /** Starts it again exactly as before; resolves once the process runs (not yet serving). */
  start(): Promise<void>;
}

/** What an infrastructure fault needs of a stack, be it this process's children or a detached `vmsim up`. */
export interface InfraStack {
  natsUrl: string;
  /** The management API's bus credentials (none: a server without auth). */
  natsAuth: BusAuth | undefined;
  ns: string;
  host: string;
  hostAgent: ServiceSlot;
  hypervisor: ServiceSlot;
  /** Absent when the stack runs on a server it did not start. */
  nats: ServiceSlot | undefined;
}

export interface InfraFaultResult {
  target: InfraTarget;
  action: string;
  signal: NodeJS.Signals;
  /** Wall ms since the epoch when the signal was sent. */
  injectedAt: number;
  /** Wall ms from the signal until the service answered again (the hypervisor saw it, for the host-agent). */
  downMs: number;
  oldPid: number | null;
  newPid: number | null;
}

export interface InfraFaultOptions {
  graceful?: boolean;
  readyTimeoutMs?: number;
}

async function withBus<T>(s: InfraStack, fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connect({
    servers: s.natsUrl,
    name: 'vmsim-fault',
    maxReconnectAttempts: -1,
    reconnectTimeWait: 100,
    waitOnFirstConnect: true,
    ...s.natsAuth,
  });
  try {
    return await fn(nc);
  } finally {
    await nc.close().catch(() => undefined);
  }
}

async function hypervisorBootIdOfHostAgent(nc: NatsConnection, s: InfraStack): Promise<string | null> {
  const api = new ManagementClient(nc, namespace(s.ns), s.host, 1000);
  try {
    return (await api.call('ping', {})).hostAgent.bootId;
  } catch {
    return null;
  }
}

async function hostAgentBootId(nc: NatsConnection, s: InfraStack): Promise<string | null> {
  try {
    return (await call(nc, hardwareSubjects.inventory(namespace(s.ns), s.host), {}, Inventory, 1000)).bootId;
  } catch {
    return null;
  }
}

/**
 * Restarts the host-agent: `restart` stops it cleanly (it flushes its disks' write caches),
 * `power-cut` SIGKILLs it (what sits in the write caches is lost). Resolves when a new
 * host-agent answers and, when the hypervisor runs, once the hypervisor has taken it back.
 */
export async function hostAgentFault(
  s: InfraStack,
  action: 'restart' | 'power-cut',
  opts: InfraFaultOptions = {},
): Promise<InfraFaultResult> {
  const timeoutMs = opts.readyTimeoutMs ?? 30_000;
  const signal: NodeJS.Signals = action === 'power-cut' ? 'SIGKILL' : 'SIGTERM';
  return withBus(s, async (nc) => {
    const before = await hostAgentBootId(nc, s);
    const oldPid = s.hostAgent.pid;
    const injectedAt = Date.now();
    await s.hostAgent.kill(signal, 10_000);
    await s.hostAgent.start();
    let fresh: string | null = null;
    await waitFor(
      async () => {
        fresh = await hostAgentBootId(nc, s);
        return fresh !== null && fresh !== before;
      },
      timeoutMs,
      'the restarted host-agent to answer',
      50,
    );
    if (s.hypervisor.pid !== null && isAlive(s.hypervisor.pid)) {
      await waitFor(
        async () => (await hypervisorBootIdOfHostAgent(nc, s)) === fresh,
        timeoutMs,
        'the hypervisor to take the restarted host-agent back',
        50,
      );
    }
    return {
      target: 'host-agent',
      action,
      signal,
      injectedAt,
      downMs: Date.now() - injectedAt,
      oldPid,
      newPid: s.hostAgent.pid,
    };
  });
}

/**
 * Restarts the hypervisor: by default a crash (SIGKILL: its guests live on and the new
 * hypervisor re-adopts them), with `graceful` a clean stop (it powers its guests off; the new
 * one starts those whose policy says so). Resolves when the new one answers its API.
 */
export async function hypervisorRestart(s: InfraStack, opts: InfraFaultOptions = {}): Promise<InfraFaultResult> {
  const timeoutMs = opts.readyTimeoutMs ?? 60_000;
  const signal: NodeJS.Signals = opts.graceful ? 'SIGTERM' : 'SIGKILL';
  return withBus(s, async (nc) => {
    const oldPid = s.hypervisor.pid;
    const injectedAt = Date.now();
    await s.hypervisor.kill(signal, 30_000);
    await s.hypervisor.start();
    const api = new ManagementClient(nc, namespace(s.ns), s.host, 1000);
    await waitFor(
      async () => {
        try {
          await api.call('ping', {});
          return true;
        } catch {
          return false;
        }
      },
      timeoutMs,
      'the restarted hypervisor to answer',
      50,
    );
    return {
      target: 'hypervisor',
      action: 'restart',
      signal,
      injectedAt,
      downMs: Date.now() - injectedAt,
      oldPid,
      newPid: s.hypervisor.pid,
    };
  });
}

/**
 * Restarts nats-server on the same port with the same store. Resolves when the host-agent
 * and the hypervisor answer through it again (they reconnected; guests reconnect as well).
 */
export async function natsRestart(s: InfraStack, opts: InfraFaultOptions = {}): Promise<InfraFaultResult> {
  const timeoutMs = opts.readyTimeoutMs ?? 30_000;
  if (!s.nats) {
    throw new VmsimError(
      ErrorCode.CONFIG,
      `this stack runs on a NATS server it did not start (${s.natsUrl}): restart that server yourself`,
    );
  }
  const oldPid = s.nats.pid;
  const injectedAt = Date.now();
  await s.nats.kill('SIGTERM', 10_000);
  await s.nats.start();
  await withBus(s, (nc) => waitUntilServing(nc, s, timeoutMs));
  return {
    target: 'nats',
    action: 'restart',
    signal: 'SIGTERM',
    injectedAt,
    downMs: Date.now() - injectedAt,
    oldPid,
    newPid: s.nats.pid,
  };
}

/** Waits until the host-agent and the hypervisor both answer on the bus. */
export async function waitUntilServing(nc: NatsConnection, s: InfraStack, timeoutMs: number): Promise<void> {
  await waitFor(
    async () => (await hostAgentBootId(nc, s)) !== null && (await hypervisorBootIdOfHostAgent(nc, s)) !== null,
    timeoutMs,
    'the host-agent and the hypervisor to answer after the NATS restart',
    50,
  );
}

/** Runs one infrastructure fault against a stack. */
export function injectInfraFault(
  s: InfraStack,
  target: InfraTarget,
  action: string,
  opts: InfraFaultOptions = {},
): Promise<InfraFaultResult> {
  const allowed: readonly string[] = INFRA_ACTIONS[target];
  if (!allowed.includes(action)) {
    throw new VmsimError(
      ErrorCode.CONFIG,
      `unknown action "${action}" for ${target}: expected one of ${allowed.join(', ')}`,
    );
  }
  if (target === 'host-agent') return hostAgentFault(s, action as 'restart' | 'power-cut', opts);
  if (target === 'hypervisor') return hypervisorRestart(s, opts);
  return natsRestart(s, opts);
}

// ------------------------------------------------------------ a detached stack (`vmsim up`)

/** A service of a detached stack, found by the pid in the context file and started again from services.json. */
function detachedSlot(
  home: string,
  key: 'hostAgent' | 'hypervisor',
  spec: LaunchSpec,
  onPid: (pid: number) => void,
): ServiceSlot {
  let pid: number | null = readContext(home)?.pids[key] ?? null;
  return {
    get pid() {
      return pid;
    },
    kill: async (signal, graceMs) => {
      if (pid === null || !isAlive(pid)) return;
      if (!(await signalAndWait(pid, signal, graceMs))) await signalAndWait(pid, 'SIGKILL', 5_000);
    },
    start: async () => {
      const proc = launch(spec, true);
      pid = proc.pid ?? null;
      if (pid !== null) onPid(pid);
    },
  };
}

/** The stack `vmsim up` started in `home`, as an InfraStack whose restarts keep the context file current. */
export function detachedStack(home: string): InfraStack {
  const ctx = requireContext(home);
  const services: StackServices | undefined = readServices(home);
  if (!services || ctx.pids.hypervisor === 0) {
    throw new VmsimError(
      ErrorCode.NOT_FOUND,
      `no stack started by \`vmsim up\` in ${home} (its services.json is missing). Under docker compose, ` +
        'use `docker compose kill -s KILL <service> && docker compose up -d <service>` (see the README).',
    );
  }
  const savePid = (key: 'hostAgent' | 'hypervisor' | 'nats', pid: number): void => {
    const now = readContext(home);
    if (now) writeContext(home, { ...now, pids: { ...now.pids, [key]: pid } });
  };
  const nats = services.nats;
  let natsPid = ctx.pids.nats;
  const natsSlot: ServiceSlot | undefined =
    nats && services.natsPort !== null
      ? {
          get pid() {
            return natsPid;
          },
          kill: async (signal, graceMs) => {
            if (natsPid === null || !isAlive(natsPid)) return;
            if (!(await signalAndWait(natsPid, signal, graceMs))) await signalAndWait(natsPid, 'SIGKILL', 5_000);
          },
          start: async () => {
            const started = await startNatsServer({
              storeDir: nats.storeDir,
              logFile: nats.log,
              detached: true,
              port: services.natsPort!,
              extraArgs: nats.extraArgs,
            });
            natsPid = started.proc.pid ?? null;
            if (natsPid !== null) savePid('nats', natsPid);
          },
        }
      : undefined;
  return {
    natsUrl: ctx.natsUrl,
    natsAuth: attachAuth(ctx.credsFile),
    ns: ctx.ns,
    host: ctx.host,
    hostAgent: detachedSlot(home, 'hostAgent', services.hostAgent, (p) => savePid('hostAgent', p)),
    hypervisor: detachedSlot(home, 'hypervisor', services.hypervisor, (p) => savePid('hypervisor', p)),
    nats: natsSlot,
  };
}

/** `vmsim fault <host-agent|hypervisor|nats> <action> [--graceful]` against the stack in `home`. */
export async function runInfraFault(args: {
  home: string;
  target: InfraTarget;
  action: string;
  graceful?: boolean;
  out: (line: string) => void;
}): Promise<InfraFaultResult> {
  const stack = detachedStack(args.home);
  const r = await injectInfraFault(stack, args.target, args.action, { graceful: args.graceful ?? false });
  args.out(
    `${r.target} ${r.action} (${r.signal}): pid ${r.oldPid ?? '-'} → ${r.newPid ?? '-'}, serving again after ${r.downMs} ms`,
  );
  return r;
}
