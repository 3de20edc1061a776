import type { HardwareProfile, Logger, Msg, NatsConnection, Namespace, Rng } from '@vmsim/shared';
import { ErrorCode, HypercallReply, decode, encode, errorReply, swapDoneSubject, vmEventSubject } from '@vmsim/shared';
import type { HostDevices } from './devices.ts';
import { MemoryManager, type PerVm, type Reclaim } from './memory.ts';
import { opFigures, type VmRecord } from './registry.ts';
import type { Policy } from './scheduler.ts';

const MiB = 1024 * 1024;
/** Swap I/O goes to the disk in pieces of at most this (a fault's read-around), so a VM sharing the device waits behind one piece at most. */
const SWAP_CHUNK_BYTES = 1024 * 1024;
/** Major faults are many and small: they are reported as one event per VM per period. */
const FAULT_REPORT_MS = 1000;

export interface GuestMemoryDeps {
  nc: NatsConnection;
  ns: Namespace;
  host: string;
  logger: Logger;
  rng: Rng;
  devices: HostDevices;
  profile: HardwareProfile;
  /** The host's swap area on a physical disk, outside every storage pool (none: no swap). */
  swapArea: { disk: string; offset: number; length: number } | undefined;
  reservedMiB: number;
  overcommit: number;
  policy: Policy;
  /** Wall ms a chain of swap I/O may take before whoever waits for it gets an error. */
  chainTimeoutMs: number;
  records: () => Iterable<VmRecord>;
  record: (name: string) => VmRecord | undefined;
  /** Ends that guest alone, as a crash (its crash policy applies). */
  kill: (rec: VmRecord, reason: string) => void;
  /** VMM work for `n` I/O operations. */
  noteIo: (n: number) => void;
}

type ChainResult = { ok: true; waitMs: number; serviceMs: number } | { ok: false; code: string; message: string };

interface Chain {
  vm: string;
  left: number;
  waitMs: number;
  serviceMs: number;
  done: (r: ChainResult) => void;
  timer: NodeJS.Timeout;
}

/**
 * The hypervisor's side of guest RAM: it serves mem.alloc/mem.free, kills a guest past its
 * limit, and turns the memory model's reclaim into swap I/O on a swap area of a physical
 * disk, paid by the VM that needed the RAM (direct reclaim) before its call is answered.
 */
export class GuestMemory {
  readonly manager: MemoryManager;
  readonly swap: { disk: string; offset: number; mib: number } | undefined;
  private readonly d: GuestMemoryDeps;
  private readonly chains = new Map<number, Chain>();
  private nextChain = 1;
  /** Per VM, since the last report: its major faults and MiB read back, and MiB of it pushed out by faults. */
  private faults = new Map<string, { faults: number; inMiB: number; outMiB: number; by: PerVm }>();
  private readonly timer: NodeJS.Timeout;

