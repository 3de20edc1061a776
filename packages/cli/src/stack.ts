import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import {
  ErrorCode,
  ManagementClient,
  VmsimError,
  namespace,
  waitFor,
  type BusAuth,
  type HostInfo,
} from '@vmsim/shared';
import type { NatsSigner } from '@vmsim/hypervisor';
import { startNatsServer, stopProcess, type StartedNats } from './nats-server.ts';
import { prepareStackAuth } from './stack-auth.ts';
import { injectInfraFault, type InfraFaultResult, type InfraStack, type ServiceSlot } from './infra-faults.ts';
import { killChild, launch as launchService, writeServices, type LaunchSpec } from './launch.ts';

export interface StackOptions {
  /** A running NATS server; when absent, a nats-server is started for the stack. */
  natsUrl?: string | undefined;
  /**
   * The account signing key of that server's auth (it mints each service its user); none:
   * VMSIM_NATS_SIGNER_FILE, else a server without auth. A stack's own server always has auth.
   */
  natsSigner?: NatsSigner | undefined;
  ns: string;
  host: string;
  /** Where data, logs and the NATS store go. */
  home: string;
  timeScale: number;
  profile: string;
  scheduler: 'fifo' | 'fair';
  hypervisorType: 'type1' | 'type2';
  overcommit: number;
  /** Processes outlive the caller (`vmsim up`); otherwise they are the caller's children. */
  detached: boolean;
  logLevel?: string;
  /** More environment for the services (watchdog timings, etc.). */
  env?: Record<string, string>;
  readyTimeoutMs?: number;
}

export interface Stack {
  natsUrl: string;
  ns: string;
  host: string;
  home: string;
  pids: { nats: number | null; hostAgent: number; hypervisor: number };
  logs: { nats: string | null; hostAgent: string; hypervisor: string };
  hostInfo: HostInfo;
  /** The management API's creds file (null: the server has no auth). */
  credsFile: string | null;
  /** The management API's credentials, to spread into connect(). */
  auth: BusAuth | undefined;
  procs: { nats: ChildProcess | null; hostAgent: ChildProcess; hypervisor: ChildProcess };
  stop(): Promise<void>;
  /**
   * Infrastructure faults (pids, procs and logs above follow the new processes). Each resolves
   * once the restarted service serves again; for the host-agent, once the hypervisor took it back.
   */
  /** SIGTERM (write caches flushed), then start the host-agent again. */
  restartHostAgent(): Promise<InfraFaultResult>;
  /** SIGKILL: what sits in the disks' write caches is lost; then start the host-agent again. */
  powerCutHostAgent(): Promise<InfraFaultResult>;
  /** SIGKILL the hypervisor (its guests live on and are re-adopted), or SIGTERM with graceful; then start it again. */
  restartHypervisor(opts?: { graceful?: boolean }): Promise<InfraFaultResult>;
  /** Only for a stack that started its own nats-server: stop it, start it on the same port. */
  restartNats(): Promise<InfraFaultResult>;
  /** This stack as an infrastructure-fault target (for a NATS server started elsewhere, pass its slot). */
  infra(nats?: ServiceSlot): InfraStack;
}

function entry(pkg: '@vmsim/host-agent/main' | '@vmsim/hypervisor/main'): string {
  return fileURLToPath(import.meta.resolve(pkg));
}

function tail(file: string, bytes = 2000): string {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text.slice(-bytes);
  } catch {
    return '';
  }
}

