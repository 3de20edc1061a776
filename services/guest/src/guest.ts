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
  GuestFaultKind,
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
  hypercallSubject,
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
import { GuestFaults } from './faults.ts';

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
  /** Ends the process with a failure (an injected crash or a panic): exits non-zero. */
  onCrash?: (reason: string) => void;
  /** Opens a new bus connection like the first (after an injected disconnect). */
  reconnect?: () => Promise<NatsConnection>;
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
  /** Client requests taken from the vNIC and not answered yet. */
  private readonly requests = new Set<VnicRx>();
  private accepting = false;
  private readonly startedAt: number;
  /** The stressor running now, or the last one (its figures stay in the heartbeat). */
  private stressor: Stressor | undefined;
  private readonly stressRng: Rng;
  /** Injected faults acted out over time (leak, garbage). */
  private readonly faults: GuestFaults;

  private constructor(deps: GuestDeps) {
    this.d = deps;
    this.app = deps.app;
    this.startedAt = performance.now();
    this.stressRng = createRng(`stress/${deps.vm}`);
    const { ns, vm } = deps;
    this.faults = new GuestFaults({
      machine: deps.machine,
      clock: deps.clock,
      logger: deps.logger,
      rng: createRng(`faults/${vm}`),
      publish: (subject, data) => this.d.nc.publish(subject, data),
      subjects: [hypercallSubject(ns, vm), heartbeatSubject(ns, vm), guestStatusSubject(ns, vm), vnicTxSubject(ns, vm)],
      panic: (reason) => void this.crash(reason),
    });
  }

  /** The bus connection in use now (a new one after an injected disconnect). */
  get connection(): NatsConnection {
    return this.d.nc;
  }

  static create(deps: GuestDeps): Guest {
    return new Guest(deps);
  }

  private status(s: Omit<GuestStatus, 'pid'>): void {
    if (this.d.nc.isClosed()) return;
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
    this.requests.add(rx);
    const reply = (res: unknown): void => {
      this.requests.delete(rx);
      this.served++;
      // The bus may be gone (an injected disconnect): the client's connection times out.
      if (!this.d.nc.isClosed()) this.d.nc.publish(vnicTxSubject(this.d.ns, this.d.vm), encode({ cid: rx.cid, res }));
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
      else if (ctl.cmd === 'fault') this.startFault(ctl.kind, ctl.durationMs);
      else if (ctl.cmd === 'fault-stop') this.faults.stop('stop requested');
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

  /** Acts out an injected fault (see FAULT_KINDS). */
  private startFault(kind: GuestFaultKind, durationMs: number | undefined): void {
    const { logger, clock } = this.d;
    switch (kind) {
      case 'crash':
        void this.crash('fault injected: crash (the guest kernel panics)');
        return;
      case 'hang':
        logger.warn({ durationMs }, 'fault: hang (the event loop blocks)');
        // After this handler returns, so the control message counts as handled.
        setImmediate(() => {
          const end = durationMs === undefined ? Infinity : clock.now() + durationMs;
          // The thread blocks: no timer, heartbeat or message runs until it ends (or the
          // process is killed). Atomics.wait rather than a spin: the real core stays free, so
          // the neighbours' wall-time figures show the simulation, not this process burning it.
          const cell = new Int32Array(new SharedArrayBuffer(4));
          while (clock.now() < end) Atomics.wait(cell, 0, 0, 20);
          logger.warn({ durationMs }, 'fault: hang over');
        });
        return;
      case 'disconnect':
        void this.disconnect(durationMs);
        return;
      case 'leak':
      case 'garbage':
        this.faults.start(kind, durationMs);
        return;
    }
  }

  /** Reports the failure to the hypervisor, then ends the process non-zero. */
  private async crash(reason: string): Promise<void> {
    this.d.logger.error({ reason }, 'guest crash');
    this.accepting = false;
    try {
      this.status({ phase: 'failed', reason });
      await this.d.nc.flush();
    } catch {
      // The bus is gone: the exit code alone says it.
    }
    (this.d.onCrash ?? (() => process.exit(70)))(reason);
  }

  /** Closes the bus connection; with a duration, opens a new one afterwards and serves again. */
  private async disconnect(durationMs: number | undefined): Promise<void> {
    const { logger, clock } = this.d;
    logger.warn({ durationMs }, 'fault: dropping the bus connection');
    this.faults.stop('the bus connection is dropped');
    for (const s of this.subs.splice(0)) s.unsubscribe();
    await this.d.nc.close().catch(() => undefined);
    if (durationMs === undefined || !this.d.reconnect) return;
    await new Promise<void>((r) => clock.at(clock.now() + durationMs, r));
    try {
      const nc = await this.d.reconnect();
      this.d.nc = nc;
      this.d.machine.setConnection(nc);
      await this.startServing();
      logger.warn({ durationMs }, 'fault: disconnect over, reconnected with a new connection');
    } catch (e) {
      void this.crash(`could not reconnect to the bus: ${(e as Error).message}`);
    }
  }

  private startHeartbeat(): void {
    const beat = (): void => {
      // Disconnected (an injected fault): the silence is the point.
      if (this.d.nc.isClosed()) return;
      this.d.nc.publish(
        heartbeatSubject(this.d.ns, this.d.vm),
        encode({
          seq: this.seq++,
          pid: process.pid,
          uptimeMs: performance.now() - this.startedAt,
          lagMs: this.lag.sample().p99Ms,
          served: this.served,
          inFlight: this.requests.size,
          pending: { hypercalls: this.d.machine.pending, requests: this.requests.size },
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
    while (this.requests.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
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
    this.faults.stop('the guest is stopping');
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    for (const s of this.subs.splice(0)) s.unsubscribe();
    this.lag.stop();
  }
}
