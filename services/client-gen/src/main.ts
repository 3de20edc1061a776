import {
  connectBus,
  createLogger,
  LagMonitor,
  Lifecycle,
  loadConfig,
  namespace,
  RandomStreams,
  RealClock,
  toVmsimError,
  type Logger,
  busAuthFromEnv,
} from '@vmsim/shared';
import { createBusSender } from './bus-sender.ts';
import { ClientGenEnv } from './config.ts';
import { LoadRunner } from './load.ts';

/** Wall ms given to outstanding requests after a signal before they are abandoned. */
const STOP_GRACE_WALL_MS = 3_000;

/**
 * Composition root: config from the environment, one bus connection, one load runner
 * (open and closed targets) on a real clock. Logs progress, then the summary as one JSON
 * line (msg "summary"); exit code.
 */
export async function main(env: Record<string, string | undefined> = process.env): Promise<number> {
  let cfg: ClientGenEnv;
  try {
    cfg = loadConfig(ClientGenEnv, env);
  } catch (e) {
    createLogger({ svc: 'client-gen', host: env['VMSIM_HOST'] ?? 'unknown' }).error(
      { code: toVmsimError(e).code },
      (e as Error).message,
    );
    return 1;
  }
  const logger = createLogger({ svc: 'client-gen', host: cfg.VMSIM_HOST, level: cfg.LOG_LEVEL });
  const lifecycle = Lifecycle.create(logger);

  const ns = namespace(cfg.VMSIM_NS);
  const nc = await connectBus({
    url: cfg.NATS_URL,
    name: `client-gen-${cfg.VMSIM_HOST}`,
    logger,
    events: { ns, host: cfg.VMSIM_HOST, svc: 'client-gen' },
    auth: busAuthFromEnv(cfg),
  });
  lifecycle.onStop('bus', () => nc.drain());

  const clock = new RealClock(cfg.VMSIM_TIME_SCALE);
  const lag = new LagMonitor();
  lifecycle.onStop('lag monitor', () => lag.stop());
  // NATS times out in wall time, a little after the load's own timeout, so that a slow
  // reply is counted as a timeout by the load rather than as an error by the bus.
  const busTimeoutWallMs = Math.ceil(clock.toWall(cfg.VMSIM_REQUEST_TIMEOUT_MS) * 1.1 + 100);
  const loop = new LoadRunner({
    clock,
    streams: new RandomStreams(cfg.VMSIM_SEED),
    targets: cfg.VMSIM_LOAD,
    durationMs: cfg.VMSIM_DURATION_MS,
    timeoutMs: cfg.VMSIM_REQUEST_TIMEOUT_MS,
    maxInFlight: cfg.VMSIM_MAX_IN_FLIGHT,
    send: createBusSender(nc, ns, cfg.VMSIM_HOST, { timeoutMs: busTimeoutWallMs }),
    logger,
  });
  logger.info(
    {
      targets: cfg.VMSIM_LOAD,
      durationMs: cfg.VMSIM_DURATION_MS,
      timeScale: cfg.VMSIM_TIME_SCALE,
      seed: cfg.VMSIM_SEED,
    },
    'load starting',
  );
  const finished = loop.run();

  const progress = setInterval(() => logProgress(logger, loop, lag), cfg.VMSIM_PROGRESS_MS);
  progress.unref();
  lifecycle.onStop('load', async () => {
    clearInterval(progress);
    loop.stop();
    const grace = new Promise<void>((r) => setTimeout(r, STOP_GRACE_WALL_MS).unref());
    await Promise.race([finished, grace]);
    loop.stop({ abandonInFlight: true });
  });
  // The first signal stops intake and lets main print the summary and return; a second
  // one exits at once. Before this point a signal just ends the process.
  lifecycle.installSignalHandlers((code) => {
    if (code !== 0) process.exit(code);
  });

  const summary = await finished;
  clearInterval(progress);
  logger.info({ summary, generatorLagMaxWallMs: Math.round(lag.maxMs) }, 'summary');
  await lifecycle.stop('load finished');
  clock.cancelAll();
  return 0;
}

function logProgress(logger: Logger, loop: LoadRunner, lag: LagMonitor): void {
  const p = loop.snapshot();
  logger.info(
    {
      elapsedMs: Math.round(p.elapsedMs),
      durationMs: p.durationMs,
      targets: p.targets.map((t) => ({
        vm: t.vm,
        sent: t.sent,
        ok: t.ok,
        errors: t.errors,
        timeouts: t.timeouts,
        dropped: t.dropped,
        p99Ms: t.p99Ms,
      })),
      lagP99WallMs: Math.round(lag.sample().p99Ms),
    },
    'progress',
  );
}

if (import.meta.main) {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      // Only start-up failures land here (e.g. the bus refused the connection).
      process.stderr.write(`client-gen: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