/** Starts NATS (if needed), the host-agent and the hypervisor, and waits until the API answers. */
export async function startStack(opts: StackOptions): Promise<Stack> {
  const logDir = path.join(opts.home, 'logs');
  fs.mkdirSync(logDir, { recursive: true });
  let nats: StartedNats | undefined;
  // Every service its own bus user; the server's config too when the stack starts the server.
  const auth = await prepareStackAuth({
    home: opts.home,
    ns: opts.ns,
    host: opts.host,
    ownServer: !opts.natsUrl,
    signer: opts.natsSigner,
  });
  const natsOpts = {
    storeDir: path.join(opts.home, 'nats'),
    logFile: path.join(logDir, 'nats-server.log'),
    detached: opts.detached,
    extraArgs: auth?.serverConfig ? ['-c', auth.serverConfig] : ([] as string[]),
  };
  if (!opts.natsUrl) nats = await startNatsServer(natsOpts);
  const natsUrl = opts.natsUrl ?? nats!.url;
  const env = {
    PATH: process.env['PATH'] ?? '',
    NATS_URL: natsUrl,
    VMSIM_NS: opts.ns,
    VMSIM_HOST: opts.host,
    VMSIM_TIME_SCALE: String(opts.timeScale),
    VMSIM_DATA_DIR: path.join(opts.home, 'data'),
    VMSIM_PROFILE: opts.profile,
    VMSIM_SCHEDULER: opts.scheduler,
    VMSIM_HYPERVISOR_TYPE: opts.hypervisorType,
    VMSIM_OVERCOMMIT: String(opts.overcommit),
    LOG_LEVEL: opts.logLevel ?? 'info',
    ...opts.env,
  };
  const specOf = (name: string, file: string, own: Record<string, string> | undefined): LaunchSpec => ({
    name,
    command: process.execPath,
    args: [file],
    env: { ...env, ...own },
    log: path.join(logDir, `${name}.log`),
  });
  const specs = {
    hostAgent: specOf('host-agent', entry('@vmsim/host-agent/main'), auth?.env.hostAgent),
    hypervisor: specOf('hypervisor', entry('@vmsim/hypervisor/main'), auth?.env.hypervisor),
  };
  // How the services were started, so `vmsim fault` can start one again the same way.
  writeServices(opts.home, {
    version: 1,
    detached: opts.detached,
    natsPort: nats?.port ?? null,
    nats: nats ? { storeDir: natsOpts.storeDir, log: natsOpts.logFile, extraArgs: natsOpts.extraArgs } : null,
    ...specs,
  });
  const launch = (spec: LaunchSpec): { proc: ChildProcess; log: string } => ({
    proc: launchService(spec, opts.detached),
    log: spec.log,
  });
  const hostAgent = launch(specs.hostAgent);
  const hypervisor = launch(specs.hypervisor);
  const stopAll = async (): Promise<void> => {
    await stopProcess(hypervisor.proc, 20_000);
    await stopProcess(hostAgent.proc);
    if (nats) await nats.stop();
  };
  let hostInfo: HostInfo | undefined;
  const nc = await connect({ servers: natsUrl, name: 'vmsim-cli', ...auth?.cli });
  try {
    const api = new ManagementClient(nc, namespace(opts.ns), opts.host, 1000);
    await waitFor(
      async () => {
        for (const [name, p] of [
          ['host-agent', hostAgent],
          ['hypervisor', hypervisor],
        ] as const) {
          if (p.proc.exitCode !== null) {
            throw new VmsimError(
              ErrorCode.HOST_UNAVAILABLE,
              `${name} exited with code ${p.proc.exitCode}:\n${tail(p.log)}`,
            );
          }
        }
        try {
          hostInfo = await api.call('ping', {});
          return true;
        } catch {
          return false;
        }
      },
      opts.readyTimeoutMs ?? 30_000,
      'the hypervisor to answer',
      100,
    );
  } catch (e) {
    await stopAll();
    throw e;
  } finally {
    await nc.close();
  }
  const stack: Stack = {
    natsUrl,
    ns: opts.ns,
    host: opts.host,
    home: opts.home,
    pids: { nats: nats?.proc.pid ?? null, hostAgent: hostAgent.proc.pid!, hypervisor: hypervisor.proc.pid! },
    logs: {
      nats: nats ? path.join(logDir, 'nats-server.log') : null,
      hostAgent: hostAgent.log,
      hypervisor: hypervisor.log,
    },
    hostInfo: hostInfo!,
    credsFile: auth?.managementCreds ?? null,
    auth: auth?.cli,
    procs: { nats: nats?.proc ?? null, hostAgent: hostAgent.proc, hypervisor: hypervisor.proc },
    stop: stopAll,
    restartHostAgent: () => injectInfraFault(stack.infra(), 'host-agent', 'restart'),
    powerCutHostAgent: () => injectInfraFault(stack.infra(), 'host-agent', 'power-cut'),
    restartHypervisor: (o) =>
      injectInfraFault(stack.infra(), 'hypervisor', 'restart', { graceful: o?.graceful ?? false }),
    restartNats: () => injectInfraFault(stack.infra(), 'nats', 'restart'),
    infra: (natsSlot) => ({
      natsUrl,
      natsAuth: auth?.cli,
      ns: opts.ns,
      host: opts.host,
      hostAgent: childSlot(
        () => hostAgent.proc,
        () => {
          hostAgent.proc = launchService(specs.hostAgent, opts.detached);
          stack.procs.hostAgent = hostAgent.proc;
          stack.pids.hostAgent = hostAgent.proc.pid!;
        },
      ),
      hypervisor: childSlot(
        () => hypervisor.proc,
        () => {
          hypervisor.proc = launchService(specs.hypervisor, opts.detached);
          stack.procs.hypervisor = hypervisor.proc;
          stack.pids.hypervisor = hypervisor.proc.pid!;
        },
      ),
      nats:
        natsSlot ??
        (nats
          ? childSlot(
              () => nats!.proc,
              async () => {
                // The same port and store: the clients reconnect to the URL they know.
                nats = await startNatsServer({ ...natsOpts, port: nats!.port });
                stack.procs.nats = nats.proc;
                stack.pids.nats = nats.proc.pid!;
              },
            )
          : undefined),
    }),
  };
  return stack;
}

/** A service that is this process's child, started again by `relaunch`. */
export function childSlot(current: () => ChildProcess, relaunch: () => void | Promise<void>): ServiceSlot {
  return {
    get pid() {
      return current().pid ?? null;
    },
    kill: (signal, graceMs) => killChild(current(), signal, graceMs),
    start: async () => {
      await relaunch();
    },
  };
}
