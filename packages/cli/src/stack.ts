import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '@nats-io/transport-node';
import { ErrorCode, ManagementClient, VmsimError, namespace, waitFor, type HostInfo } from '@vmsim/shared';
import { startNatsServer, stopProcess, type StartedNats } from './nats-server.ts';

export interface StackOptions {
  /** A running NATS server; when absent, a nats-server is started for the stack. */
  natsUrl?: string | undefined;
  /** Credentials for that server, when it wants them. */
  natsAuth?: { user: string; pass: string } | undefined;
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
  procs: { nats: ChildProcess | null; hostAgent: ChildProcess; hypervisor: ChildProcess };
  stop(): Promise<void>;
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
  if (!opts.natsUrl) {
    nats = await startNatsServer({
      storeDir: path.join(opts.home, 'nats'),
      logFile: path.join(logDir, 'nats-server.log'),
      detached: opts.detached,
    });
  }
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
    ...(opts.natsAuth ? { NATS_USER: opts.natsAuth.user, NATS_PASS: opts.natsAuth.pass } : {}),
    ...opts.env,
  };
  const launch = (name: string, file: string): { proc: ChildProcess; log: string } => {
    const log = path.join(logDir, `${name}.log`);
    const fd = fs.openSync(log, 'a');
    const proc = spawn(process.execPath, [file], { env, stdio: ['ignore', fd, fd], detached: opts.detached });
    fs.closeSync(fd);
    if (opts.detached) proc.unref();
    return { proc, log };
  };
  const hostAgent = launch('host-agent', entry('@vmsim/host-agent/main'));
  const hypervisor = launch('hypervisor', entry('@vmsim/hypervisor/main'));
  const stopAll = async (): Promise<void> => {
    await stopProcess(hypervisor.proc, 20_000);
    await stopProcess(hostAgent.proc);
    if (nats) await nats.stop();
  };
  let hostInfo: HostInfo | undefined;
  const nc = await connect({ servers: natsUrl, name: 'vmsim-cli', ...opts.natsAuth });
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
  return {
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
    procs: { nats: nats?.proc ?? null, hostAgent: hostAgent.proc, hypervisor: hypervisor.proc },
    stop: stopAll,
  };
}
