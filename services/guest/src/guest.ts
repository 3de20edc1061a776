import type {
  AppKind,
  Clock,
  Logger,
  Msg,
  NatsConnection,
  Namespace,
  Subscription,
  GuestStatus,
  Rng,
  StressKind,
} from '@vmsim/shared';
import {
  ErrorCode,
  createRng,
  GuestControl,
  LagMonitor,
  VnicRx,
  decode,
  encode,
  errorReply,
  guestControlSubject,
  guestStatusSubject,
  heartbeatSubject,
  toVmsimError,
  vnicRxSubject,
  vnicTxSubject,
} from '@vmsim/shared';
import {
  OS_IMAGE_BYTES,
  OS_IMAGE_OFFSET,
  MIN_DISK_BYTES,
  SUPERBLOCK_OFFSET,
  isFormatted,
  superblock,
} from './disk-layout.ts';
import type { HypercallClient } from './hypercalls.ts';
import type { OsProfile } from './os-profiles.ts';
import type { ServerApp } from './app.ts';
import { Stressor } from './stressors.ts';

export interface GuestSpec {
  app: AppKind;
  os: OsProfile['name'];
  vcpus: number;
  memoryMiB: number;
  disks: { index: number; sizeBytes: number }[];
  heartbeatMs: number;
}

export interface GuestDeps {
  nc: NatsConnection;
  ns: Namespace;
  vm: string;
  spec: GuestSpec;
  os: OsProfile;
  machine: HypercallClient;
  app: ServerApp;
  clock: Clock;
  logger: Logger;
  /** Called when the guest has powered itself off (ACPI shutdown). */
  onPowerOff: (reason: string) => void;
}

/** The guest's read size while booting: what a kernel's readahead asks for. */
const BOOT_READ = 256 * 1024;
/** MiB of its working set the booting guest touches per mem.alloc hypercall. */
const BOOT_TOUCH_MIB = 64;

/**
 * One VM's software: the OS boots through its stages, then the server application takes
 * requests from the vNIC. Every CPU burst and disk access is a hypercall.
 */
export class Guest {
  private readonly d: GuestDeps;
  private readonly app: ServerApp;
  private readonly subs: Subscription[] = [];
  private readonly lag = new LagMonitor();
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private seq = 0;
  private served = 0;
  private inFlight = 0;
  private accepting = false;
  private readonly startedAt: number;
  /** The stressor running now, or the last one (its figures stay in the heartbeat). */
  private stressor: Stressor | undefined;
  private readonly stressRng: Rng;

  private constructor(deps: GuestDeps) {
    this.d = deps;
    this.app = deps.app;
    this.startedAt = performance.now();
    this.stressRng = createRng(`stress/${deps.vm}`);
  }

  static create(deps: GuestDeps): Guest {
    return new Guest(deps);
  }

  private status(s: Omit<GuestStatus, 'pid'>): void {
    this.d.nc.publish(guestStatusSubject(this.d.ns, this.d.vm), encode({ ...s, pid: process.pid }));
  }

  /** Boots the OS, installs the application on first boot, and starts serving. */
  async boot(): Promise<void> {
    const { os, spec, machine, clock, logger } = this.d;
    const t0 = clock.now();
    this.startHeartbeat();
    const needMiB = os.footprintMiB + this.app.footprintMiB;
    if (needMiB > spec.memoryMiB) {
      throw new Error(
        `out of memory: ${os.name} and the ${spec.app} server need ${needMiB} MiB, the VM has ${spec.memoryMiB} MiB`,
      );
    }
    const disk = spec.disks[0];
    if (!disk || disk.sizeBytes < MIN_DISK_BYTES)
      throw new Error(`no bootable disk of at least ${MIN_DISK_BYTES} bytes`);
    let imagePos = 0;
    for (const [i, stage] of os.bootStages.entries()) {
      this.status({
        phase: 'booting',
        stage: stage.name,
        progress: i / os.bootStages.length,
        reason: `boot stage ${stage.name}`,
      });
      for (let left = stage.readBytes; left > 0; left -= BOOT_READ) {
        await machine.read(disk.index, OS_IMAGE_OFFSET + (imagePos % OS_IMAGE_BYTES), Math.min(BOOT_READ, left));
        imagePos += BOOT_READ;
      }
      await machine.cpu(stage.cycles);
      logger.debug({ stage: stage.name, simMs: clock.now() - t0 }, 'boot stage done');
    }
    // The booted kernel and the server touch their working set, a piece at a time as a kernel
    // faults pages in: the host backs it (swapping if it must) or OOM-kills us past our limit.
    for (let left = needMiB; left > 0; left -= BOOT_TOUCH_MIB) await machine.memAlloc(Math.min(BOOT_TOUCH_MIB, left));
    const sb = await machine.read(disk.index, SUPERBLOCK_OFFSET, 4096);
    const fresh = !isFormatted(sb, spec.app);
    this.status({
      phase: 'booting',
      stage: fresh ? 'install' : 'app-start',
      progress: 0.95,
      reason: fresh ? `first boot: installing the ${spec.app} server` : `starting the ${spec.app} server`,
    });
    await this.app.start(fresh);
    if (fresh) {
      // The superblock goes last: an install cut short is redone on the next boot.
      await machine.write(disk.index, SUPERBLOCK_OFFSET, superblock(spec.app));
      await machine.flush(disk.index);
      logger.info('application installed on the virtual disk');
    }
    await this.startServing();
    const bootMs = clock.now() - t0;
    this.status({
      phase: 'ready',
      progress: 1,
      reason: `booted ${os.name} and started ${spec.app} in ${bootMs.toFixed(0)} simulated ms`,
      bootMs,
    });
    logger.info({ bootMs, hypercalls: machine.calls }, 'guest ready');
  }

