import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { randomUUID } from 'node:crypto';
import type {
  Clock,
  HardwareProfile,
  HostInfo,
  Logger,
  Msg,
  NatsConnection,
  Namespace,
  Subscription,
  VmDefinition,
  VmInfo,
  MgmtOp,
  ResourceLimits,
  StressKind,
  TimerHandle,
  FaultSpec,
  WatchdogConfig,
  FaultEventInfo,
} from '@vmsim/shared';
import {
  ErrorCode,
  GuestStatus,
  Heartbeat,
  HwDoneBatch,
  HwDoneItem,
  HostHello,
  HostAgentStats,
  Hypercall,
  IngressRequest,
  Inventory,
  LagMonitor,
  MemReply,
  MgmtRequests,
  VmsimError,
  VnicTx,
  anyGuestStatusSubject,
  anyHeartbeatSubject,
  anyHypercallSubject,
  anySwapDoneSubject,
  createRng,
  anyIngressSubject,
  anyVnicTxSubject,
  call,
  decode,
  decodeRaw,
  encode,
  errorReply,
  guestControlSubject,
  isGuestReplySubject,
  hardwareSubjects,
  ingressVmName,
  mgmtSubject,
  serve,
  toVmsimError,
  vmEventSubject,
  vmIdOf,
  vnicRxSubject,
  hostWorkSubject,
  serviceEventSubject,
  waitFor,
} from '@vmsim/shared';
import { admitCpuReservation, admitMemory, checkReservation, committableMiB, hostCpuPct } from './admission.ts';
import { ConnectionTable } from './connections.ts';
import { HOST_FLOW, HOST_FLOW_WEIGHT, HostWork, OVERHEADS } from './host-os.ts';
import { HostDevices } from './devices.ts';
import { GuestMemory } from './memory-adapter.ts';
import {
  DefinitionStore,
  diskBytes,
  newRecord,
  opFigures,
  toInfo,
  type PersistedVm,
  type VmRecord,
} from './registry.ts';
import { AdoptedProcess, decideAdoption, isGuestProcess, probeProcess } from './adoption.ts';
import { Chaos } from './faults.ts';
import type { Policy } from './scheduler.ts';
import { ACTIVE_STATES, nextState, type VmCommand } from './vm-state.ts';
import { Volumes, type VolumeIo } from './volumes.ts';

export const HYPERVISOR_TYPES = ['type1', 'type2'] as const;
export type HypervisorType = (typeof HYPERVISOR_TYPES)[number];

export interface HypervisorConfig {
  type: HypervisorType;
  policy: Policy;
  overcommit: number;
  reservedMiB: number;
  timeScale: number;
  dataDir: string;
  /** The built guest entry point that each VM's process runs. */
  guestEntry: string;
  /** Node flags for guest processes (a small young generation keeps an idle guest small). */
  guestNodeArgs: string[];
  natsUrl: string;
  /** Mints (or finds) a VM's own bus user, confined to its subjects; none: guests connect without credentials. */
  guestCredentials?: ((vm: string) => Promise<{ jwt: string; seed: string }>) | undefined;
  logLevel: string;
  heartbeatMs: number;
  watchdogMs: number;
  bootTimeoutMs: number;
  shutdownTimeoutMs: number;
  /** How long a client connection may wait for its guest's answer, simulated ms. */
  connectionTimeoutMs: number;
  hostAgentWaitMs: number;
  /**
   * Crash-consistency testing: a file that may name a storage point (`snapshot:before-save`,
   * `save:before-rename`, …); when the storage reaches it, the file is removed and the
   * hypervisor kills itself (SIGKILL), as a power cut of the VMM would. Absent: never.
   */
  crashPointFile?: string | undefined;
}

export interface HypervisorDeps {
  nc: NatsConnection;
  ns: Namespace;
  host: string;
  clock: Clock;
  logger: Logger;
  config: HypervisorConfig;
}

/**
 * The VMM of one host: VM registry and lifecycle, one guest process per running VM,
 * every hypercall scheduled onto the host's devices, and the virtual switch.
 */
export class Hypervisor {
  private readonly d: HypervisorDeps;
  private readonly cfg: HypervisorConfig;
  private readonly vms = new Map<string, VmRecord>();
  private readonly subs: Subscription[] = [];
  private readonly lag = new LagMonitor();
  private readonly store: DefinitionStore;
  private profile!: HardwareProfile;
  private hostAgentBootId = '';
  private devices!: HostDevices;
  /** Storage pools and every VM's virtual disk. */
  private volumes!: Volumes;
  private connections!: ConnectionTable;
  /** Guest RAM: limits, OOM kills, balloon and swap. */
  private memory!: GuestMemory;
  private timers: NodeJS.Timeout[] = [];
  private readonly hostWork: HostWork;
  private stopping = false;
  /** Who wrote the definitions file (a restarted hypervisor finds its predecessor's guests by it). */
  private readonly self = { pid: process.pid, startedAt: Date.now() };
  /** Re-adopted guests not heard from yet under this hypervisor. */
  private readonly unconfirmed = new Set<string>();
  /** VMs this hypervisor's own shutdown powers off: the next one starts them again. */
  private readonly resumeNext = new Set<string>();
  /** Since when our bus connection is down (wall ms): no heartbeat can reach us meanwhile. */
  private busDownSince: number | null = null;
  /** When a stressor started for a fixed time ends, per VM (simulated time). */
  private readonly stressTimers = new Map<string, TimerHandle>();
  /** Fault injection, the per-VM watchdog and `degraded` detection. */
  private readonly chaos: Chaos;

  private constructor(deps: HypervisorDeps) {
    this.d = deps;
    this.cfg = deps.config;
    this.chaos = new Chaos({
      clock: deps.clock,
      logger: deps.logger,
      heartbeatMs: deps.config.heartbeatMs,
      event: (rec, kind, reason, extra) => this.chaosEvent(rec, kind, reason, extra),
      guestControl: (name, ctl) => this.d.nc.publish(guestControlSubject(this.d.ns, name), encode(ctl)),
      stress: (name, kind, durationMs) => void this.stressVm({ name, kind, durationMs }),
      unstress: (name) => void this.unstressVm(name),
      powerOff: (rec, cmd, reason) => this.powerOff(rec, cmd, reason),
      pause: (rec, reason) => this.freeze(rec, reason),
    });
    this.store = new DefinitionStore(deps.config.dataDir);
    this.hostWork = new HostWork({ ...OVERHEADS[deps.config.type], reservedMiB: deps.config.reservedMiB });
  }

  static create(deps: HypervisorDeps): Hypervisor {
    return new Hypervisor(deps);
  }

  private get log(): Logger {
    return this.d.logger;
  }