  constructor(deps: GuestMemoryDeps) {
    this.d = deps;
    const hostMiB = deps.profile.memoryGiB * 1024;
    // The storage layer placed it (see Volumes.open): the end of the last disk.
    const area = deps.swapArea;
    const disk = { id: area?.disk ?? deps.profile.disks[deps.profile.disks.length - 1]!.id };
    this.swap = area ? { disk: area.disk, offset: area.offset, mib: Math.floor(area.length / MiB) } : undefined;
    this.manager = new MemoryManager({
      hostMiB: hostMiB - deps.reservedMiB,
      swapMiB: this.swap?.mib ?? 0,
      policy: deps.policy,
      rng: deps.rng,
    });
    deps.logger.info(
      { guestRamMiB: this.manager.hostMiB, swap: this.swap ?? null, policy: deps.policy },
      this.swap
        ? `guest memory: ${this.manager.hostMiB} MiB of host RAM, ${this.swap.mib} MiB swap on ${disk.id}`
        : `guest memory: ${this.manager.hostMiB} MiB of host RAM, no room for swap on ${disk.id}`,
    );
    this.timer = setInterval(() => this.reportFaults(), FAULT_REPORT_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    for (const id of [...this.chains.keys()])
      this.finish(id, { ok: false, code: ErrorCode.VM_NOT_RUNNING, message: 'hypervisor stopping' });
  }

  setPolicy(policy: Policy): void {
    this.manager.policy = policy;
  }

  /** A VM powers on: it holds no host pages until its guest touches them. */
  register(rec: VmRecord): void {
    // A restart may come before the old guest's exit was handled: it starts from nothing.
    if (this.manager.has(rec.def.name)) this.remove(rec);
    this.manager.register(rec.def.name, rec.def.memoryMiB, limitOf(rec));
    this.refresh();
  }

  /**
   * A re-adopted guest's pages as the previous hypervisor last recorded them: resident, so
   * no swap I/O (the guest does not touch them again).
   */
  restoreUsage(rec: VmRecord, usedMiB: number): void {
    if (usedMiB > 0) this.manager.alloc(rec.def.name, Math.round(usedMiB));
    this.refresh();
  }

  /** A VM is off: its pages and swap slots are free, and nothing waits for its swap I/O any more. */
  remove(rec: VmRecord): void {
    const name = rec.def.name;
    for (const [id, c] of this.chains) {
      if (c.vm === name) this.finish(id, { ok: false, code: ErrorCode.VM_NOT_RUNNING, message: `VM ${name} is off` });
    }
    this.faults.delete(name);
    const held = this.manager.remove(name);
    if (held && held.residentMiB + held.swappedMiB > 0) {
      this.d.logger.info(
        { vm: name, residentMiB: held.residentMiB, swappedMiB: held.swappedMiB },
        `vm ${name}: ${held.residentMiB} MiB of host RAM and ${held.swappedMiB} MiB of swap freed`,
      );
    }
    this.refresh();
  }

  /** Keeps every record's figures current (the manager's, or zeros for a VM that is off). */
  refresh(): void {
    for (const rec of this.d.records()) {
      const f = this.manager.figures(rec.def.name);
      rec.memory.sizeMiB = f?.sizeMiB ?? rec.def.memoryMiB;
      rec.memory.limitMiB = f?.limitMiB ?? limitOf(rec);
      rec.memory.usedMiB = f?.usedMiB ?? 0;
      rec.memory.residentMiB = f?.residentMiB ?? 0;
      rec.memory.swappedMiB = f?.swappedMiB ?? 0;
      rec.memory.balloonMiB = f?.balloonMiB ?? 0;
    }
  }

  hostFigures(): { residentMiB: number; swappedMiB: number; balloonMiB: number } {
    const t = this.manager.totals();
    return { residentMiB: t.residentMiB, swappedMiB: t.swappedMiB, balloonMiB: t.balloonMiB };
  }

  /** mem.alloc: answered once the swap-outs it caused are on disk; past the limit, the guest is killed. */
  alloc(rec: VmRecord, mib: number, replyTo: string): void {
    const name = rec.def.name;
    const r = this.manager.alloc(name, mib);
    if (r.kind === 'oom') {
      rec.memory.oomKills++;
      const reason = `oom: guest touched ${r.usedMiB + r.wantMiB} MiB > limit ${r.limitMiB} MiB (used ${r.usedMiB} MiB, asked ${r.wantMiB} more)`;
      this.d.logger.warn(
        { vm: name, usedMiB: r.usedMiB, wantMiB: r.wantMiB, limitMiB: r.limitMiB },
        `vm ${name}: ${reason}`,
      );
      this.d.kill(rec, reason);
      this.d.nc.publish(replyTo, encode(errorReply(ErrorCode.OOM, reason)));
      return;
    }
    this.reportReclaim(name, r, `${name}'s allocation of ${mib} MiB`);
    this.refresh();
    this.runIo(rec, 0, sumOf(r.swappedOut), (res) =>
      this.d.nc.publish(replyTo, encode(res.ok ? res : errorReply(res.code, res.message))),
    );
  }

  /** mem.free: nothing to wait for; the pages stay backed until a balloon takes them. */
  free(rec: VmRecord, mib: number, replyTo: string): void {
    const r = this.manager.free(rec.def.name, mib);
    this.d.logger.debug({ vm: rec.def.name, ...r }, `vm ${rec.def.name}: guest freed ${r.freedMiB} MiB`);
    this.refresh();
    this.d.nc.publish(replyTo, encode({ ok: true, waitMs: 0, serviceMs: 0 }));
  }

  /**
   * A guest CPU burst: with its fault chance it first waits for a page from swap (and for
   * the swap-out that makes room), then `run` submits the burst.
   */
  beforeCpu(rec: VmRecord, run: () => void, fail: (code: string, message: string) => void): void {
    const name = rec.def.name;
    const f = this.manager.maybeFault(name);
    if (!f) {
      run();
      return;
    }
    rec.memory.majorFaults++;
    const mine = this.faultFigures(name);
    mine.faults++;
    mine.inMiB += f.inMiB;
    for (const [victim, n] of f.swappedOut) {
      const v = this.faultFigures(victim);
      v.outMiB += n;
      v.by.set(name, (v.by.get(name) ?? 0) + n);
    }
    // Balloon steps of a fault are rare (free RAM runs out once) and cheap: reported at once.
    if (f.ballooned.size > 0)
      this.reportReclaim(name, { ballooned: f.ballooned, swappedOut: new Map() }, `${name}'s major fault`);
    this.refresh();
    this.runIo(rec, f.inMiB, sumOf(f.swappedOut), (res) => (res.ok ? run() : fail(res.code, res.message)));
  }

  /** Hot-plug or balloon target, checked before the definition changes (refused below what the guest uses). */
  resize(rec: VmRecord, sizeMiB: number): void {
    const name = rec.def.name;
    const from = this.manager.figures(name)?.sizeMiB ?? rec.def.memoryMiB;
    const { ballooned } = this.manager.resize(name, sizeMiB);
    const reason =
      sizeMiB > from
        ? `memory hot-plug: ${from} → ${sizeMiB} MiB`
        : `memory lowered ${from} → ${sizeMiB} MiB: balloon took ${ballooned} MiB of pages the guest had freed`;
    this.d.logger.info({ vm: name, from, to: sizeMiB, ballooned }, `vm ${name}: ${reason}`);
    this.vmEvent(rec, reason);
    this.refresh();
  }

  /** After a tune: the limit in the definition applies at once, and a guest already past it is killed. */
  applyLimit(rec: VmRecord): void {
    const name = rec.def.name;
    if (!this.manager.has(name)) return this.refresh();
    const limit = limitOf(rec);
    const { oom, usedMiB } = this.manager.setLimit(name, limit);
    this.refresh();
    if (oom) {
      rec.memory.oomKills++;
      const reason = `oom: memory limit lowered to ${limit} MiB below the ${usedMiB} MiB the guest uses (used ${usedMiB} MiB > limit ${limit} MiB)`;
      this.d.logger.warn({ vm: name, usedMiB, limitMiB: limit }, `vm ${name}: ${reason}`);
      this.d.kill(rec, reason);
    }
  }

  /** Chains of swap I/O something waits for now. */
  get pendingChains(): number {
    return this.chains.size;
  }

  /** A swap I/O completion on the hypervisor's own subject. */
  onSwapDone(m: Msg): void {
    const id = Number(m.subject.slice(m.subject.lastIndexOf('.') + 1));
    const c = this.chains.get(id);
    if (!c) return;
    let r: HypercallReply;
    try {
      r = decode(m.data, HypercallReply, 'swap I/O completion');
    } catch (e) {
      // Not the host-agent's answer: the chain keeps waiting for it (or for its timeout).
      this.d.logger.warn({ vm: c.vm, chain: id, err: (e as Error).message }, 'bad swap I/O completion');
      return;
    }
    if (!r.ok) {
      this.finish(id, { ok: false, code: r.code, message: `swap I/O failed: ${r.message}` });
      return;
    }
    c.waitMs += r.waitMs;
    c.serviceMs += r.serviceMs;
    if (--c.left === 0) this.finish(id, { ok: true, waitMs: c.waitMs, serviceMs: c.serviceMs });
  }

  private finish(id: number, r: ChainResult): void {
    const c = this.chains.get(id);
    if (!c) return;
    this.chains.delete(id);
    clearTimeout(c.timer);
    c.done(r);
  }

  /** Reads `inMiB` back and writes `outMiB` out on the swap area, under the VM's own disk flow; then `done`. */
  private runIo(rec: VmRecord, inMiB: number, outMiB: number, done: (r: ChainResult) => void): void {
    const chunks: { dir: 'in' | 'out'; bytes: number }[] = [];
    for (const [dir, mib] of [
      ['in', inMiB],
      ['out', outMiB],
    ] as const) {
      for (let left = mib * MiB; left > 0; left -= SWAP_CHUNK_BYTES)
        chunks.push({ dir, bytes: Math.min(SWAP_CHUNK_BYTES, left) });
    }
    if (chunks.length === 0 || !this.swap) {
      done({ ok: true, waitMs: 0, serviceMs: 0 });
      return;
    }
    const name = rec.def.name;
    const id = this.nextChain++;
    const timer = setTimeout(
      () =>
        this.finish(id, {
          ok: false,
          code: ErrorCode.TIMEOUT,
          message: `swap I/O of VM ${name} did not finish within ${this.d.chainTimeoutMs} ms`,
        }),
      this.d.chainTimeoutMs,
    );
    timer.unref();
    this.chains.set(id, { vm: name, left: chunks.length, waitMs: 0, serviceMs: 0, done, timer });
    const disk = this.swap.disk;
    const sched = this.d.devices.diskScheduler(disk);
    const replyTo = swapDoneSubject(this.d.ns, this.d.host, id);
    this.d.noteIo(chunks.length);
    for (const c of chunks) {
      const kind = c.dir === 'in' ? 'swap.in' : 'swap.out';
      const fig = opFigures(rec, kind);
      fig.count++;
      fig.bytes += c.bytes;
      sched.submit(
        name,
        this.d.devices.diskCost(disk, c.bytes),
        {
          subject: this.d.devices.subjects.disk.get(disk)!,
          kind,
          body: { replyTo, op: 'swap', dir: c.dir, length: c.bytes },
        },
        c.bytes,
      );
    }
  }

  private faultFigures(vm: string): { faults: number; inMiB: number; outMiB: number; by: PerVm } {
    let f = this.faults.get(vm);
    if (!f) {
      f = { faults: 0, inMiB: 0, outMiB: 0, by: new Map() };
      this.faults.set(vm, f);
    }
    return f;
  }

  /** Log lines and VM events for what one allocation or fault took from whom. */
  private reportReclaim(toucher: string, r: Reclaim, what: string): void {
    const policy = this.manager.policy;
    const why =
      policy === 'fair'
        ? 'policy fair: taken from the VM most above its fair share of host RAM'
        : 'policy fifo: one global LRU, the oldest pages go first';
    for (const [vm, n] of r.ballooned) {
      this.d.logger.info({ vm, mib: n, for: toucher }, `vm ${vm}: balloon reclaimed ${n} MiB of freed pages`);
      this.vmEventByName(vm, `balloon reclaimed ${n} MiB of pages the guest had freed, for ${what} (host RAM full)`);
    }
    for (const [vm, n] of r.swappedOut) {
      this.d.logger.info({ vm, mib: n, for: toucher, policy }, `vm ${vm}: ${n} MiB swapped out`);
      this.vmEventByName(vm, `${n} MiB of its pages swapped out for ${what} (${why})`);
    }
  }

  private reportFaults(): void {
    const faults = this.faults;
    if (faults.size === 0) return;
    this.faults = new Map();
    for (const [vm, f] of faults) {
      const parts: string[] = [];
      if (f.faults > 0) parts.push(`${f.faults} major faults read ${f.inMiB} MiB back from swap`);
      if (f.outMiB > 0) {
        const by = [...f.by].map(([k, n]) => `${k} ${n}`).join(', ');
        parts.push(
          `${f.outMiB} MiB of its pages swapped out to back major faults (${by}; policy ${this.manager.policy})`,
        );
      }
      const reason = `in the last ${FAULT_REPORT_MS / 1000} s: ${parts.join('; ')}`;
      this.d.logger.info({ vm, ...f, by: Object.fromEntries(f.by) }, `vm ${vm}: ${reason}`);
      this.vmEventByName(vm, reason);
    }
  }

  private vmEventByName(vm: string, reason: string): void {
    const rec = this.d.record(vm);
    if (rec) this.vmEvent(rec, reason);
  }

  /** A VM event that changes no state (`kind: 'memory'`). */
  private vmEvent(rec: VmRecord, reason: string): void {
    const { nc, ns, host } = this.d;
    nc.publish(
      vmEventSubject(ns, host, rec.def.name),
      encode({
        t: Date.now(),
        host,
        vm: rec.def.name,
        from: rec.state,
        to: rec.state,
        reason,
        pid: rec.pid,
        kind: 'memory',
      }),
    );
  }
}

function limitOf(rec: VmRecord): number {
  return rec.def.memLimitMiB ?? rec.def.memoryMiB;
}

function sumOf(m: PerVm): number {
  let s = 0;
  for (const v of m.values()) s += v;
  return s;
}
