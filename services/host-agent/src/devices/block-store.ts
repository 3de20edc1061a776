import fs from 'node:fs';
import { ErrorCode, VmsimError } from '@vmsim/shared';

const BLOCK = 4096;
/** One block of zeros shared by every zeroed block in any cache: cached blocks are never mutated in place. */
const ZERO_BLOCK = Buffer.alloc(BLOCK);

export interface BlockStoreOptions {
  /** Bytes the volatile write cache holds before writes go straight to the backing file. */
  cacheBytes: number;
  /** fdatasync on flush: protects against the real machine crashing, at real cost. */
  fsync: boolean;
}

/**
 * The real bytes of one physical disk: a sparse backing file plus a volatile write cache
 * in this process. Written blocks reach the file only on flush (or when the cache must
 * make room), so killing the host-agent loses unflushed writes as a power cut would.
 */
export class BlockStore {
  readonly path: string;
  readonly capacityBytes: number;
  private fd: number;
  private readonly cache = new Map<number, Buffer>();
  private readonly opts: BlockStoreOptions;
  /** Flushes in progress: while one runs, writes stay in the cache so none can overtake it. */
  private flushing = 0;

  private constructor(path: string, fd: number, capacityBytes: number, opts: BlockStoreOptions) {
    this.path = path;
    this.fd = fd;
    this.capacityBytes = capacityBytes;
    this.opts = opts;
  }

  static open(path: string, capacityBytes: number, opts: BlockStoreOptions): BlockStore {
    const fd = fs.openSync(path, fs.existsSync(path) ? 'r+' : 'w+');
    const size = fs.fstatSync(fd).size;
    // Sparse: the file claims the whole capacity but holds only what was written.
    if (size < capacityBytes) fs.ftruncateSync(fd, capacityBytes);
    return new BlockStore(path, fd, capacityBytes, opts);
  }

  get flushesInProgress(): number {
    return this.flushing;
  }

  get dirtyBytes(): number {
    return this.cache.size * BLOCK;
  }

  /** Bytes the backing file really occupies on the machine's disk. */
  allocatedBytes(): number {
    return fs.fstatSync(this.fd).blocks * 512;
  }

  private check(offset: number, length: number): void {
    if (offset < 0 || length < 0 || offset + length > this.capacityBytes) {
      throw new VmsimError(
        ErrorCode.OUT_OF_RANGE,
        `bytes ${offset}..${offset + length} are outside the disk (capacity ${this.capacityBytes})`,
      );
    }
  }

  private readBlock(index: number): Buffer {
    const cached = this.cache.get(index);
    if (cached) return cached;
    const buf = Buffer.alloc(BLOCK);
    fs.readSync(this.fd, buf, 0, BLOCK, index * BLOCK);
    return buf;
  }

  read(offset: number, length: number): Buffer {
    this.check(offset, length);
    const out = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const pos = offset + done;
      const index = Math.floor(pos / BLOCK);
      const within = pos - index * BLOCK;
      const n = Math.min(BLOCK - within, length - done);
      const cached = this.cache.get(index);
      if (cached) cached.copy(out, done, within, within + n);
      else {
        // Uncached runs are read straight from the file, as one call.
        let run = n;
        let next = index + 1;
        while (done + run < length && !this.cache.has(next)) {
          run += Math.min(BLOCK, length - done - run);
          next++;
        }
        fs.readSync(this.fd, out, done, run, pos);
        done += run;
        continue;
      }
      done += n;
    }
    return out;
  }

  /**
   * `adopt`: the caller hands `data` over and never changes it again, so whole blocks are
   * cached as views of it instead of copies (a copy's freshly read bytes).
   */
  write(offset: number, data: Uint8Array, adopt = false): void {
    this.check(offset, data.length);
    forEachBlock(offset, data.length, (index, within, n, done) => {
      let block: Buffer;
      if (n === BLOCK && adopt) {
        block = Buffer.from(data.buffer, data.byteOffset + done, BLOCK);
      } else {
        block = n === BLOCK ? Buffer.allocUnsafe(BLOCK) : Buffer.from(this.readBlock(index));
        block.set(data.subarray(done, done + n), within);
      }
      this.put(index, block);
    });
  }

  /** Writes `length` zero bytes; whole blocks all share one zero block, so a large fill allocates nothing per block. */
  zero(offset: number, length: number): void {
    this.check(offset, length);
    forEachBlock(offset, length, (index, within, n) => {
      this.put(index, n === BLOCK ? ZERO_BLOCK : Buffer.from(this.readBlock(index)).fill(0, within, within + n));
    });
  }

  /** Caches a new version of one block, or writes it through when the cache is full. */
  private put(index: number, block: Buffer): void {
    if (this.flushing === 0 && this.cache.size * BLOCK >= this.opts.cacheBytes && !this.cache.has(index)) {
      // Cache full: write through, like a drive whose cache is saturated.
      fs.writeSync(this.fd, block, 0, BLOCK, index * BLOCK);
    } else {
      this.cache.delete(index);
      this.cache.set(index, block);
    }
  }

  /**
   * Makes every block cached now durable; returns the bytes destaged. Contiguous blocks go
   * out in one vectored write, off the event loop, so a large flush does not stall the
   * device timers of everything else.
   */
  async flush(): Promise<number> {
    const blocks = [...this.cache.entries()].sort((a, b) => a[0] - b[0]);
    this.flushing++;
    try {
      for (let i = 0; i < blocks.length;) {
        let j = i + 1;
        while (j < blocks.length && blocks[j]![0] === blocks[j - 1]![0] + 1) j++;
        const run = blocks.slice(i, j);
        await new Promise<void>((res, rej) =>
          fs.writev(
            this.fd,
            run.map(([, b]) => b),
            run[0]![0] * BLOCK,
            (e) => (e ? rej(e) : res()),
          ),
        );
        i = j;
      }
      for (const [index, block] of blocks) if (this.cache.get(index) === block) this.cache.delete(index);
      if (this.opts.fsync) await new Promise<void>((res, rej) => fs.fdatasync(this.fd, (e) => (e ? rej(e) : res())));
    } finally {
      this.flushing--;
    }
    return blocks.length * BLOCK;
  }

  /** A power cut: the volatile cache is gone. */
  dropCache(): void {
    this.cache.clear();
  }

  close(): void {
    if (this.fd < 0) return;
    fs.closeSync(this.fd);
    this.fd = -1;
  }
}

/** Walks a byte range block by block: the block, where in it the range starts, how many bytes, and how many came before. */
function forEachBlock(
  offset: number,
  length: number,
  fn: (index: number, within: number, n: number, done: number) => void,
): void {
  for (let done = 0; done < length;) {
    const pos = offset + done;
    const index = Math.floor(pos / BLOCK);
    const within = pos - index * BLOCK;
    const n = Math.min(BLOCK - within, length - done);
    fn(index, within, n, done);
    done += n;
  }
}