  /** Finds the host-agent, restores VM definitions, then serves guests, clients and the API. */
  async start(): Promise<void> {
    const { nc, ns, host } = this.d;
    const inv = await this.waitForHostAgent();
    this.profile = inv.profile;
    this.hostAgentBootId = inv.bootId;
    this.devices = new HostDevices({
      nc,
      ns,
      host,
      clock: this.d.clock,
      policy: this.cfg.policy,
      profile: inv.profile,
      logger: this.log,
      events: {
        dispatched: (vm, kind, waitMs) => {
          const rec = this.vms.get(vm);
          if (!rec) return;
          if (kind === 'net.rx' || kind === 'net.tx') rec.net.waitMs += waitMs;
          else opFigures(rec, kind).waitMs += waitMs;
          // Hypercalls only: the switch's frames to and from clients are not the guest's calls.
          if (kind !== 'net.rx' && kind !== 'net.tx') {
            rec.chaos.heldMs += waitMs;
            rec.chaos.dispatched++;
          }
        },
        failed: (vm, kind) => {
          const rec = this.vms.get(vm);
          if (rec) opFigures(rec, kind).errors++;
        },
      },
    });
    this.connections = new ConnectionTable(this.d.clock, { timeoutMs: this.cfg.connectionTimeoutMs, maxOpen: 100_000 });
    const persisted = this.store.loadAll();
    const hostMiB = inv.profile.memoryGiB * 1024;
    this.volumes = Volumes.open(
      {
        nc,
        ns,
        host,
        clock: this.d.clock,
        logger: this.log,
        devices: this.devices,
        profile: inv.profile,
        dataDir: this.cfg.dataDir,
        // Sized for the overcommitted part of RAM, 1 GiB at least.
        swapBytes: Math.max(1024, Math.ceil(hostMiB * (this.cfg.overcommit - 1))) * 1024 * 1024,
        events: {
          stalled: (vm, reason) => this.onDiskStalled(vm, reason),
          unstalled: (vm, reason) => this.onDiskUnstalled(vm, reason),
        },
        isActive: (vm) => {
          const r = this.vms.get(vm);
          return r !== undefined && ACTIVE_STATES.includes(r.state);
        },
        crashPoint: (point) => {
          const file = this.cfg.crashPointFile;
          if (!file || !fs.existsSync(file) || fs.readFileSync(file, 'utf8').trim() !== point) return;
          fs.rmSync(file, { force: true });
          this.log.fatal({ point }, `crash point ${point} reached: killing the hypervisor`);
          process.kill(process.pid, 'SIGKILL');
        },
        backingBytes: async () => {
          try {
            const st = await call(nc, hardwareSubjects.stats(ns, host), {}, HostAgentStats, 2000);
            return new Map((st.disks ?? []).map((d) => [d.id, d.backingBytes]));
          } catch {
            return null;
          }
        },
      },
      persisted.vms
        .filter((p) => p.volume === undefined && p.extents.length > 0)
        .map((p) => ({ vm: p.def.name, sizeBytes: diskBytes(p.def), extents: p.extents })),
    );
    for (const p of persisted.vms) {
      const volume = p.volume ?? p.def.name;
      const rec = newRecord(p.def, p.uuid, p.definedAt, volume, p.ownsVolume ?? true);
      rec.reason = 'definition loaded at hypervisor start';
      if (!this.volumes.model.volumes.has(volume)) {
        rec.reason = `its disk volume ${volume} is missing from the storage metadata`;
        this.log.error({ vm: p.def.name, volume }, rec.reason);
      } else this.volumes.attach(volume, p.def.name);
      this.vms.set(p.def.name, rec);
    }
    this.volumes.start();
    this.memory = new GuestMemory({
      nc,
      ns,
      host,
      logger: this.log,
      rng: createRng(`${host}/memory`),
      devices: this.devices,
      profile: inv.profile,
      swapArea: this.volumes.swap,
      reservedMiB: this.cfg.reservedMiB,
      overcommit: this.cfg.overcommit,
      policy: this.cfg.policy,
      chainTimeoutMs: Math.max(60_000, this.cfg.connectionTimeoutMs * 2),
      records: () => this.vms.values(),
      record: (name) => this.vms.get(name),
      kill: (rec, reason) => this.powerOff(rec, 'crash', reason),
      noteIo: (n) => this.hostWork.noteIo(n),
    });
    this.memory.refresh();

    const sub = (subject: string, fn: (m: Msg) => void) =>
      this.subs.push(
        nc.subscribe(subject, {
          callback: (err, m) => {
            if (err) return this.log.error({ err, subject }, 'subscription error');
            try {
              fn(m);
            } catch (e) {
              this.log.error({ err: e, subject: m.subject }, 'handler failed');
            }
          },
        }),
      );
    sub(anyHypercallSubject(ns), (m) => this.onHypercall(m));
    sub(anySwapDoneSubject(ns, host), (m) => this.memory.onSwapDone(m));
    sub(hardwareSubjects.done(ns, host), (m) => this.onDone(m));
    sub(anyHeartbeatSubject(ns), (m) => this.onHeartbeat(m));
    sub(anyGuestStatusSubject(ns), (m) => this.onGuestStatus(m));
    sub(anyIngressSubject(ns, host), (m) => this.onIngress(m));
    sub(anyVnicTxSubject(ns), (m) => this.onVnicTx(m));
    sub(hardwareSubjects.hello(ns, host), (m) => this.onHostHello(m));
    // Before the API answers: a client sees every VM as it really is.
    this.adoptGuests(persisted.vms, persisted.hypervisor);
    this.serveApi();

    this.timers.push(setInterval(() => this.watchdog(), Math.max(100, Math.min(500, this.cfg.heartbeatMs / 2))));
    this.timers.push(setInterval(() => this.expireConnections(), 500));
    // Health intervals: long enough to hold a few hypercalls of a lightly loaded VM.
    this.timers.push(
      setInterval(() => {
        for (const rec of this.vms.values()) this.chaos.sampleHealth(rec);
      }, 500),
    );
    // The host side's work is kernel and VMM work: it preempts guests rather than take turns.
    this.devices.cpu.configureVm(HOST_FLOW, { weight: HOST_FLOW_WEIGHT });
    this.timers.push(
      setInterval(() => this.runHostTasks(), this.hostWork.params.hostTaskPeriodMs * this.cfg.timeScale),
    );
    this.timers.push(
      setInterval(() => this.devices.releaseStale(Math.max(60_000, this.cfg.connectionTimeoutMs * 2)), 5_000),
    );
    for (const t of this.timers) t.unref();
    await nc.flush();
    this.publishServiceEvent('ready', `serving ${this.vms.size} defined VMs`);
    this.log.info(
      {
        type: this.cfg.type,
        policy: this.cfg.policy,
        vms: this.vms.size,
        profile: inv.profile.name,
        timeScale: this.cfg.timeScale,
      },
      'hypervisor ready',
    );
  }

