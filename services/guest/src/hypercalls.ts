import type { NatsConnection } from '@vmsim/shared';
import { ErrorCode, HypercallReply, MAX_IO_BYTES, VmsimError, decode, encode, type Hypercall } from '@vmsim/shared';

/** The bus request gives up only after this many timeouts (a guest frozen for longer fails its call). */
const BACKSTOP_FACTOR = 4;
/** A timer this late means the process was stopped (or blocked) meanwhile, not that the answer is late. */
const FROZEN_MS = 1_000;

/**
 * A timeout that counts only time the process ran. A paused VM's process is stopped
 * (SIGSTOP) with hypercalls outstanding; when it runs again, Node fires its overdue timers
 * before it reads the answers already waiting in its socket, so a plain timeout would fail
 * calls the hypervisor answered while the VM was paused (a write kept until a full pool had
 * room, say). A timer that fires far past its time gives the answer another full timeout.
 */
export function frozenAwareTimeout(ms: number): { expired: Promise<never>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    const arm = (wait: number) => {
      const due = Date.now() + wait;
      timer = setTimeout(() => {
        if (Date.now() - due > FROZEN_MS) arm(ms);
        else reject(new Error(`timeout after ${ms} ms`));
      }, wait);
    };
    arm(ms);
  });
  expired.catch(() => undefined);
  return { expired, cancel: () => clearTimeout(timer) };
}

/** What the guest's software sees of its virtual machine: every call is a hypercall. */
export interface Machine {
  cpu(cycles: number): Promise<void>;
  read(disk: number, offset: number, length: number): Promise<Uint8Array>;
  write(disk: number, offset: number, data: Uint8Array): Promise<void>;
  flush(disk: number): Promise<void>;
}

/** The rest of the virtual hardware, which the guest OS itself uses (memory, raw traffic): stressors need it, apps do not. */
export interface FullMachine extends Machine {
  memAlloc(mib: number): Promise<void>;
  memFree(mib: number): Promise<void>;
  netSend(bytes: number): Promise<void>;
  netRecv(bytes: number): Promise<void>;
}

/**
 * Hypercalls over the bus. nats.js multiplexes every request on one inbox subscription
 * under this guest's own inbox prefix, and the device answers that inbox directly.
 */
export class HypercallClient implements FullMachine {
  private nc: NatsConnection;
  private readonly subject: string;
  private readonly timeoutMs: number;
  calls = 0;
  errors = 0;
  /** Simulated ms this guest's requests waited behind others in the hypervisor. */
  waitMs = 0;
  /** Hypercalls sent and not answered (nor timed out) yet: one entry each, removed when it settles. */
  private readonly outstanding = new Set<Hypercall>();

  constructor(nc: NatsConnection, subject: string, timeoutMs: number) {
    this.nc = nc;
    this.subject = subject;
    this.timeoutMs = timeoutMs;
  }

  get pending(): number {
    return this.outstanding.size;
  }

  /** A new bus connection (the guest reconnected after dropping its own). */
  setConnection(nc: NatsConnection): void {
    this.nc = nc;
  }

  async call(hc: Hypercall): Promise<Uint8Array | undefined> {
    this.calls++;
    const entry = { ...hc };
    this.outstanding.add(entry);
    try {
      return await this.send(hc);
    } finally {
      this.outstanding.delete(entry);
    }
  }

  private async send(hc: Hypercall): Promise<Uint8Array | undefined> {
    let bytes: Uint8Array;
    // The request's own timeout is only a backstop; the one that counts is measured in time
    // this process ran (see frozenAwareTimeout).
    const request = this.nc.request(this.subject, encode(hc), { timeout: this.timeoutMs * BACKSTOP_FACTOR });
    const timeout = frozenAwareTimeout(this.timeoutMs);
    try {
      bytes = (await Promise.race([request, timeout.expired])).data;
    } catch (e) {
      this.errors++;
      request.catch(() => undefined);
      throw new VmsimError(ErrorCode.TIMEOUT, `hypercall ${hc.op} got no answer: ${(e as Error).message}`);
    } finally {
      timeout.cancel();
    }
    const r = decode(bytes, HypercallReply, 'hypercall reply');
    if (!r.ok) {
      this.errors++;
      throw new VmsimError(r.code as ErrorCode, r.message);
    }
    this.waitMs += r.waitMs;
    return r.data;
  }

  async cpu(cycles: number): Promise<void> {
    await this.call({ op: 'cpu', cycles: Math.round(cycles) });
  }

  async read(disk: number, offset: number, length: number): Promise<Uint8Array> {
    if (length <= MAX_IO_BYTES)
      return (await this.call({ op: 'disk.read', disk, offset, length })) ?? new Uint8Array(0);
    const out = new Uint8Array(length);
    for (let done = 0; done < length; done += MAX_IO_BYTES) {
      const n = Math.min(MAX_IO_BYTES, length - done);
      out.set(
        (await this.call({ op: 'disk.read', disk, offset: offset + done, length: n })) ?? new Uint8Array(n),
        done,
      );
    }
    return out;
  }

  async write(disk: number, offset: number, data: Uint8Array): Promise<void> {
    for (let done = 0; done < data.length; done += MAX_IO_BYTES) {
      await this.call({
        op: 'disk.write',
        disk,
        offset: offset + done,
        data: data.subarray(done, done + MAX_IO_BYTES),
      });
    }
  }

  async flush(disk: number): Promise<void> {
    await this.call({ op: 'disk.flush', disk });
  }

  async memAlloc(mib: number): Promise<void> {
    await this.call({ op: 'mem.alloc', mib: Math.ceil(mib) });
  }

  async memFree(mib: number): Promise<void> {
    await this.call({ op: 'mem.free', mib: Math.ceil(mib) });
  }

  async netSend(bytes: number): Promise<void> {
    await this.call({ op: 'net.send', bytes: Math.round(bytes) });
  }

  async netRecv(bytes: number): Promise<void> {
    await this.call({ op: 'net.recv', bytes: Math.round(bytes) });
  }
}
