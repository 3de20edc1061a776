#!/usr/bin/env node
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
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
import { HostAgent } from './agent.ts';
import { BlockStore } from './devices/block-store.ts';
import { Hardware } from './hardware.ts';
import { loadProfile } from './profiles.ts';

const Env = BaseEnv.extend({
  VMSIM_PROFILE: z.string().default('small'),
  VMSIM_DATA_DIR: z.string().default('.vmsim/data'),
  VMSIM_DISK_FSYNC: z.enum(['true', 'false']).default('false'),
});

async function main(): Promise<void> {
  const cfg = loadConfig(Env);
  const logger = createLogger({ svc: 'host-agent', host: cfg.VMSIM_HOST, level: cfg.LOG_LEVEL });
  const life = Lifecycle.create(logger);
  life.installSignalHandlers();
  const profile = loadProfile(cfg.VMSIM_PROFILE);
  const clock = new RealClock(cfg.VMSIM_TIME_SCALE);
  const dataDir = path.resolve(cfg.VMSIM_DATA_DIR, cfg.VMSIM_HOST);
  fs.mkdirSync(dataDir, { recursive: true });
  const stores = new Map<string, BlockStore>();
  for (const d of profile.disks) {
    stores.set(
      d.id,
      BlockStore.open(path.join(dataDir, `${d.id}.img`), Math.floor(d.capacityGiB * 1024 ** 3), {
        cacheBytes: d.writeCacheMiB * 1024 * 1024,
        fsync: cfg.VMSIM_DISK_FSYNC === 'true',
      }),
    );
  }
  life.onStop('close disks', () => {
    // A clean shutdown flushes the write caches, as an OS does before power-off.
    return Promise.all([...stores.values()].map((s) => s.flush())).then(() => stores.forEach((s) => s.close()));
  });
  const hardware = new Hardware(profile, clock);
  let afterReconnect = (): void => undefined;
  const nc = await connectBus({
    url: cfg.NATS_URL,
    name: `host-agent-${cfg.VMSIM_HOST}`,
    logger,
    waitOnFirstConnect: true,
    events: { ns: namespace(cfg.VMSIM_NS), host: cfg.VMSIM_HOST, svc: 'host-agent' },
    // Completions and work sent while we were away are lost: the hypervisor must hear we are back.
    onReconnect: () => afterReconnect(),
    auth: busAuthFromEnv(cfg),
  });
  life.onStop('drain bus', () => nc.drain());
  const bootId = randomUUID();
  const agent = HostAgent.create({
    nc,
    ns: namespace(cfg.VMSIM_NS),
    host: cfg.VMSIM_HOST,
    hardware,
    stores,
    clock,
    logger,
    bootId,
    timeScale: cfg.VMSIM_TIME_SCALE,
  });
  life.onStop('stop intake', () => agent.stop());
  await agent.start();
  afterReconnect = () => agent.hello('reconnect');
  logger.info(
    {
      profile: profile.name,
      cores: hardware.cpu.capacity,
      memoryGiB: profile.memoryGiB,
      disks: profile.disks.map((d) => d.id),
      dataDir,
      bootId,
      timeScale: cfg.VMSIM_TIME_SCALE,
    },
    'host-agent ready',
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`host-agent: ${(e as Error).message}\n`);
  process.exit(1);
});