  /** Stops intake, powers off every guest, and lets the caller drain the connection. */
  async stop(reason: string): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    for (const rec of this.vms.values()) clearTimeout(rec.restartTimer);
    for (const t of this.stressTimers.values()) this.d.clock.cancel(t);
    this.stressTimers.clear();
    for (const rec of this.vms.values()) if (rec.chaos.faultTimer) this.d.clock.cancel(rec.chaos.faultTimer);
    for (const s of this.subs.splice(0)) s.unsubscribe();
    this.memory?.stop();
    this.volumes?.stop();
    const exits: Promise<void>[] = [];
    const poweredOff: string[] = [];
    for (const rec of this.vms.values()) {
      if (rec.proc) {
        const proc = rec.proc;
        exits.push(new Promise<void>((r) => proc.once('exit', () => r())));
        poweredOff.push(rec.def.name);
        if (rec.state !== 'stopping') this.resumeNext.add(rec.def.name);
        this.powerOff(rec, 'destroy', `hypervisor stopping: ${reason}`);
      }
    }
    await Promise.all(exits);
    // Give their memory back while the bus is still up (it drains after this step).
    await Promise.allSettled(
      poweredOff.map((owner) =>
        call(this.d.nc, hardwareSubjects.memFree(this.d.ns, this.d.host), { owner }, MemReply, 2000),
      ),
    );
    this.lag.stop();
  }

  private async waitForHostAgent(): Promise<Inventory> {
    const { nc, ns, host } = this.d;
    let inv: Inventory | undefined;
    let lastError = '';
    await waitFor(
      async () => {
        try {
          inv = await call(nc, hardwareSubjects.inventory(ns, host), {}, Inventory, 1000);
          return true;
        } catch (e) {
          lastError = (e as Error).message;
          return false;
        }
      },
      this.cfg.hostAgentWaitMs,
      `the host-agent of ${host} (last error: ${lastError || 'none'})`,
      250,
    ).catch((e: unknown) => {
      throw new VmsimError(ErrorCode.HOST_UNAVAILABLE, `${(e as Error).message}; last error: ${lastError}`);
    });
    return inv!;
  }

  // ---------------------------------------------------------------- lifecycle

  private transition(rec: VmRecord, cmd: VmCommand, reason: string): void {
    const from = rec.state;
    const to = nextState(rec.def.name, from, cmd);
    rec.state = to;
    rec.reason = reason;
    this.log.info({ vm: rec.def.name, from, to, reason, pid: rec.pid }, `vm ${rec.def.name}: ${from} → ${to}`);
    this.d.nc.publish(
      vmEventSubject(this.d.ns, this.d.host, rec.def.name),
      encode({ t: Date.now(), host: this.d.host, vm: rec.def.name, from, to, reason, pid: rec.pid }),
    );
    // A stressor is a guest's process: it ends with the guest (a paused one keeps it, frozen).
    if (rec.stress !== null && to !== 'running' && to !== 'paused') this.endStress(rec, `the VM is ${to}`);
    // So is a fault: it was injected into that process.
    if (to !== 'running' && to !== 'paused' && to !== 'starting') this.chaos.onProcessEnd(rec, to);
    this.persist();
  }

  /** Definitions with every VM's run, so a restarted hypervisor finds its guests. */
  private persist(): void {
    try {
      this.store.save(this.vms.values(), this.self, this.resumeNext);
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'could not save the VM definitions');
    }
  }

  /**
   * What the previous hypervisor left: per VM, take back a guest that lives on (it is not our
   * child: its exit is polled), or mark one that died crashed and apply its crash policy.
   */
  private adoptGuests(vms: PersistedVm[], previous: { pid: number; startedAt: number } | undefined): void {
    if (previous && previous.pid !== process.pid) {
      const alive = probeProcess(previous.pid) !== 'gone';
      this.log.info({ previousPid: previous.pid, alive }, 'taking over from the previous hypervisor');
    }
    const counts: Record<string, number> = {};
    for (const p of vms) {
      const rec = this.vms.get(p.def.name);
      if (!rec) continue;
      const name = rec.def.name;
      const run = p.run;
      const pid = run?.pid ?? null;
      const probe =
        pid === null ? undefined : { proc: probeProcess(pid), isGuest: isGuestProcess(pid, this.d.ns, name) };
      const d = decideAdoption(run, probe);
      counts[d.kind] = (counts[d.kind] ?? 0) + 1;
      if (run) {
        rec.restarts = run.restarts;
        rec.startedAt = run.startedAt;
        rec.bootMs = run.bootMs;
      }
      if (d.kind === 'keep') {
        rec.state = d.state;
        rec.reason = d.reason;
        if (d.state === 'crashed') this.applyCrashPolicy(rec);
        continue;
      }
      if (d.kind === 'start') {
        rec.state = 'stopped';
        this.startVm(name, d.reason).catch((e: unknown) => {
          rec.reason = `start after the hypervisor restart failed: ${(e as Error).message}`;
          this.log.error({ vm: name, err: (e as Error).message }, rec.reason);
        });
        continue;
      }
      // It was active: the transition goes from the state it had.
      rec.state = run!.state;
      rec.pid = pid;
      if (d.kind === 'crashed' || d.kind === 'stopped') {
        this.transition(rec, d.kind === 'crashed' ? 'crash' : 'exited', d.reason);
        rec.pid = null;
        this.release(rec);
        if (d.kind === 'crashed') this.applyCrashPolicy(rec);
        continue;
      }
      rec.startedWallMs = Date.now();
      rec.lastHeartbeatWallMs = null;
      this.chaos.onStart(rec);
      this.devices.configureVm(name, rec.def);
      this.volumes.configure(rec.volume, rec.def);
      this.memory.register(rec);
      this.memory.restoreUsage(rec, run!.usedMiB);
      // The host-agent kept its allocation (or lost it, when it restarted too): claim it again.
      call(
        this.d.nc,
        hardwareSubjects.memAlloc(this.d.ns, this.d.host),
        { owner: name, mib: this.residentMiB(rec.def) },
        MemReply,
      ).catch((e: unknown) => this.log.warn({ vm: name, err: (e as Error).message }, 'could not re-claim memory'));
      const proc = new AdoptedProcess(pid!, Math.max(100, Math.min(500, this.cfg.heartbeatMs / 2)));
      rec.proc = proc as unknown as VmRecord['proc'];
      proc.once('exit', (code: number | null, signal: NodeJS.Signals | null) =>
        this.onGuestExit(rec, rec.proc!, code, signal),
      );
      if (d.kind === 'kill-crash') this.powerOff(rec, 'crash', d.reason);
      else if (d.kind === 'kill-stop') this.powerOff(rec, 'destroy', d.reason);
      else {
        // A guest frozen or thawed behind our back is put back in the state it was recorded in.
        if (d.state === 'paused' && probe?.proc === 'alive') proc.kill('SIGSTOP');
        if (d.state === 'running' && probe?.proc === 'stopped') proc.kill('SIGCONT');
        rec.state = d.state;
        rec.reason = d.reason;
        this.unconfirmed.add(name);
        this.log.info({ vm: name, pid, state: d.state }, `vm ${name}: ${d.reason}`);
        this.d.nc.publish(
          vmEventSubject(this.d.ns, this.d.host, name),
          encode({ t: Date.now(), host: this.d.host, vm: name, from: d.state, to: d.state, reason: d.reason, pid }),
        );
      }
    }
    this.persist();
    if (vms.length > 0) {
      const summary = Object.entries(counts)
        .map(([k, n]) => `${n} ${k}`)
        .join(', ');
      this.log.info({ counts }, `VMs found at start: ${summary}`);
      this.publishServiceEvent('adoption', `VMs found at start: ${summary}`);
    }
  }

  /** A VM event that is not a state change (fault, health, watchdog, stressor): logged and published with its reason. */
  private chaosEvent(
    rec: VmRecord,
    kind: 'fault' | 'health' | 'watchdog' | 'stress' | 'io-error',
    reason: string,
    extra: { fault?: FaultEventInfo; health?: 'degraded' | 'recovered'; stress?: StressKind | null } = {},
  ): void {
    const vm = rec.def.name;
    const log = kind === 'health' || kind === 'watchdog' ? this.log.warn.bind(this.log) : this.log.info.bind(this.log);
    log({ vm, kind, ...extra, reason }, `vm ${vm}: ${reason}`);
    this.d.nc.publish(
      vmEventSubject(this.d.ns, this.d.host, vm),
      encode({
        t: Date.now(),
        host: this.d.host,
        vm,
        from: rec.state,
        to: rec.state,
        reason,
        pid: rec.pid,
        kind,
        ...extra,
      }),
    );
  }

  /** Injects a fault into a running VM (see FAULT_KINDS). */
  faultVm(req: { name: string } & FaultSpec): VmInfo {
    const rec = this.get(req.name);
    const { name: _name, ...spec } = req;
    this.chaos.inject(rec, spec);
    return this.info(rec);
  }

  /** Clears a VM's fault now; a VM without one is left as it is. */
  unfaultVm(name: string): VmInfo {
    const rec = this.get(name);
    this.chaos.clear(rec, 'unfault requested');
    return this.info(rec);
  }

  /** A malformed or schema-invalid message from a guest: counted; logged now and then, not each time (a flood). */
  private badMessage(rec: VmRecord, what: string, err: string): void {
    const n = ++rec.chaos.badMessages;
    if (n === 1 || n % 1000 === 0) this.log.warn({ vm: rec.def.name, bad: n, err }, `bad ${what} (${n} so far)`);
  }

  /** A stressor started or stopped: an event naming the stressor that runs from now on. */
  private stressEvent(rec: VmRecord, reason: string): void {
    this.chaosEvent(rec, 'stress', reason, { stress: rec.stress });
  }

  /** Forgets a VM's stressor (the guest stops it itself, or died with it). */
  private endStress(rec: VmRecord, reason: string): void {
    const timer = this.stressTimers.get(rec.def.name);
    if (timer) this.d.clock.cancel(timer);
    this.stressTimers.delete(rec.def.name);
    const kind = rec.stress;
    if (kind === null) return;
    rec.stress = null;
    this.stressEvent(rec, `stressor ${kind} stopped: ${reason}`);
  }

  /** Starts one of the isolation benchmark's stressors in a running guest (replacing one that runs). */
  stressVm(req: { name: string; kind: StressKind; durationMs?: number | undefined }): VmInfo {
    const rec = this.get(req.name);
    const { name, kind, durationMs } = req;
    if (rec.state !== 'running') {
      throw new VmsimError(ErrorCode.BAD_STATE, `cannot stress VM ${name}: it is ${rec.state}, not running`);
    }
    this.d.nc.publish(
      guestControlSubject(this.d.ns, name),
      encode({ cmd: 'stress', kind, ...(durationMs !== undefined ? { durationMs } : {}) }),
    );
    const previous = rec.stress;
    const timer = this.stressTimers.get(name);
    if (timer) this.d.clock.cancel(timer);
    this.stressTimers.delete(name);
    rec.stress = kind;
    if (durationMs !== undefined) {
      // The guest times the same duration and stops itself; this only keeps the record true.
      const handle = this.d.clock.at(this.d.clock.now() + durationMs, () => {
        if (this.stressTimers.get(name) !== handle) return;
        this.stressTimers.delete(name);
        this.endStress(rec, `its ${durationMs} simulated ms elapsed`);
      });
      this.stressTimers.set(name, handle);
    }
    const span = durationMs !== undefined ? `for ${durationMs} simulated ms` : 'until unstressed';
    this.stressEvent(rec, `stressor ${kind} started ${span}${previous ? `, replacing ${previous}` : ''}`);
    return this.info(rec);
  }

  /** Stops a VM's stressor; a VM that runs none is left as it is. */
  unstressVm(name: string): VmInfo {
    const rec = this.get(name);
    if (rec.state === 'running' || rec.state === 'paused') {
      this.d.nc.publish(guestControlSubject(this.d.ns, name), encode({ cmd: 'stress-stop' }));
    }
    this.endStress(rec, 'unstress requested');
    return this.info(rec);
  }

  private publishServiceEvent(kind: string, reason: string): void {
    this.d.nc.publish(
      serviceEventSubject(this.d.ns, this.d.host, 'hypervisor'),
      encode({ t: Date.now(), host: this.d.host, svc: 'hypervisor', kind, reason }),
    );
  }

  private committedMiB(): number {
    let sum = 0;
    for (const r of this.vms.values()) if (ACTIVE_STATES.includes(r.state)) sum += r.def.memoryMiB;
    return sum;
  }

  private activeGuests(): number {
    let n = 0;
    for (const r of this.vms.values()) if (ACTIVE_STATES.includes(r.state)) n++;
    return n;
  }

  /**
   * Refuses a CPU reservation the host cannot keep: `def` is what the VM will run with,
   * `guests` how many guests run then (the host side's own work grows with them).
   */
  private admitCpu(def: VmDefinition, guests: number): void {
    if (!def.cpuReservationPct) return;
    let others = 0;
    for (const r of this.vms.values()) {
      if (r.def.name !== def.name && ACTIVE_STATES.includes(r.state)) others += r.def.cpuReservationPct ?? 0;
    }
    const { cpu } = this.profile;
    const plan = {
      cores: cpu.sockets * cpu.coresPerSocket,
      hostPct: hostCpuPct(this.hostWork.params, guests, cpu.mhz),
    };
    admitCpuReservation(plan, others, def.name, def.cpuReservationPct, def.vcpus);
  }

  private memoryPlan() {
    return {
      hostMiB: this.profile.memoryGiB * 1024,
      overcommit: this.cfg.overcommit,
      reservedMiB: this.cfg.reservedMiB,
    };
  }

  /** Physical RAM a VM takes on the host: with overcommit, pages are shared or ballooned away. */
  private residentMiB(def: VmDefinition): number {
    return Math.ceil(def.memoryMiB / Math.max(1, this.cfg.overcommit));
  }

  private get(name: string): VmRecord {
    const rec = this.vms.get(name);
    if (!rec) throw new VmsimError(ErrorCode.NO_SUCH_VM, `no VM named ${name} on ${this.d.host}`);
    return rec;
  }

  define(def: VmDefinition): VmInfo {
    if (this.vms.has(def.name)) throw new VmsimError(ErrorCode.VM_EXISTS, `a VM named ${def.name} is already defined`);
    if (def.cpuReservationPct) checkReservation(def.name, def.cpuReservationPct, def.vcpus);
    const { volume, owned } = this.volumes.createForVm(def, diskBytes(def));
    this.volumes.attach(volume, def.name);
    const rec = newRecord(def, randomUUID(), Date.now(), volume, owned);
    this.vms.set(def.name, rec);
    this.persist();
    this.log.info({ vm: def.name, def, volume, owned }, `vm ${def.name}: defined`);
    this.d.nc.publish(
      vmEventSubject(this.d.ns, this.d.host, def.name),
      encode({
        t: Date.now(),
        host: this.d.host,
        vm: def.name,
        from: null,
        to: 'defined',
        reason: 'defined',
        pid: null,
      }),
    );
    return this.info(rec);
  }

  undefine(name: string): { name: string } {
    const rec = this.get(name);
    if (ACTIVE_STATES.includes(rec.state)) {
      throw new VmsimError(ErrorCode.BAD_STATE, `cannot undefine VM ${name}: it is ${rec.state}; destroy it first`);
    }
    clearTimeout(rec.restartTimer);
    this.volumes.releaseForVm(rec.volume, rec.ownsVolume);
    this.vms.delete(name);
    this.persist();
    this.log.info({ vm: name }, `vm ${name}: undefined`);
    this.d.nc.publish(
      vmEventSubject(this.d.ns, this.d.host, name),
      encode({ t: Date.now(), host: this.d.host, vm: name, from: rec.state, to: null, reason: 'undefined', pid: null }),
    );
    return { name };
  }

  async startVm(name: string, reason = 'start requested'): Promise<VmInfo> {
    const rec = this.get(name);
    nextState(name, rec.state, 'start');
    admitMemory(this.memoryPlan(), this.committedMiB(), name, rec.def.memoryMiB);
    this.admitCpu(rec.def, this.activeGuests() + 1);
    const creds = await this.cfg.guestCredentials?.(name);
    await call(
      this.d.nc,
      hardwareSubjects.memAlloc(this.d.ns, this.d.host),
      { owner: name, mib: this.residentMiB(rec.def) },
      MemReply,
      5000,
    );
    // State may have moved while we waited for the host-agent.
    nextState(name, rec.state, 'start');
    rec.guestReason = undefined;
    rec.expectExit = false;
    rec.bootMs = null;
    rec.lastHeartbeatWallMs = null;
    rec.guestPending = null;
    rec.startedAt = Date.now();
    rec.startedWallMs = Date.now();
    this.devices.configureVm(name, rec.def);
    this.volumes.configure(rec.volume, rec.def);
    this.memory.register(rec);
    this.chaos.onStart(rec);
    this.transition(rec, 'start', reason);
    this.spawnGuest(rec, creds);
    return this.info(rec);
  }

  private spawnGuest(rec: VmRecord, creds: { jwt: string; seed: string } | undefined): void {
    const name = rec.def.name;
    const spec = {
      app: rec.def.app,
      os: rec.def.os,
      vcpus: rec.def.vcpus,
      memoryMiB: rec.def.memoryMiB,
      disks: [{ index: 0, sizeBytes: this.volumes.sizeOf(rec.volume) }],
      heartbeatMs: this.cfg.heartbeatMs,
      seed: rec.uuid,
      ackBeforeFlush: rec.def.ackBeforeFlush,
    };
    const proc = spawn(process.execPath, [...this.cfg.guestNodeArgs, this.cfg.guestEntry], {
      // A guest sees only what it needs: its bus, its identity and its hardware spec.
      env: {
        NATS_URL: this.cfg.natsUrl,
        VMSIM_NS: this.d.ns,
        VMSIM_HOST: this.d.host,
        VMSIM_VM: name,
        VMSIM_TIME_SCALE: String(this.cfg.timeScale),
        LOG_LEVEL: this.cfg.logLevel,
        VMSIM_GUEST_SPEC: JSON.stringify(spec),
        // Its own bus user, which can reach nothing but its own subjects.
        ...(creds ? { NATS_JWT: creds.jwt, NATS_SEED: creds.seed } : {}),
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    rec.proc = proc;
    rec.pid = proc.pid ?? null;
    this.persist();
    this.log.info({ vm: name, pid: rec.pid }, `vm ${name}: guest process spawned`);
    proc.once('error', (err) => {
      rec.guestReason = `guest process failed to start: ${err.message}`;
    });
    proc.once('exit', (code, signal) => this.onGuestExit(rec, proc, code, signal));
  }

  private onGuestExit(
    rec: VmRecord,
    proc: ReturnType<typeof spawn>,
    code: number | null,
    signal: NodeJS.Signals | null,
  ): void {
    if (rec.proc !== proc) return;
    // A re-adopted guest is not our child: nobody tells us how it ended.
    const how = signal
      ? `killed by ${signal}`
      : code === null
        ? `pid ${rec.pid} is gone (exit status unknown: a re-adopted guest)`
        : `exited with code ${code}`;
    rec.proc = undefined;
    if (rec.shutdownTimer) clearTimeout(rec.shutdownTimer);
    rec.shutdownTimer = undefined;
    if (rec.expectExit) {
      // The hypervisor powered it off: the state already says so.
      rec.pid = null;
      this.release(rec);
      return;
    }
    if (rec.state === 'stopping' && (code === 0 || (code === null && signal === null))) {
      this.transition(rec, 'exited', `guest shut down cleanly (${rec.reason})`);
    } else if (ACTIVE_STATES.includes(rec.state)) {
      const why = rec.guestReason ? `: ${rec.guestReason}` : '';
      this.transition(rec, 'crash', `guest process ${how}${why}`);
    }
    rec.pid = null;
    this.release(rec);
    if (rec.state === 'crashed') this.applyCrashPolicy(rec);
  }

  /** libvirt's on_crash: restart with exponential backoff (failed past the limit), destroy, or preserve. */
  private applyCrashPolicy(rec: VmRecord): void {
    const name = rec.def.name;
    const policy = rec.def.crashPolicy;
    if (policy === 'preserve') return;
    if (policy === 'destroy') {
      this.transition(rec, 'destroy', `crash policy destroy after: ${rec.reason}`);
      return;
    }
    const now = Date.now();
    rec.crashTimes = rec.crashTimes.filter((t) => now - t < rec.def.restartWindowMs);
    rec.crashTimes.push(now);
    if (rec.crashTimes.length > rec.def.maxRestarts) {
      this.transition(
        rec,
        'fail',
        `crashed ${rec.crashTimes.length} times within ${rec.def.restartWindowMs} ms (at most ${rec.def.maxRestarts} restarts): giving up`,
      );
      return;
    }
    const delayMs = Math.min(30_000, 500 * 2 ** (rec.crashTimes.length - 1));
    this.log.info(
      { vm: name, delayMs, attempt: rec.crashTimes.length },
      `vm ${name}: restart in ${delayMs} ms (crash policy)`,
    );
    clearTimeout(rec.restartTimer);
    rec.restartTimer = setTimeout(() => {
      rec.restartTimer = undefined;
      if (rec.state !== 'crashed' || this.stopping) return;
      rec.restarts++;
      this.startVm(name, `crash policy restart #${rec.restarts} after ${delayMs} ms backoff`).catch((e: unknown) => {
        this.log.error({ vm: name, err: (e as Error).message }, 'restart failed');
        rec.reason = `restart failed: ${(e as Error).message}`;
      });
    }, delayMs);
  }

  /** Gives back what an inactive VM held: memory, queued device work, client connections. */
  private release(rec: VmRecord): void {
    const name = rec.def.name;
    this.memory.remove(rec);
    this.volumes.dropStalled(name);
    const dropped = this.devices.dropVm(name);
    for (const c of this.connections.dropVm(name)) {
      this.d.nc.publish(
        c.replyTo,
        encode(errorReply(ErrorCode.VM_CRASHED, `VM ${name} is ${rec.state}: ${rec.reason}`)),
      );
    }
    if (dropped > 0) this.log.info({ vm: name, dropped }, 'dropped queued device requests');
    // While the hypervisor stops, stop() frees the memory itself before the bus drains.
    if (this.stopping) return;
    call(this.d.nc, hardwareSubjects.memFree(this.d.ns, this.d.host), { owner: name }, MemReply, 5000).catch(
      (e: unknown) => this.log.warn({ vm: name, err: (e as Error).message }, 'could not free memory on the host-agent'),
    );
  }

  /** Ends a guest process from the hypervisor's side (destroy, watchdog, forced shutdown). */
  private powerOff(rec: VmRecord, cmd: 'destroy' | 'crash', reason: string): void {
    clearTimeout(rec.restartTimer);
    rec.restartTimer = undefined;
    rec.expectExit = true;
    if (rec.proc && rec.proc.exitCode === null) rec.proc.kill('SIGKILL');
    this.transition(rec, cmd, reason);
    if (!rec.proc) this.release(rec);
    if (cmd === 'crash') this.applyCrashPolicy(rec);
  }

  shutdownVm(name: string, timeoutMs = this.cfg.shutdownTimeoutMs): VmInfo {
    const rec = this.get(name);
    if (rec.state === 'paused') rec.proc?.kill('SIGCONT');
    this.transition(rec, 'shutdown', 'shutdown requested');
    this.d.nc.publish(guestControlSubject(this.d.ns, name), encode({ cmd: 'shutdown', reason: 'shutdown requested' }));
    rec.shutdownTimer = setTimeout(() => {
      if (rec.state !== 'stopping') return;
      this.log.warn({ vm: name, timeoutMs }, 'guest did not shut down in time: forcing it off');
      rec.expectExit = true;
      rec.proc?.kill('SIGKILL');
      rec.state = 'stopping';
      this.transition(rec, 'destroy', `shutdown timed out after ${timeoutMs} ms: forced off`);
    }, timeoutMs);
    return this.info(rec);
  }

  destroyVm(name: string): VmInfo {
    const rec = this.get(name);
    this.powerOff(rec, 'destroy', 'destroy requested');
    return this.info(rec);
  }

  /** Changes a VM's shares and rate limits; a running VM's schedulers take them at once. */
  tuneVm(
    req: {
      name: string;
      shares?: number | undefined;
      memoryMiB?: number | undefined;
      watchdog?: WatchdogConfig | undefined;
    } & ResourceLimits,
  ): VmInfo {
    const rec = this.get(req.name);
    const { name: _name, ...changes } = req;
    const next: VmDefinition = { ...rec.def };
    for (const [k, v] of Object.entries(changes) as [keyof typeof changes, unknown][]) {
      if (v !== undefined) (next as Record<string, unknown>)[k] = v;
    }
    // A raised reservation must fit the host now; a stopped VM's is checked when it starts.
    if (next.cpuReservationPct) checkReservation(next.name, next.cpuReservationPct, next.vcpus);
    if (ACTIVE_STATES.includes(rec.state) && (next.cpuReservationPct ?? 0) > (rec.def.cpuReservationPct ?? 0)) {
      this.admitCpu(next, this.activeGuests());
    }
    // Memory hot-plug must fit what the host commits; shrinking below what the guest uses is refused.
    if (ACTIVE_STATES.includes(rec.state) && next.memoryMiB !== rec.def.memoryMiB) {
      if (next.memoryMiB > rec.def.memoryMiB) {
        admitMemory(this.memoryPlan(), this.committedMiB() - rec.def.memoryMiB, next.name, next.memoryMiB);
      }
      this.memory.resize(rec, next.memoryMiB);
    }
    rec.def = next;
    this.persist();
    if (ACTIVE_STATES.includes(rec.state)) {
      this.devices.configureVm(rec.def.name, rec.def);
      this.volumes.configure(rec.volume, rec.def);
    }
    this.log.info({ vm: rec.def.name, changes }, `vm ${rec.def.name}: tuned`);
    // A limit below what the guest uses kills it, as cgroup memory.max would.
    this.memory.applyLimit(rec);
    return this.info(rec);
  }

  pauseVm(name: string): VmInfo {
    const rec = this.get(name);
    nextState(name, rec.state, 'pause');
    this.freeze(rec, 'pause requested');
    return this.info(rec);
  }

  resumeVm(name: string): VmInfo {
    const rec = this.get(name);
    nextState(name, rec.state, 'resume');
    this.thaw(rec, 'resume requested');
    if (rec.chaos.fault?.kind === 'pause') this.chaos.clear(rec, 'the VM was resumed');
    return this.info(rec);
  }

  private watchdog(): void {
    if (this.busDownSince !== null) return;
    const now = Date.now();
    for (const rec of this.vms.values()) {
      if (rec.state === 'running') {
        this.chaos.watchdog(rec, now, this.cfg.watchdogMs);
      } else if (rec.state === 'starting' && now - rec.startedWallMs > this.cfg.bootTimeoutMs) {
        this.powerOff(rec, 'crash', `boot did not finish within ${this.cfg.bootTimeoutMs} ms`);
      }
    }
  }

  /**
   * The host side's periodic work (host OS tasks, VMM work for the guests' I/O) as one CPU
   * burst competing with the guests on the same cores, through the same scheduler.
   */
  private runHostTasks(): void {
    let guests = 0;
    for (const r of this.vms.values()) if (ACTIVE_STATES.includes(r.state)) guests++;
    const cycles = this.hostWork.takeBurst(guests);
    if (cycles <= 0) return;
    this.devices.cpu.submit(HOST_FLOW, this.devices.cpuCost(cycles), {
      subject: this.devices.subjects.cpu,
      kind: 'host',
      body: {
        replyTo: hostWorkSubject(this.d.ns, this.d.host),
        cycles,
        switchCycles: this.hostWork.params.switchCycles,
      },
    });
  }

  // ---------------------------------------------------------------- guest traffic

  private onHeartbeat(m: Msg): void {
    const rec = this.recordOf(m.subject);
    if (!rec) return;
    try {
      const hb = decode(m.data, Heartbeat, 'heartbeat');
      if (hb.pid !== rec.pid) return;
      if (this.unconfirmed.delete(rec.def.name)) {
        this.log.info({ vm: rec.def.name, pid: hb.pid }, `vm ${rec.def.name}: re-adopted guest heartbeats`);
      }
      this.chaos.onHeartbeat(rec);
      rec.lastHeartbeatWallMs = Date.now();
      rec.guestLagMs = hb.lagMs;
      rec.appFigures = hb.app;
      rec.guestPending = hb.pending ?? null;
    } catch (e) {
      this.badMessage(rec, 'heartbeat', (e as Error).message);
    }
  }

  private onGuestStatus(m: Msg): void {
    const rec = this.recordOf(m.subject);
    if (!rec) return;
    let st: GuestStatus;
    try {
      st = decode(m.data, GuestStatus, 'guest status');
    } catch (e) {
      this.badMessage(rec, 'guest status', (e as Error).message);
      return;
    }
    if (st.pid !== rec.pid) return;
    if (st.phase === 'booting') {
      this.log.info(
        { vm: rec.def.name, stage: st.stage, progress: st.progress },
        `vm ${rec.def.name}: boot ${st.stage}`,
      );
    } else if (st.phase === 'ready' && rec.state === 'starting') {
      rec.bootMs = st.bootMs ?? null;
      rec.lastHeartbeatWallMs = Date.now();
      this.transition(rec, 'ready', st.reason);
    } else if (st.phase === 'failed') {
      rec.guestReason = st.reason;
      this.log.warn({ vm: rec.def.name, reason: st.reason }, `vm ${rec.def.name}: guest reports failure`);
    }
  }

  private recordOf(subject: string): VmRecord | undefined {
    const id = vmIdOf(this.d.ns, subject);
    return id === undefined ? undefined : this.vms.get(id);
  }

  private onHypercall(m: Msg, delayed = false): void {
    const rec = this.recordOf(m.subject);
    if (!m.reply) {
      if (rec) {
        rec.hypercalls.rejected++;
        this.badMessage(rec, 'hypercall', 'no reply subject');
      }
      return;
    }
    // A reply goes to the guest's own inbox, or to a tool's random `_INBOX.` one: a guest that
    // named any other subject (another VM's, the hypervisor's completions, JetStream's API)
    // would have the hypervisor or the host-agent publish its answer there for it.
    if (rec && !isGuestReplySubject(m.reply, this.d.ns, rec.def.name)) {
      rec.hypercalls.rejected++;
      this.badMessage(rec, 'hypercall', "reply subject outside the guest's inbox");
      return;
    }
    // A slow fault holds each hypercall before serving it; the hold counts as its wait.
    const holdMs = rec && !delayed ? this.chaos.hypercallDelayMs(rec) : 0;
    if (rec && holdMs > 0) {
      this.d.clock.at(this.d.clock.now() + holdMs, () => {
        rec.chaos.heldMs += holdMs;
        this.onHypercall(m, true);
      });
      return;
    }
    const reject = (code: string, message: string): void => {
      if (rec) rec.hypercalls.rejected++;
      m.respond(encode(errorReply(code, message)));
    };
    if (!rec || !ACTIVE_STATES.includes(rec.state) || rec.state === 'paused') {
      reject(ErrorCode.VM_NOT_RUNNING, `VM ${vmIdOf(this.d.ns, m.subject)} is not running`);
      return;
    }
    let hc: Hypercall;
    try {
      hc = decode(m.data, Hypercall, 'hypercall');
    } catch (e) {
      const ve = toVmsimError(e);
      this.badMessage(rec, 'hypercall', ve.message);
      reject(ve.code, ve.message);
      return;
    }
    rec.hypercalls.total++;
    const fig = opFigures(rec, hc.op);
    fig.count++;
    const name = rec.def.name;
    const replyTo = m.reply;
    try {
      if (hc.op === 'cpu') {
        // The guest's burst carries the exit into the VMM and back on the same core.
        const cycles = this.hostWork.cpuBurst(hc.cycles);
        // A burst that touches a page on swap waits for it first (a major fault).
        this.memory.beforeCpu(
          rec,
          () =>
            this.devices.cpu.submit(name, this.devices.cpuCost(cycles), {
              subject: this.devices.subjects.cpu,
              kind: hc.op,
              body: { replyTo, cycles, switchCycles: this.hostWork.params.switchCycles },
            }),
          (code, message) => {
            fig.errors++;
            m.respond(encode(errorReply(code, message)));
          },
        );
        return;
      }
      if (hc.op === 'mem.alloc') {
        this.memory.alloc(rec, hc.mib, replyTo);
        return;
      }
      if (hc.op === 'mem.free') {
        this.memory.free(rec, hc.mib, replyTo);
        return;
      }
      if (hc.op === 'net.send' || hc.op === 'net.recv') {
        this.guestTraffic(rec, hc.op, hc.bytes, replyTo);
        return;
      }
      if (hc.disk !== 0) throw new VmsimError(ErrorCode.NO_SUCH_DEVICE, `VM ${name} has no disk ${hc.disk}`);
      this.hostWork.noteIo();
      let io: VolumeIo;
      if (hc.op === 'disk.flush') io = { op: 'flush' };
      else {
        const length = hc.op === 'disk.read' ? hc.length : hc.data.length;
        const size = this.volumes.sizeOf(rec.volume);
        if (hc.offset + length > size) {
          throw new VmsimError(
            ErrorCode.OUT_OF_RANGE,
            `virtual disk access ${hc.offset}..${hc.offset + length} is outside its ${size} bytes`,
          );
        }
        fig.bytes += length;
        io =
          hc.op === 'disk.read'
            ? { op: 'read', offset: hc.offset, length }
            : { op: 'write', offset: hc.offset, data: hc.data };
      }
      this.volumes.guestIo(name, rec.volume, io, replyTo);
    } catch (e) {
      fig.errors++;
      const ve = toVmsimError(e);
      m.respond(encode(errorReply(ve.code, ve.message)));
    }
  }

  /**
   * Traffic the guest itself sends out or pulls in (a bulk transfer): one super-frame over
   * the host NIC under the VM's flow, like a client's request or reply. The frame that
   * crosses the NIC is the hypercall's answer, delivered to the guest's reply inbox.
   */
  private guestTraffic(rec: VmRecord, op: 'net.send' | 'net.recv', bytes: number, replyTo: string): void {
    const dir = op === 'net.send' ? 'tx' : 'rx';
    opFigures(rec, op).bytes += bytes;
    if (dir === 'tx') rec.net.txBytes += bytes;
    else rec.net.rxBytes += bytes;
    this.hostWork.noteIo();
    // The modeled time on the wire when nothing else is on it (the NIC tells no one more).
    const serviceMs = this.devices.nicCost(bytes);
    this.devices.nic[dir].submit(
      rec.def.name,
      serviceMs,
      {
        subject: this.devices.subjects.nic[dir],
        kind: op,
        body: { replyTo, bytes },
        frameAt: (waitMs) => encode({ ok: true, waitMs, serviceMs }),
      },
      bytes,
    );
  }

  private onDone(m: Msg): void {
    // Item by item: one bad completion in a batch must not cost the good ones their slots.
    let items: unknown[];
    try {
      items = decode(m.data, HwDoneBatch, 'device completions').done;
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'bad device completion');
      return;
    }
    let bad = 0;
    for (const item of items) {
      const d = HwDoneItem.safeParse(item);
      if (d.success) this.devices.onDone(d.data.t, d.data.ok, d.data.device, d.data.serviceMs);
      else bad++;
    }
    if (bad > 0) this.log.warn({ bad, of: items.length }, 'bad device completions ignored');
  }

  private onHostHello(m: Msg): void {
    try {
      const hello = decode(m.data, HostHello, 'host hello');
      if (hello.bootId === this.hostAgentBootId && hello.reason === 'reconnect') {
        // The same host-agent, back on the bus: what went to or came from it meanwhile is lost.
        const released = this.devices.releaseAll('the host-agent lost the bus meanwhile');
        const reason = `host-agent reconnected to the bus: ${released} in-flight device operations released`;
        this.log.warn({ released }, reason);
        this.publishServiceEvent('bus-recovered', reason);
        return;
      }
      this.onHostAgentBoot(hello.bootId, 'it said hello');
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'bad host hello');
    }
  }

  /** The bus is gone: the watchdog waits (silence now says nothing about the guests). */
  onBusDisconnect(): void {
    this.busDownSince ??= Date.now();
  }

  /**
   * After a bus reconnect: operations dispatched or completed while the bus was away are lost
   * (their slots would stay taken until releaseStale), and a host-agent that restarted
   * meanwhile said hello to nobody.
   */
  async onBusReconnect(): Promise<void> {
    const downSince = this.busDownSince;
    this.busDownSince = null;
    if (this.stopping || !this.devices) return;
    // Heartbeats could not reach us while we were away: that silence is not the guests'.
    const now = Date.now();
    for (const rec of this.vms.values()) {
      if (rec.state === 'running') {
        if (rec.lastHeartbeatWallMs !== null) rec.lastHeartbeatWallMs = now;
        else rec.startedWallMs = now;
      }
      if (rec.state === 'starting' && downSince !== null) rec.startedWallMs += now - downSince;
    }
    const released = this.devices.releaseAll('the bus went away meanwhile');
    const reason = `bus reconnected: ${released} in-flight device operations may be lost; their slots are free again`;
    this.log.warn({ released }, reason);
    this.publishServiceEvent('bus-recovered', reason);
    try {
      const inv = await call(this.d.nc, hardwareSubjects.inventory(this.d.ns, this.d.host), {}, Inventory, 2000);
      this.onHostAgentBoot(inv.bootId, 'its boot id changed while the bus was away');
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'host-agent did not answer after the bus reconnected');
    }
  }

  /** A host-agent with a new boot id: its in-flight work and its RAM model are gone. */
  private onHostAgentBoot(bootId: string, how: string): void {
    if (bootId === this.hostAgentBootId) return;
    this.hostAgentBootId = bootId;
    const released = this.devices.releaseAll('the host-agent restarted');
    this.log.warn({ bootId, released }, `host-agent restarted (${how}): its in-flight work is lost`);
    this.publishServiceEvent(
      'host-agent-restarted',
      `host-agent came back with boot id ${bootId} (${how}); ${released} operations lost`,
    );
    // Its RAM model starts empty: claim again what running VMs hold.
    for (const rec of this.vms.values()) {
      if (!ACTIVE_STATES.includes(rec.state)) continue;
      call(
        this.d.nc,
        hardwareSubjects.memAlloc(this.d.ns, this.d.host),
        { owner: rec.def.name, mib: this.residentMiB(rec.def) },
        MemReply,
      ).catch((e: unknown) =>
        this.log.warn({ vm: rec.def.name, err: (e as Error).message }, 'could not re-claim memory'),
      );
    }
  }

  // ---------------------------------------------------------------- virtual switch

  private onIngress(m: Msg): void {
    if (!m.reply) return;
    const name = ingressVmName(m.subject) ?? '';
    const rec = this.vms.get(name);
    let req: IngressRequest;
    try {
      req = decode(m.data, IngressRequest, 'client request');
    } catch (e) {
      const ve = toVmsimError(e);
      m.respond(encode(errorReply(ve.code, ve.message)));
      return;
    }
    if (!rec) {
      m.respond(encode(errorReply(ErrorCode.NO_SUCH_VM, `no VM named ${name} on ${this.d.host}`)));
      return;
    }
    if (rec.state !== 'running') {
      rec.net.dropped++;
      m.respond(encode(errorReply(ErrorCode.VM_NOT_RUNNING, `VM ${name} is ${rec.state}`)));
      return;
    }
    const conn = this.connections.openFor(name, m.reply);
    if (!conn) {
      rec.net.dropped++;
      m.respond(
        encode(errorReply(ErrorCode.OVERLOAD, `the virtual switch has ${this.connections.maxOpen} open connections`)),
      );
      return;
    }
    rec.net.requests++;
    rec.net.rxBytes += req.bytes;
    this.hostWork.noteIo();
    const frame = encode({ cid: conn.cid, req });
    this.devices.nic.rx.submit(
      name,
      this.devices.nicCost(req.bytes),
      {
        subject: this.devices.subjects.nic.rx,
        kind: 'net.rx',
        body: { replyTo: vnicRxSubject(this.d.ns, name), bytes: req.bytes, frame },
        // The frame never reached the guest: end the connection now, not at its timeout.
        onLost: (why) => {
          const c = this.connections.close(name, conn.cid);
          if (c)
            this.d.nc.publish(
              c.replyTo,
              encode(errorReply(ErrorCode.HOST_UNAVAILABLE, `request to ${name} lost: ${why}`)),
            );
        },
      },
      req.bytes,
    );
  }

  private onVnicTx(m: Msg): void {
    const rec = this.recordOf(m.subject);
    if (!rec) return;
    let tx: VnicTx;
    try {
      tx = decode(m.data, VnicTx, 'vNIC frame');
    } catch (e) {
      rec.net.dropped++;
      this.badMessage(rec, 'vNIC frame', (e as Error).message);
      this.refuseBadAnswer(rec, m.data, toVmsimError(e));
      return;
    }
    const conn = this.connections.close(rec.def.name, tx.cid);
    if (!conn) {
      // Unknown, expired or another VM's connection: a switch never forwards those.
      rec.net.dropped++;
      return;
    }
    const bytes = tx.res.ok ? tx.res.bytes : 256;
    rec.net.replies++;
    rec.net.txBytes += bytes;
    this.hostWork.noteIo();
    this.devices.nic.tx.submit(
      rec.def.name,
      this.devices.nicCost(bytes),
      {
        subject: this.devices.subjects.nic.tx,
        kind: 'net.tx',
        body: { replyTo: conn.replyTo, bytes, frame: encode(tx.res) },
        onLost: (why) =>
          this.d.nc.publish(
            conn.replyTo,
            encode(errorReply(ErrorCode.HOST_UNAVAILABLE, `the answer of ${rec.def.name} was lost: ${why}`)),
          ),
      },
      bytes,
    );
  }

  /**
   * A guest's answer the switch cannot forward still ends its connection, when it names one
   * of this VM's: the client hears why now instead of waiting for the connection's timeout.
   */
  private refuseBadAnswer(rec: VmRecord, data: Uint8Array, e: VmsimError): void {
    let cid: unknown;
    try {
      cid = (decodeRaw(data) as { cid?: unknown } | null)?.cid;
    } catch {
      return;
    }
    if (!Number.isSafeInteger(cid)) return;
    const conn = this.connections.close(rec.def.name, cid as number);
    if (!conn) return;
    this.d.nc.publish(
      conn.replyTo,
      encode(errorReply(e.code, `VM ${rec.def.name} answered with a bad frame: ${e.message}`)),
    );
  }

  private expireConnections(): void {
    for (const c of this.connections.expire()) {
      const rec = this.vms.get(c.vm);
      if (rec) rec.net.dropped++;
      this.d.nc.publish(
        c.replyTo,
        encode(errorReply(ErrorCode.TIMEOUT, `VM ${c.vm} did not answer within ${this.cfg.connectionTimeoutMs} ms`)),
      );
    }
  }

  // ---------------------------------------------------------------- management API

  hostInfo(): HostInfo {
    return {
      host: this.d.host,
      hypervisor: this.cfg.type,
      scheduler: this.cfg.policy,
      timeScale: this.cfg.timeScale,
      overcommit: this.cfg.overcommit,
      memory: {
        totalMiB: this.profile.memoryGiB * 1024,
        committedMiB: this.committedMiB(),
        reservedMiB: this.cfg.reservedMiB,
        ...this.memory.hostFigures(),
      },
      cpu: { cores: this.profile.cpu.sockets * this.profile.cpu.coresPerSocket, mhz: this.profile.cpu.mhz },
      vms: this.vms.size,
      lagMs: this.lag.sample().p99Ms,
      hostAgent: { bootId: this.hostAgentBootId, profile: this.profile.name },
      overhead: this.hostWork.params,
      hostCpuMs: this.devices.cpuCost(this.hostWork.totalCycles),
      pending: {
        connections: this.connections.size,
        deviceQueued: this.devices.queuedCount,
        deviceInFlight: this.devices.inFlightCount,
        memChains: this.memory.pendingChains,
        diskIo: this.volumes.pending.inflight + this.volumes.pending.waiting + this.volumes.pending.pieces,
      },
    };
  }

  /** What the API reports of a VM, its disk's volume included. */
  private info(rec: VmRecord): VmInfo {
    const has = this.volumes.model.volumes.has(rec.volume);
    const disks: VmInfo['disks'] = has
      ? [
          {
            index: 0,
            sizeBytes: this.volumes.sizeOf(rec.volume),
            extents: this.volumes.extentsOf(rec.volume),
            volume: this.volumes.volumeInfo(rec.volume),
          },
        ]
      : [];
    return toInfo(rec, Date.now(), disks);
  }

  /**
   * A write of the VM found its pool full: the VM is paused (as libvirt pauses a guest on
   * ENOSPC), its write kept; it goes on when the pool has room.
   */
  private onDiskStalled(vm: string, reason: string): void {
    const rec = this.vms.get(vm);
    if (!rec) return;
    this.chaosEvent(rec, 'io-error', reason);
    if (rec.state === 'running') this.freeze(rec, reason);
  }

  private onDiskUnstalled(vm: string, reason: string): void {
    const rec = this.vms.get(vm);
    if (!rec || rec.state !== 'paused' || !rec.reason.startsWith('I/O error')) return;
    this.thaw(rec, `resumed: ${reason}`);
  }

  /** Pauses a VM: its guest process is stopped (its vCPUs no longer run). */
  private freeze(rec: VmRecord, reason: string): void {
    rec.proc?.kill('SIGSTOP');
    this.transition(rec, 'pause', reason);
  }

  private thaw(rec: VmRecord, reason: string): void {
    rec.proc?.kill('SIGCONT');
    // Heartbeats stopped while it was frozen; give it a fresh interval before the watchdog looks.
    rec.lastHeartbeatWallMs = Date.now();
    rec.chaos.watchdogFired = false;
    this.transition(rec, 'resume', reason);
  }

  private serveApi(): void {
    const { nc, ns, host } = this.d;
    const handlers: { [Op in MgmtOp]: (req: never) => unknown } = {
      ping: () => this.hostInfo(),
      define: (def: VmDefinition) => this.define(def),
      undefine: (r: { name: string }) => this.undefine(r.name),
      start: (r: { name: string }) => this.startVm(r.name),
      shutdown: (r: { name: string; timeoutMs?: number }) => this.shutdownVm(r.name, r.timeoutMs),
      destroy: (r: { name: string }) => this.destroyVm(r.name),
      pause: (r: { name: string }) => this.pauseVm(r.name),
      resume: (r: { name: string }) => this.resumeVm(r.name),
      tune: (r: { name: string } & ResourceLimits) => this.tuneVm(r),
      stress: (r: { name: string; kind: StressKind; durationMs?: number }) => this.stressVm(r),
      unstress: (r: { name: string }) => this.unstressVm(r.name),
      fault: (r: { name: string } & FaultSpec) => this.faultVm(r),
      unfault: (r: { name: string }) => this.unfaultVm(r.name),
      policy: (r: { policy: Policy }) => {
        this.cfg.policy = r.policy;
        this.devices.setPolicy(r.policy);
        this.memory.setPolicy(r.policy);
        this.log.info({ policy: r.policy }, `scheduling policy is now ${r.policy}`);
        this.publishServiceEvent('policy', `every device scheduler now uses ${r.policy}`);
        return this.hostInfo();
      },
      list: () => ({ vms: [...this.vms.values()].map((r) => this.info(r)) }),
      info: (r: { name: string }) => this.info(this.get(r.name)),
      poolList: async () => ({ pools: await this.volumes.poolList() }),
      poolCreate: (r: { id: string; disks: string[]; diskGiB?: number; chunkMiB?: number }) =>
        this.volumes.poolCreate(r),
      poolAddDisk: (r: { id: string; disk: string; sizeGiB?: number }) => this.volumes.poolAddDisk(r),
      diskList: (r: { pool?: string }) => ({ volumes: this.volumes.diskList(r.pool) }),
      diskInfo: (r: { id: string }) => this.volumes.volumeInfo(r.id),
      diskCreate: (r: { id: string; pool: string; sizeGiB: number; provisioning: 'thin' | 'thick' }) =>
        this.volumes.diskCreate(r),
      diskSnapshot: (r: { id: string; snapshot: string }) => this.volumes.diskSnapshot(r.id, r.snapshot),
      diskRevert: (r: { id: string; snapshot: string }) => this.volumes.diskRevert(r.id, r.snapshot),
      diskDeleteSnapshot: (r: { id: string; snapshot: string }) => this.volumes.diskDeleteSnapshot(r.id, r.snapshot),
      diskTemplate: (r: { id: string }) => this.volumes.diskTemplate(r.id),
      diskClone: (r: { template: string; id: string }) => this.volumes.diskClone(r.template, r.id),
      diskDelete: (r: { id: string }) => this.volumes.diskDelete(r.id),
      diskRead: async (r: { id: string; offset: number; length: number; snapshot?: string }) => {
        const reply = await this.volumes.apiIo(r.id, {
          op: 'read',
          offset: r.offset,
          length: r.length,
          snapshot: r.snapshot,
        });
        if (!reply.ok) throw new VmsimError(reply.code as ErrorCode, reply.message);
        return { data: reply.data ?? new Uint8Array(0) };
      },
      diskWrite: async (r: { id: string; offset: number; data: Uint8Array; flush: boolean }) => {
        const w = await this.volumes.apiIo(r.id, { op: 'write', offset: r.offset, data: r.data });
        if (!w.ok) throw new VmsimError(w.code as ErrorCode, w.message);
        if (r.flush) {
          const f = await this.volumes.apiIo(r.id, { op: 'flush' });
          if (!f.ok) throw new VmsimError(f.code as ErrorCode, f.message);
        }
        return { bytes: r.data.length };
      },
    };
    for (const op of Object.keys(handlers) as MgmtOp[]) {
      const handler = handlers[op] as (req: unknown) => unknown;
      this.subs.push(serve(nc, mgmtSubject(ns, host, op), MgmtRequests[op], (req) => handler(req), this.log));
    }
  }

  /** Committable memory, for status output. */
  get committableMiB(): number {
    return committableMiB(this.memoryPlan());
  }
}
