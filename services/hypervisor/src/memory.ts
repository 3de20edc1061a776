import type { Rng } from '@vmsim/shared';
import { ErrorCode, VmsimError } from '@vmsim/shared';
import type { Policy } from './scheduler.ts';

/** One VM's guest RAM as the host backs it, all in whole MiB. */
interface VmMemory {
  sizeMiB: number;
  limitMiB: number;
  /** Touched by the guest and not given back: resident or on swap. */
  usedMiB: number;
  /** Host pages backing it: its used pages that are not on swap, plus pages it freed (slack). */
  residentMiB: number;
  swappedMiB: number;
  /** Host pages the balloon took back from pages the guest had freed (and has not needed again). */
  balloonMiB: number;
}

export type MemoryFigures = Readonly<VmMemory>;

/** MiB taken from each VM by one reclaim step. */
export type PerVm = Map<string, number>;

/** What backing `fresh` MiB of new host pages for one VM took from the others (or from itself). */
export interface Reclaim {
  /** Freed-but-backed pages the balloon took (cheap: no disk). */
  ballooned: PerVm;
  /** Used pages written out to swap (a disk write each, paid by the VM that needed the RAM). */
  swappedOut: PerVm;
}

export type AllocResult =
  | ({ kind: 'ok'; reusedMiB: number; freshMiB: number } & Reclaim)
  /** Past its limit: the hypervisor kills that guest alone (as the cgroup OOM killer). */
  | { kind: 'oom'; usedMiB: number; wantMiB: number; limitMiB: number };

/** A major fault: `inMiB` read back from swap, and what backing it took. */
export type FaultResult = { inMiB: number } & Reclaim;

/** How much one major fault reads back (a swap read-ahead cluster). */
export const FAULT_MIB = 1;

const sum = (m: PerVm): number => [...m.values()].reduce((a, b) => a + b, 0);

/**
 * Splits `total` whole MiB across `weights` in proportion, each at most its weight (largest
 * remainder, ties by name so the result does not depend on map order).
 */
export function proportional(total: number, weights: PerVm): PerVm {
  const out: PerVm = new Map();
  const w = [...weights].filter(([, x]) => x > 0).sort((a, b) => a[0].localeCompare(b[0]));
  const all = w.reduce((s, [, x]) => s + x, 0);
  if (total <= 0 || all <= 0) return out;
  const take = Math.min(total, all);
  let given = 0;
  const rest: { name: string; frac: number; cap: number }[] = [];
  for (const [name, x] of w) {
    const exact = (take * x) / all;
    const n = Math.min(x, Math.floor(exact));
    out.set(name, n);
    given += n;
    rest.push({ name, frac: exact - n, cap: x - n });
  }
  rest.sort((a, b) => b.frac - a.frac || a.name.localeCompare(b.name));
  for (let i = 0; given < take; i = (i + 1) % rest.length) {
    const r = rest[i]!;
    if (r.cap <= 0) continue;
    r.cap--;
    out.set(r.name, out.get(r.name)! + 1);
    given++;
  }
  for (const [k, v] of out) if (v === 0) out.delete(k);
  return out;
}

/**
 * Guest RAM on one host, as a pure model: what each guest touched, which host pages back
 * it, and what the host did when RAM ran short. When a guest needs a new page and the host
 * has none free, the balloon first takes back pages guests had freed (no disk), then pages
 * are swapped out. Whose pages go depends on the policy: `fair` takes them from the VMs
 * most above their fair share of host RAM (in proportion to memory size), so a hog swaps
 * itself; `fifo` is one global LRU, where the hog's pages are the most recently touched
 * and everyone else's go first, in proportion to what they hold.
 */
export class MemoryManager {
  /** Host RAM guests may use: the host's, less what the hypervisor keeps. */
  readonly hostMiB: number;
  readonly swapCapacityMiB: number;
  policy: Policy;
  private readonly rng: Rng;
  private readonly vms = new Map<string, VmMemory>();

  constructor(opts: { hostMiB: number; swapMiB: number; policy: Policy; rng: Rng }) {
    this.hostMiB = Math.max(0, Math.floor(opts.hostMiB));
    this.swapCapacityMiB = Math.max(0, Math.floor(opts.swapMiB));
    this.policy = opts.policy;
    this.rng = opts.rng;
  }

  register(vm: string, sizeMiB: number, limitMiB: number): void {
    if (this.vms.has(vm)) throw new VmsimError(ErrorCode.BAD_STATE, `VM ${vm} already holds guest memory`);
    this.vms.set(vm, { sizeMiB, limitMiB, usedMiB: 0, residentMiB: 0, swappedMiB: 0, balloonMiB: 0 });
  }

  /** Powered off: every page and swap slot it held is free again. */
  remove(vm: string): MemoryFigures | undefined {
    const m = this.vms.get(vm);
    this.vms.delete(vm);
    return m;
  }

