import { ManagementClient, namespace, type NatsConnection } from '@vmsim/shared';
import { injectInfraFault, startStack, type InfraFaultResult, type Stack } from '@vmsim/cli';
import { connectTo, startTestNats, tempHome, testNamespace, type TestNats } from './nats.ts';

export interface TestStack {
  nats: TestNats;
  stack: Stack;
  /** A client connection of the test's own. */
  nc: NatsConnection;
  api: ManagementClient;
  ns: string;
  stop(): Promise<void>;
  /** SIGTERM the host-agent (it flushes its write caches) and start it again; resolves once the hypervisor took it back. */
  restartHostAgent(): Promise<InfraFaultResult>;
  /** SIGKILL the host-agent (unflushed writes in its disks' write caches are lost) and start it again; resolves once the hypervisor took it back. */
  powerCutHostAgent(): Promise<InfraFaultResult>;
  /** SIGKILL the hypervisor (graceful: SIGTERM) and start it again; resolves once its API answers. */
  restartHypervisor(opts?: { graceful?: boolean }): Promise<InfraFaultResult>;
  /** Stop the suite's nats-server (down for `downMs`) and start it on the same port; resolves once host-agent and hypervisor answer again. */
  restartNats(opts?: { downMs?: number }): Promise<InfraFaultResult>;
}

/**
 * A whole stack for one test suite: its own NATS server, a namespace nobody else uses, the
 * host-agent (small profile) and the hypervisor as real processes, and a management client.
 */
export async function startTestStack(opts: {
  timeScale: number;
  env?: Record<string, string>;
  logLevel?: string;
}): Promise<TestStack> {
  const nats = await startTestNats();
  const ns = testNamespace();
  const stack = await startStack({
    natsUrl: nats.url,
    natsSigner: nats.signer,
    ns,
    host: 'host1',
    home: tempHome(),
    timeScale: opts.timeScale,
    profile: 'small',
    scheduler: 'fair',
    hypervisorType: 'type1',
    overcommit: 1,
    detached: false,
    logLevel: opts.logLevel ?? 'warn',
    ...(opts.env ? { env: opts.env } : {}),
  });
  const nc = await connectTo(nats);
  const api = new ManagementClient(nc, namespace(ns), 'host1', 30_000);
  // The suite's own server stands in for the one a stack starts itself.
  const infra = (downMs = 0) =>
    stack.infra({
      get pid() {
        return nats.pid();
      },
      kill: async () => undefined,
      start: () => nats.restart('SIGTERM', downMs),
    });
  return {
    nats,
    stack,
    nc,
    api,
    ns,
    restartHostAgent: () => stack.restartHostAgent(),
    powerCutHostAgent: () => stack.powerCutHostAgent(),
    restartHypervisor: (o) => stack.restartHypervisor(o),
    restartNats: (o) => injectInfraFault(infra(o?.downMs ?? 0), 'nats', 'restart'),
    stop: async () => {
      await nc.close();
      await stack.stop();
      await nats.stop();
    },
  };
}
