import type { Clock } from '@vmsim/shared';

export interface Connection {
  readonly cid: number;
  readonly vm: string;
  /** The client's reply subject: known only to the switch, never to the guest. */
  readonly replyTo: string;
  readonly openedAt: number;
  readonly deadline: number;
}

/**
 * The virtual switch's connection table. A guest answers by connection id, so it can only
 * reach clients that talked to it, and every entry ends: answered, expired or dropped.
 */
export class ConnectionTable {
  private readonly open = new Map<number, Connection>();
  private nextCid = 1;
  private readonly clock: Clock;
  private readonly timeoutMs: number;
  readonly maxOpen: number;

  constructor(clock: Clock, opts: { timeoutMs: number; maxOpen: number }) {
    this.clock = clock;
    this.timeoutMs = opts.timeoutMs;
    this.maxOpen = opts.maxOpen;
  }

  get size(): number {
    return this.open.size;
  }

  /** Opens a connection; undefined when the table is full. */
  openFor(vm: string, replyTo: string): Connection | undefined {
    if (this.open.size >= this.maxOpen) return undefined;
    const now = this.clock.now();
    const c: Connection = { cid: this.nextCid++, vm, replyTo, openedAt: now, deadline: now + this.timeoutMs };
    this.open.set(c.cid, c);
    return c;
  }

  /** Closes the connection if it belongs to `vm`; undefined for unknown or foreign ids. */
  close(vm: string, cid: number): Connection | undefined {
    const c = this.open.get(cid);
    if (!c || c.vm !== vm) return undefined;
    this.open.delete(cid);
    return c;
  }

  /** Removes and returns connections past their deadline. */
  expire(): Connection[] {
    const now = this.clock.now();
    const out: Connection[] = [];
    for (const c of this.open.values()) {
      if (c.deadline <= now) out.push(c);
    }
    for (const c of out) this.open.delete(c.cid);
    return out;
  }

  /** Removes and returns every connection of a VM (it crashed or stopped). */
  dropVm(vm: string): Connection[] {
    const out = [...this.open.values()].filter((c) => c.vm === vm);
    for (const c of out) this.open.delete(c.cid);
    return out;
  }
}