  has(vm: string): boolean {
    return this.vms.has(vm);
  }

  figures(vm: string): MemoryFigures | undefined {
    const m = this.vms.get(vm);
    return m ? { ...m } : undefined;
  }

  totals(): { residentMiB: number; swappedMiB: number; balloonMiB: number; usedMiB: number; freeMiB: number } {
    let residentMiB = 0;
    let swappedMiB = 0;
    let balloonMiB = 0;
    let usedMiB = 0;
    for (const m of this.vms.values()) {
      residentMiB += m.residentMiB;
      swappedMiB += m.swappedMiB;
      balloonMiB += m.balloonMiB;
      usedMiB += m.usedMiB;
    }
    return { residentMiB, swappedMiB, balloonMiB, usedMiB, freeMiB: this.hostMiB - residentMiB };
  }

  /** Chance that one of its CPU bursts touches a page on swap: the swapped part of what it uses. */
  faultChance(vm: string): number {
    const m = this.vms.get(vm);
    return m && m.usedMiB > 0 ? m.swappedMiB / m.usedMiB : 0;
  }

  /**
   * The guest touches `mib` more. Refused (NO_MEMORY) past its RAM size, as the guest OS
   * would fail the allocation; an OOM verdict past its limit. Pages it freed earlier are
   * reused first (still backed); new pages come from free host RAM, then the balloon, then swap.
   */
  alloc(vm: string, mib: number): AllocResult {
    const m = this.get(vm);
    const want = m.usedMiB + mib;
    if (m.limitMiB < m.sizeMiB && want > m.limitMiB) {
      return { kind: 'oom', usedMiB: m.usedMiB, wantMiB: mib, limitMiB: m.limitMiB };
    }
    if (want > m.sizeMiB) {
      throw new VmsimError(
        ErrorCode.NO_MEMORY,
        `guest RAM exhausted: VM ${vm} uses ${m.usedMiB} MiB of ${m.sizeMiB} MiB and asks for ${mib} more`,
        { usedMiB: m.usedMiB, sizeMiB: m.sizeMiB, wantMiB: mib },
      );
    }
    const reusedMiB = Math.min(mib, this.slack(m));
    const freshMiB = mib - reusedMiB;
    this.checkRoom(vm, freshMiB, reusedMiB);
    m.usedMiB = want;
    m.residentMiB += freshMiB;
    // The guest needs its RAM back: a balloon holding its pages deflates first.
    m.balloonMiB -= Math.min(m.balloonMiB, freshMiB);
    const reclaim = this.makeRoom(vm);
    return { kind: 'ok', reusedMiB, freshMiB, ...reclaim };
  }

  /** The guest gives `mib` back. Freed swap slots are released; freed RAM stays backed until a balloon takes it. */
  free(vm: string, mib: number): { freedMiB: number; swapReleasedMiB: number } {
    const m = this.get(vm);
    const freedMiB = Math.min(mib, m.usedMiB);
    // Which pages it frees is not known: the swapped part in proportion.
    const swapReleasedMiB = m.usedMiB > 0 ? Math.round((freedMiB * m.swappedMiB) / m.usedMiB) : 0;
    m.usedMiB -= freedMiB;
    m.swappedMiB -= swapReleasedMiB;
    return { freedMiB, swapReleasedMiB };
  }

  /**
   * One CPU burst of `vm`: with its fault chance it touches a page on swap, which comes back
   * (a read of FAULT_MIB) and takes a host page like any new one (balloon, else swap-out).
   */
  maybeFault(vm: string): FaultResult | undefined {
    const m = this.vms.get(vm);
    if (!m || m.swappedMiB <= 0) return undefined;
    if (this.rng.next() >= this.faultChance(vm)) return undefined;
    const inMiB = Math.min(FAULT_MIB, m.swappedMiB);
    // Its own pages may be the victims (fair, over its share): count the page in first.
    m.swappedMiB -= inMiB;
    m.residentMiB += inMiB;
    const reclaim = this.makeRoom(vm);
    return { inMiB, ...reclaim };
  }

  /** A new limit (cgroup memory.max): an OOM verdict when the guest already uses more. */
  setLimit(vm: string, limitMiB: number): { oom: boolean; usedMiB: number } {
    const m = this.get(vm);
    m.limitMiB = limitMiB;
    return { oom: limitMiB < m.sizeMiB && m.usedMiB > limitMiB, usedMiB: m.usedMiB };
  }

  /**
   * Memory hot-plug (larger) or a balloon target (smaller). Below what the guest uses it is
   * refused; above, the backing past the new size (pages it freed) goes to the balloon.
   */
  resize(vm: string, sizeMiB: number): { ballooned: number } {
    const m = this.get(vm);
    if (sizeMiB < m.usedMiB) {
      throw new VmsimError(
        ErrorCode.BAD_STATE,
        `cannot shrink VM ${vm} to ${sizeMiB} MiB: its guest uses ${m.usedMiB} MiB (resident ${m.residentMiB}, swapped ${m.swappedMiB})`,
        { sizeMiB, usedMiB: m.usedMiB },
      );
    }
    const ballooned = Math.max(0, Math.min(this.slack(m), m.usedMiB + this.slack(m) - sizeMiB));
    m.residentMiB -= ballooned;
    m.balloonMiB += ballooned;
    m.sizeMiB = sizeMiB;
    return { ballooned };
  }

