import { z } from 'zod';
import {
  BaseEnv,
  Lifecycle,
  RealClock,
  connectBus,
  createLogger,
  encode,
  guestInboxPrefix,
  guestStatusSubject,
  hypercallSubject,
  loadConfig,
  namespace,
  validate,
  GUEST_OSES,
  APP_KINDS,
  busAuthFromEnv,
} from '@vmsim/shared';
import { createApp } from './apps.ts';
import { Guest } from './guest.ts';
import { HypercallClient } from './hypercalls.ts';
import { OS_PROFILES } from './os-profiles.ts';

const Spec = z.object({
  app: z.enum(APP_KINDS),
  os: z.enum(GUEST_OSES),
  vcpus: z.number().int().min(1),
  memoryMiB: z.number().int().min(1),
  disks: z.array(z.object({ index: z.number().int().min(0), sizeBytes: z.number().int().min(0) })).min(1),
  heartbeatMs: z.number().int().min(10).default(1000),
  /** db: acknowledge before flushing (the VM definition's unsafe teaching toggle). */
  ackBeforeFlush: z.boolean().default(false),
});

const Env = BaseEnv.extend({
  VMSIM_VM: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  VMSIM_GUEST_SPEC: z.string(),
  /** Wall ms; by default 3 simulated seconds, at least 30 s (see below). */
  VMSIM_HYPERCALL_TIMEOUT_MS: z.coerce.number().int().min(100).optional(),
});

/** A guest VM's process: config → logger → connect (confined to its own subjects) → boot. */
async function main(): Promise<void> {
  const cfg = loadConfig(Env);
  const logger = createLogger({ svc: 'guest', host: cfg.VMSIM_HOST, vm: cfg.VMSIM_VM, level: cfg.LOG_LEVEL });
  const spec = validate(JSON.parse(cfg.VMSIM_GUEST_SPEC), Spec, 'VMSIM_GUEST_SPEC');
  const ns = namespace(cfg.VMSIM_NS);
  const life = Lifecycle.create(logger, { stepTimeoutMs: 5_000 });
  life.installSignalHandlers();
  const busOptions = {
    url: cfg.NATS_URL,
    name: `guest-${cfg.VMSIM_VM}`,
    inboxPrefix: guestInboxPrefix(ns, cfg.VMSIM_VM),
    logger,
    auth: busAuthFromEnv(cfg),
  };
  const nc = await connectBus(busOptions);
  // The connection in use at the end (an injected disconnect replaces the first one).
  let current = nc;
  life.onStop('drain bus', () => (current.isClosed() ? undefined : current.drain()));
  // A hypercall waits in simulated time (16 guests booting on 4 cores queue their boot
  // bursts for a simulated second or more): at a higher time scale it may wait longer.
  const timeoutMs = cfg.VMSIM_HYPERCALL_TIMEOUT_MS ?? Math.max(30_000, 3_000 * cfg.VMSIM_TIME_SCALE);
  const machine = new HypercallClient(nc, hypercallSubject(ns, cfg.VMSIM_VM), timeoutMs);
  const clock = new RealClock(cfg.VMSIM_TIME_SCALE);
  const os = OS_PROFILES[spec.os];
  const disk = spec.disks[0]!;
  const app = createApp(spec.app, {
    machine,
    os,
    clock,
    logger,
    disk: disk.index,
    diskBytes: disk.sizeBytes,
    ackBeforeFlush: spec.ackBeforeFlush,
  });
  const guest = Guest.create({
    nc,
    ns,
    vm: cfg.VMSIM_VM,
    spec,
    os,
    machine,
    app,
    clock,
    logger,
    onPowerOff: (reason) => void life.stop(`power off: ${reason}`).then(() => process.exit(0)),
    // A crash skips the orderly stop: the process just dies, non-zero.
    onCrash: () => process.exit(70),
    reconnect: async () => (current = await connectBus(busOptions)),
  });
  life.onStop('stop guest', () => guest.stop());
  try {
    await guest.boot();
  } catch (e) {
    const reason = (e as Error).message;
    logger.error({ reason }, 'boot failed');
    nc.publish(guestStatusSubject(ns, cfg.VMSIM_VM), encode({ phase: 'failed', reason, pid: process.pid }));
    await nc.flush().catch(() => undefined);
    await life.stop(`boot failed: ${reason}`);
    process.exit(1);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`guest: ${(e as Error).message}\n`);
  process.exit(1);
});