  private async startServing(): Promise<void> {
    const { nc, ns, vm } = this.d;
    this.accepting = true;
    this.subs.push(nc.subscribe(vnicRxSubject(ns, vm), { callback: (_e, m) => this.onFrame(m) }));
    this.subs.push(nc.subscribe(guestControlSubject(ns, vm), { callback: (_e, m) => this.onControl(m) }));
    await nc.flush();
  }

  private onFrame(m: Msg): void {
    if (!this.accepting) return;
    let rx: VnicRx;
    try {
      rx = decode(m.data, VnicRx, 'vNIC frame');
    } catch (e) {
      this.d.logger.warn({ err: (e as Error).message }, 'dropped a bad frame');
      return;
    }
    this.inFlight++;
    const reply = (res: unknown): void => {
      this.inFlight--;
      this.served++;
      this.d.nc.publish(vnicTxSubject(this.d.ns, this.d.vm), encode({ cid: rx.cid, res }));
    };
    this.app.handle(rx.req).then(reply, (e: unknown) => {
      const ve = toVmsimError(e);
      this.d.logger.warn({ code: ve.code, err: ve.message }, 'request failed');
      reply(errorReply(ve.code === ErrorCode.INTERNAL ? ErrorCode.IO : ve.code, ve.message));
    });
  }

  private onControl(m: Msg): void {
    try {
      const ctl = decode(m.data, GuestControl, 'control message');
      if (ctl.cmd === 'shutdown') void this.shutdown(ctl.reason);
      else if (ctl.cmd === 'stress') this.startStress(ctl.kind, ctl.durationMs);
      else void this.stressor?.stop('stop requested');
    } catch (e) {
      this.d.logger.warn({ err: (e as Error).message }, 'bad control message');
    }
  }

  /** One stressor at a time: a new one replaces the one running. */
  private startStress(kind: StressKind, durationMs: number | undefined): void {
    if (!this.accepting) return;
    const { machine, clock, logger, spec } = this.d;
    void this.stressor?.stop(`replaced by the ${kind} stressor`);
    this.stressor = Stressor.start(
      kind,
      {
        machine,
        clock,
        logger,
        rng: this.stressRng,
        target: { vcpus: spec.vcpus, memoryMiB: spec.memoryMiB, disk: spec.disks[0]! },
      },
      durationMs,
    );
  }

  private startHeartbeat(): void {
    const beat = (): void => {
      this.d.nc.publish(
        heartbeatSubject(this.d.ns, this.d.vm),
        encode({
          seq: this.seq++,
          pid: process.pid,
          uptimeMs: performance.now() - this.startedAt,
          lagMs: this.lag.sample().p99Ms,
          served: this.served,
          inFlight: this.inFlight,
          app: { ...this.app.figures(), ...this.stressor?.figures() },
        }),
      );
    };
    beat();
    this.heartbeatTimer = setInterval(beat, this.d.spec.heartbeatMs);
  }

  /** ACPI shutdown: stop taking requests, finish what is in flight, flush the disk, power off. */
  async shutdown(reason: string): Promise<void> {
    if (!this.accepting) return;
    this.accepting = false;
    // Its processes die with the OS: no need to wait for them.
    void this.stressor?.stop('the guest is shutting down');
    this.status({ phase: 'stopping', reason });
    const deadline = Date.now() + 5_000;
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    try {
      await this.app.stop();
      await this.d.machine.flush(0);
    } catch (e) {
      this.d.logger.warn({ err: (e as Error).message }, 'flush at shutdown failed');
    }
    this.d.onPowerOff(reason);
  }

  stop(): void {
    void this.stressor?.stop('the guest is stopping');
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    for (const s of this.subs.splice(0)) s.unsubscribe();
    this.lag.stop();
  }
}