  private get(vm: string): VmMemory {
    const m = this.vms.get(vm);
    if (!m) throw new VmsimError(ErrorCode.VM_NOT_RUNNING, `VM ${vm} holds no guest memory (not running)`);
    return m;
  }

  /** Resident pages holding nothing the guest uses (it freed them). */
  private slack(m: VmMemory): number {
    return m.residentMiB - (m.usedMiB - m.swappedMiB);
  }

  /** Refuses, before anything changes, `fresh` new MiB for `vm` that neither RAM nor swap can hold. */
  private checkRoom(vm: string, fresh: number, reused: number): void {
    if (fresh <= 0) return;
    const t = this.totals();
    let slack = -reused;
    for (const m of this.vms.values()) slack += this.slack(m);
    const toSwap = Math.max(0, t.residentMiB + fresh - this.hostMiB - slack);
    if (t.swappedMiB + toSwap > this.swapCapacityMiB) {
      throw new VmsimError(
        ErrorCode.NO_MEMORY,
        `host memory exhausted: VM ${vm} needs ${fresh} MiB more but ${t.freeMiB} MiB of RAM are free ` +
          `and swap holds ${t.swappedMiB} of ${this.swapCapacityMiB} MiB`,
        { wantMiB: fresh },
      );
    }
  }

  /** Brings resident RAM back within the host's, after `toucher` took new pages. */
  private makeRoom(toucher: string): Reclaim {
    let over = this.totals().residentMiB - this.hostMiB;
    const ballooned: PerVm = new Map();
    const swappedOut: PerVm = new Map();
    if (over <= 0) return { ballooned, swappedOut };
    // Freed pages first: taking them costs no I/O. The toucher's own were reused already.
    const slacks: PerVm = new Map();
    for (const [name, m] of this.vms) if (this.slack(m) > 0) slacks.set(name, this.slack(m));
    for (const [name, n] of proportional(over, slacks)) {
      const m = this.vms.get(name)!;
      m.residentMiB -= n;
      m.balloonMiB += n;
      ballooned.set(name, n);
      over -= n;
    }
    if (over <= 0) return { ballooned, swappedOut };
    const victims = this.policy === 'fair' ? this.fairVictims(over) : this.lruVictims(toucher, over);
    for (const [name, n] of victims) {
      const m = this.vms.get(name)!;
      m.residentMiB -= n;
      m.swappedMiB += n;
      swappedOut.set(name, n);
    }
    if (sum(swappedOut) < over) {
      // Cannot happen while resident ≥ what is over; a guard against a silent invariant break.
      throw new VmsimError(
        ErrorCode.INTERNAL,
        `memory model: ${over} MiB over host RAM, only ${sum(swappedOut)} evictable`,
      );
    }
    return { ballooned, swappedOut };
  }

  /** Fair share of host RAM, in proportion to memory size over the running VMs. */
  private share(m: VmMemory): number {
    let sizes = 0;
    for (const x of this.vms.values()) sizes += x.sizeMiB;
    return sizes > 0 ? (this.hostMiB * m.sizeMiB) / sizes : 0;
  }

  /** Water-filling: evict from whoever is most above its share until the excesses level. */
  private fairVictims(need: number): PerVm {
    const out: PerVm = new Map();
    const cand = [...this.vms].map(([name, m]) => ({ name, res: m.residentMiB, share: this.share(m) }));
    let left = need;
    while (left > 0) {
      const live = cand.filter((c) => c.res > 0);
      if (live.length === 0) break;
      live.sort((a, b) => b.res - b.share - (a.res - a.share) || a.name.localeCompare(b.name));
      const top = live[0]!;
      const next = live[1];
      const gap = next ? top.res - top.share - (next.res - next.share) : Infinity;
      const n = Math.min(left, top.res, Math.max(1, Math.floor(gap)));
      top.res -= n;
      left -= n;
      out.set(top.name, (out.get(top.name) ?? 0) + n);
    }
    return out;
  }

  /** Global LRU: the toucher's pages are the newest, so the others' go first, in proportion to what they hold. */
  private lruVictims(toucher: string, need: number): PerVm {
    const others: PerVm = new Map();
    for (const [name, m] of this.vms) if (name !== toucher) others.set(name, m.residentMiB);
    const out = proportional(need, others);
    const left = need - sum(out);
    if (left > 0) out.set(toucher, Math.min(left, this.vms.get(toucher)?.residentMiB ?? 0));
    return out;
  }
}
