import { ErrorCode, VmsimError } from '@vmsim/shared';
import type { Machine } from '../hypercalls.ts';

const BLOCK = 4096;

/**
 * An in-memory virtual machine for unit tests of server applications: a disk with a
 * volatile write cache that only flush() makes durable (powerCut() drops it), and counters
 * of every hypercall. Calls complete on the next microtask; time is the caller's clock.
 */
export class FakeMachine implements Machine {
  readonly sizeBytes: number;
  private readonly durable = new Map<number, Uint8Array>();
  private readonly cache = new Map<number, Uint8Array>();
  cpuCycles = 0;
  cpuCalls = 0;
  reads = 0;
  writes = 0;
  flushes = 0;
  bytesRead = 0;
  bytesWritten = 0;
  /** When set, the next disk call fails with this error (to test error paths). */
  failNext: VmsimError | undefined;

  constructor(sizeBytes: number) {
    this.sizeBytes = sizeBytes;
  }

  private check(offset: number, length: number): void {
    const e = this.failNext;
    if (e) {
      this.failNext = undefined;
      throw e;
    }
    if (offset < 0 || offset + length > this.sizeBytes) {
      throw new VmsimError(ErrorCode.OUT_OF_RANGE, `access ${offset}..${offset + length} outside ${this.sizeBytes}`);
    }
  }

  private block(i: number): Uint8Array {
    return this.cache.get(i) ?? this.durable.get(i) ?? new Uint8Array(BLOCK);
  }

  async cpu(cycles: number): Promise<void> {
    await Promise.resolve();
    this.cpuCalls++;
    this.cpuCycles += cycles;
  }

  async read(_disk: number, offset: number, length: number): Promise<Uint8Array> {
    await Promise.resolve();
    this.check(offset, length);
    this.reads++;
    this.bytesRead += length;
    const out = new Uint8Array(length);
    for (let done = 0; done < length;) {
      const pos = offset + done;
      const i = Math.floor(pos / BLOCK);
      const within = pos - i * BLOCK;
      const n = Math.min(BLOCK - within, length - done);
      out.set(this.block(i).subarray(within, within + n), done);
      done += n;
    }
    return out;
  }

  async write(_disk: number, offset: number, data: Uint8Array): Promise<void> {
    await Promise.resolve();
    this.check(offset, data.length);
    this.writes++;
    this.bytesWritten += data.length;
    for (let done = 0; done < data.length;) {
      const pos = offset + done;
      const i = Math.floor(pos / BLOCK);
      const within = pos - i * BLOCK;
      const n = Math.min(BLOCK - within, data.length - done);
      const b = new Uint8Array(this.block(i));
      b.set(data.subarray(done, done + n), within);
      this.cache.set(i, b);
      done += n;
    }
  }

  async flush(_disk: number): Promise<void> {
    await Promise.resolve();
    this.check(0, 0);
    this.flushes++;
    for (const [i, b] of this.cache) this.durable.set(i, b);
    this.cache.clear();
  }

  /** A power cut: everything not flushed is gone. */
  powerCut(): void {
    this.cache.clear();
  }
}
