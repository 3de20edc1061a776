import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import {
  BaseEnv,
  Lifecycle,
  RealClock,
  connectBus,
  createLogger,
  loadConfig,
  namespace,
  busAuthFromEnv,
} from '@vmsim/shared';
import { HYPERVISOR_TYPES, Hypervisor } from './hypervisor.ts';
import { OVERHEADS } from './host-os.ts';
import { GuestCredentials, readSigner } from './nats-auth.ts';
import { POLICIES } from './scheduler.ts';

const Env = BaseEnv.extend({
  VMSIM_HYPERVISOR_TYPE: z.enum(HYPERVISOR_TYPES).default('type1'),
  VMSIM_SCHEDULER: z.enum(POLICIES).default('fair'),
  VMSIM_OVERCOMMIT: z.coerce.number().min(1).max(10).default(1),
  /** Host RAM the hypervisor keeps for itself; by default small for type 1, a host OS's worth for type 2. */
  VMSIM_RESERVED_MIB: z.coerce.number().int().min(0).optional(),
  VMSIM_DATA_DIR: z.string().default('.vmsim/data'),
  VMSIM_GUEST_ENTRY: z.string().optional(),
  VMSIM_GUEST_NODE_ARGS: z.string().default('--max-semi-space-size=1'),
  VMSIM_HEARTBEAT_MS: z.coerce.number().int().min(50).default(1000),
  /**
   * Wall ms without a heartbeat before a VM's watchdog acts (a VM's definition may set its
   * own). 10 s is ten heartbeats and over a hundred times the event-loop lag seen under load: in
   * test/faults.test.ts (a cpu hog, a garbage flood of ~2,000 messages per simulated s, two
   * guests booting again and again, on a shared 2-core machine) the neighbour's event-loop
   * lag (p99 per heartbeat) peaked at ~60 ms and the hypervisor's at ~40 ms. A busy guest is not mistaken for a hung one
   * even when the machine stalls for seconds.
   */
  VMSIM_WATCHDOG_MS: z.coerce.number().int().min(200).default(10_000),
  VMSIM_BOOT_TIMEOUT_MS: z.coerce.number().int().min(1000).default(120_000),
  VMSIM_SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(100).default(15_000),
  VMSIM_CONNECTION_TIMEOUT_MS: z.coerce.number().int().min(100).default(30_000),
  VMSIM_HOST_AGENT_WAIT_MS: z.coerce.number().int().min(100).default(60_000),
  /** Crash-consistency tests: a file naming the storage point at which the hypervisor kills itself. */
  VMSIM_CRASH_POINT_FILE: z.string().min(1).optional(),
  /** The account signing key that mints each guest its own bus user (signer.json of `vmsim nats-auth`); none: guests connect without credentials. */
  VMSIM_NATS_SIGNER_FILE: z.string().min(1).optional(),
});

async function main(): Promise<void> {
  const cfg = loadConfig(Env);
  const logger = createLogger({ svc: 'hypervisor', host: cfg.VMSIM_HOST, level: cfg.LOG_LEVEL });
  const life = Lifecycle.create(logger, { stepTimeoutMs: 20_000 });
  life.installSignalHandlers();
  const ns = namespace(cfg.VMSIM_NS);
  let afterReconnect = (): void => undefined;
  let afterDisconnect = (): void => undefined;
  const nc = await connectBus({
    url: cfg.NATS_URL,
    name: `hypervisor-${cfg.VMSIM_HOST}`,
    logger,
    waitOnFirstConnect: true,
    events: { ns, host: cfg.VMSIM_HOST, svc: 'hypervisor' },
    // A host-agent that restarted while we were away said hello to nobody.
    onReconnect: () => afterReconnect(),
    onDisconnect: () => afterDisconnect(),
    auth: busAuthFromEnv(cfg),
  });
  life.onStop('drain bus', () => nc.drain());
  const signer = cfg.VMSIM_NATS_SIGNER_FILE
    ? new GuestCredentials(readSigner(cfg.VMSIM_NATS_SIGNER_FILE), ns, cfg.VMSIM_HOST)
    : undefined;
  if (!signer && (cfg.NATS_CREDS || cfg.NATS_JWT)) {
    logger.warn('the bus wants credentials but VMSIM_NATS_SIGNER_FILE is not set: guests will connect without any');
  }
  const guestEntry = cfg.VMSIM_GUEST_ENTRY ?? fileURLToPath(import.meta.resolve('@vmsim/guest/main'));
  afterReconnect = () => void hv.onBusReconnect();
  afterDisconnect = () => hv.onBusDisconnect();
  const hv = Hypervisor.create({
    nc,
    ns,
    host: cfg.VMSIM_HOST,
    clock: new RealClock(cfg.VMSIM_TIME_SCALE),
    logger,
    config: {
      type: cfg.VMSIM_HYPERVISOR_TYPE,
      policy: cfg.VMSIM_SCHEDULER,
      overcommit: cfg.VMSIM_OVERCOMMIT,
      reservedMiB: cfg.VMSIM_RESERVED_MIB ?? OVERHEADS[cfg.VMSIM_HYPERVISOR_TYPE].reservedMiB,
      timeScale: cfg.VMSIM_TIME_SCALE,
      dataDir: path.resolve(cfg.VMSIM_DATA_DIR, cfg.VMSIM_HOST, 'hypervisor'),
      guestEntry,
      guestNodeArgs: cfg.VMSIM_GUEST_NODE_ARGS.split(' ').filter(Boolean),
      natsUrl: cfg.NATS_URL,
      guestCredentials: signer ? (vm) => signer.for(vm) : undefined,
      logLevel: cfg.LOG_LEVEL,
      heartbeatMs: cfg.VMSIM_HEARTBEAT_MS,
      watchdogMs: cfg.VMSIM_WATCHDOG_MS,
      bootTimeoutMs: cfg.VMSIM_BOOT_TIMEOUT_MS,
      shutdownTimeoutMs: cfg.VMSIM_SHUTDOWN_TIMEOUT_MS,
      connectionTimeoutMs: cfg.VMSIM_CONNECTION_TIMEOUT_MS,
      hostAgentWaitMs: cfg.VMSIM_HOST_AGENT_WAIT_MS,
      crashPointFile: cfg.VMSIM_CRASH_POINT_FILE,
    },
  });
  life.onStop('power off guests', () => hv.stop('shutdown'));
  await hv.start();
}

main().catch((e: unknown) => {
  process.stderr.write(`hypervisor: ${(e as Error).message}\n`);
  process.exit(1);
});
