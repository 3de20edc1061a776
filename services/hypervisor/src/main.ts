import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { BaseEnv, Lifecycle, RealClock, connectBus, createLogger, loadConfig, namespace } from '@vmsim/shared';
import { HYPERVISOR_TYPES, Hypervisor } from './hypervisor.ts';
import { OVERHEADS } from './host-os.ts';
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
  VMSIM_WATCHDOG_MS: z.coerce.number().int().min(200).default(10_000),
  VMSIM_BOOT_TIMEOUT_MS: z.coerce.number().int().min(1000).default(120_000),
  VMSIM_SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(100).default(15_000),
  VMSIM_CONNECTION_TIMEOUT_MS: z.coerce.number().int().min(100).default(30_000),
  VMSIM_HOST_AGENT_WAIT_MS: z.coerce.number().int().min(100).default(60_000),
});

async function main(): Promise<void> {
  const cfg = loadConfig(Env);
  const logger = createLogger({ svc: 'hypervisor', host: cfg.VMSIM_HOST, level: cfg.LOG_LEVEL });
  const life = Lifecycle.create(logger, { stepTimeoutMs: 20_000 });
  life.installSignalHandlers();
  const ns = namespace(cfg.VMSIM_NS);
  const nc = await connectBus({
    url: cfg.NATS_URL,
    name: `hypervisor-${cfg.VMSIM_HOST}`,
    logger,
    waitOnFirstConnect: true,
    user: cfg.NATS_USER,
    pass: cfg.NATS_PASS,
    token: cfg.NATS_TOKEN,
  });
  life.onStop('drain bus', () => nc.drain());
  const guestEntry = cfg.VMSIM_GUEST_ENTRY ?? fileURLToPath(import.meta.resolve('@vmsim/guest/main'));
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
      natsAuth: cfg.NATS_USER ? { user: cfg.NATS_USER, pass: cfg.NATS_PASS ?? '' } : undefined,
      logLevel: cfg.LOG_LEVEL,
      heartbeatMs: cfg.VMSIM_HEARTBEAT_MS,
      watchdogMs: cfg.VMSIM_WATCHDOG_MS,
      bootTimeoutMs: cfg.VMSIM_BOOT_TIMEOUT_MS,
      shutdownTimeoutMs: cfg.VMSIM_SHUTDOWN_TIMEOUT_MS,
      connectionTimeoutMs: cfg.VMSIM_CONNECTION_TIMEOUT_MS,
      hostAgentWaitMs: cfg.VMSIM_HOST_AGENT_WAIT_MS,
    },
  });
  life.onStop('power off guests', () => hv.stop('shutdown'));
  await hv.start();
}

main().catch((e: unknown) => {
  process.stderr.write(`hypervisor: ${(e as Error).message}\n`);
  process.exit(1);
});
