import { ManagementClient, namespace, type NatsConnection } from '@vmsim/shared';
import { startStack, type Stack } from '@vmsim/cli';
import { connectTo, startTestNats, tempHome, testNamespace, type TestNats } from './nats.ts';

export interface TestStack {
  nats: TestNats;
  stack: Stack;
  /** A client connection of the test's own. */
  nc: NatsConnection;
  api: ManagementClient;
  ns: string;
  stop(): Promise<void>;
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
    natsAuth: nats.auth,
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
  return {
    nats,
    stack,
    nc,
    api,
    ns,
    stop: async () => {
      await nc.close();
      await stack.stop();
      await nats.stop();
    },
  };
}
