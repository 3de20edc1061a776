import type { Clock, DbRequest, IngressReply, IngressRequest, Logger, TimerHandle } from '@vmsim/shared';
import { ErrorCode, VmsimError, errorReply, toVmsimError } from '@vmsim/shared';
import type { AppContext, ServerApp } from './app.ts';
import type { AreaSpec } from './app-storage.ts';
import { BLOCK, InFlight, RecordFormat, openArea, utf8, wrongApp } from './app-storage.ts';
import { APP_DATA_OFFSET, appDataEnd, digest, hex } from './disk-layout.ts';
import type { Machine } from './hypercalls.ts';
import type { OsProfile } from './os-profiles.ts';

const KiB = 1024;

/**
 * Costs of a small key-value server, of the order measured for Redis, RocksDB or LMDB
 * behind a network protocol on a 2.8 GHz core: parsing a request, hashing the key and
 * framing the reply ≈ 10-20 µs; a few syscalls per request (recv, send, epoll; pread for a
 * get); a couple of cycles per byte to copy and checksum values; tens of ns per key
 * comparison in the index. A group commit adds one pwrite and one fdatasync per batch.
 */
export const DB_COSTS = {
  getCycles: 40_000,
  getSyscalls: 4,
  putCycles: 50_000,
  putSyscalls: 3,
  batchSyscalls: 2,
  scanCycles: 60_000,
  scanSyscalls: 3,
  /** Iterator step and one pread per key scanned. */
  scanKeyCycles: 3_000,
  scanKeySyscalls: 1,
  compareCycles: 60,
  cyclesPerByte: 2,
  rejectCycles: 20_000,
  recoverCyclesPerRecord: 2_000,
  recoverCyclesPerByte: 1,
  replyBytes: 48,
  /**
   * With ackBeforeFlush: simulated ms between background flushes (Redis's appendfsync
   * everysec, MySQL's innodb_flush_log_at_trx_commit=2).
   */
  lazyFlushMs: 1_000,
  maxValueBytes: 64 * KiB,
  defaultScanLimit: 10,
} as const;

/** The log: a header block (magic, install epoch), then records back to back, 8-byte aligned. */
export const DB_LOG_OFFSET = APP_DATA_OFFSET;
export const DB_RECORDS_OFFSET = DB_LOG_OFFSET + BLOCK;
const LOG_AREA: AreaSpec = { offset: DB_LOG_OFFSET, magic: 'VMKVLOG1', name: 'database log' };
/** Records: 'VMKV' magic, epoch, seq, key length u16 at 12, value length u32 at 16, checksum. */
const DB_RECORD = new RecordFormat({
  magic: 0x564b4d56,
  keyLengthAt: 12,
  dataLengthAt: 16,
  maxKeyBytes: 1024,
  maxDataBytes: DB_COSTS.maxValueBytes,
  align: 8,
});

/** Figures sent with heartbeats (a type alias, so it is a `Record<string, number>`). */
export type DbFigures = {
  keys: number;
  logBytes: number;
  puts: number;
  gets: number;
  scans: number;
  batches: number;
  avgBatchSize: number;
  /** Present (1) when the database acknowledges before flushing, with its background flushes. */
  unsafeAck?: number;
  lazyFlushes?: number;
};

interface Entry {
  offset: number;
  size: number;
  seq: number;
}

interface PendingPut {
  key: string;
  at: Entry;
  record: Uint8Array;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** Index of the first key ≥ `key` in a sorted array. */
function lowerBound(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * A log-structured key-value store: PUTs append records to a log on the virtual disk and
 * are acknowledged only once flushed, with group commit (PUTs that arrive during a flush
 * share the next write and flush). An in-memory index (a hash map for lookups, a sorted key
 * array for scans) points at each key's latest record; it is rebuilt from the log on start.
 * Records carry consecutive sequence numbers, so recovery stops at the first torn record.
 */
export class DbApp implements ServerApp {
  readonly footprintMiB = 256;
  private readonly m: Machine;
  private readonly os: OsProfile;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly disk: number;
  private readonly end: number;
  private readonly entries = new Map<string, Entry>();
  private keys: string[] = [];
  private readonly requests = new InFlight();
  private epoch = 0;
  private nextSeq = 1;
  /** Where the next record goes: allocated synchronously, so records follow seq order. */
  private tail = DB_RECORDS_OFFSET;
  /** Records waiting for the next batch, in log order. */
  private pending: PendingPut[] = [];
  private committing = false;
  private commitDone: Promise<void> = Promise.resolve();
  /** A failed batch leaves a hole later records can't be recovered past: refuse writes. */
  private failed: VmsimError | undefined;
  private puts = 0;
  private gets = 0;
  private scans = 0;
  private batches = 0;
  private batchedPuts = 0;
  /** Acknowledge before flushing (unsafe, a teaching toggle): flush in the background instead. */
  private readonly ackBeforeFlush: boolean;
  private lazyFlush: TimerHandle | undefined;
  private lazyFlushDone: Promise<void> = Promise.resolve();
  private lazyFlushes = 0;

  constructor(ctx: AppContext) {
    this.m = ctx.machine;
    this.os = ctx.os;
    this.clock = ctx.clock;
    this.logger = ctx.logger;
    this.disk = ctx.disk;
    // The stressor's scratch area at the end of the disk is not the log's.
    this.end = appDataEnd(ctx.diskBytes);
    this.ackBeforeFlush = ctx.ackBeforeFlush ?? false;
    if (this.ackBeforeFlush) {
      this.logger.warn(
        { lazyFlushMs: DB_COSTS.lazyFlushMs },
        'UNSAFE: the database acknowledges writes before flushing them; a power cut loses acknowledged writes',
      );
    }
  }

  async start(fresh: boolean): Promise<void> {
    this.epoch = await openArea(this.m, this.disk, LOG_AREA, fresh);
    if (!fresh) await this.recover();
  }

  /** Rebuilds the index from the log, up to the first torn or invalid record. */
  private async recover(): Promise<void> {
    const t0 = this.clock.now();
    const area = { epoch: this.epoch, start: DB_RECORDS_OFFSET, firstSeq: this.nextSeq, end: this.end };
    const { tail, records } = await DB_RECORD.scan(this.m, this.disk, area, (r) => {
      this.entries.set(r.key, { offset: r.offset, size: r.size, seq: r.seq });
    });
    this.nextSeq += records;
    this.keys = [...this.entries.keys()].sort();
    const bytes = tail - DB_RECORDS_OFFSET;
    await this.m.cpu(
      records * DB_COSTS.recoverCyclesPerRecord +
        bytes * DB_COSTS.recoverCyclesPerByte +
        this.keys.length * Math.log2(this.keys.length + 1) * DB_COSTS.compareCycles,
    );
    this.tail = tail;
    this.logger.info(
      { records, keys: this.keys.length, logBytes: bytes, simMs: this.clock.now() - t0 },
      'database log recovered',
    );
  }

  async stop(): Promise<void> {
    await this.requests.settled();
    while (this.committing) await this.commitDone;
    if (this.lazyFlush) {
      this.clock.cancel(this.lazyFlush);
      this.lazyFlush = undefined;
      await this.m.flush(this.disk);
    }
    await this.lazyFlushDone;
  }

  figures(): DbFigures {
    return {
      keys: this.keys.length,
      logBytes: this.tail - DB_RECORDS_OFFSET,
      puts: this.puts,
      gets: this.gets,
      scans: this.scans,
      batches: this.batches,
      avgBatchSize: this.batches > 0 ? this.batchedPuts / this.batches : 0,
      ...(this.ackBeforeFlush ? { unsafeAck: 1, lazyFlushes: this.lazyFlushes } : {}),
    };
  }

  handle(req: IngressRequest): Promise<IngressReply> {
    if (req.app !== 'db') return Promise.resolve(wrongApp('a database', req.app));
    return this.requests.serve(this.dispatch(req));
  }

  private dispatch(req: DbRequest): Promise<IngressReply> {
    switch (req.op) {
      case 'GET':
        return this.get(req);
      case 'PUT':
        return this.put(req);
      case 'SCAN':
        return this.scan(req);
    }
  }

  /** CPU of a binary search over the sorted keys. */
  private searchCycles(): number {
    return Math.ceil(Math.log2(this.keys.length + 2)) * DB_COSTS.compareCycles;
  }

  private async put(req: DbRequest): Promise<IngressReply> {
    this.puts++;
    const value = req.value;
    if (value === undefined) {
      await this.m.cpu(DB_COSTS.rejectCycles);
      return errorReply(ErrorCode.SCHEMA, 'PUT needs a value');
    }
    if (value.length > DB_COSTS.maxValueBytes) {
      await this.m.cpu(DB_COSTS.rejectCycles);
      return errorReply(ErrorCode.OUT_OF_RANGE, `value of ${value.length} bytes exceeds ${DB_COSTS.maxValueBytes}`);
    }
    const key = utf8.encode(req.key);
    await this.m.cpu(
      DB_COSTS.putCycles +
        DB_COSTS.putSyscalls * this.os.syscallCycles +
        (key.length + value.length) * DB_COSTS.cyclesPerByte +
        this.searchCycles(),
    );
    if (this.failed) throw this.failed;
    const size = DB_RECORD.size(key.length, value.length);
    if (this.tail + size > this.end) {
      return errorReply(ErrorCode.NO_SPACE, `the database log is full (${this.tail - DB_RECORDS_OFFSET} bytes)`);
    }
    // Seq, offset and queueing happen with no await in between: the log stays in seq order.
    const at: Entry = { offset: this.tail, size, seq: this.nextSeq++ };
    this.tail += size;
    const record = DB_RECORD.encode(this.epoch, at.seq, key, value);
    await new Promise<void>((resolve, reject) => {
      this.pending.push({ key: req.key, at, record, resolve, reject });
      this.kick();
    });
    return { ok: true, status: 200, bytes: DB_COSTS.replyBytes, digest: hex(digest(value)), meta: { seq: at.seq } };
  }

  private kick(): void {
    if (this.committing) return;
    this.committing = true;
    this.commitDone = this.commitBatches();
  }

  /** Group commit: each round takes every queued record, writes them at once, flushes once. */
  private async commitBatches(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const batch = this.pending;
        this.pending = [];
        const first = batch[0]!.at;
        const last = batch.at(-1)!.at;
        const buf = new Uint8Array(last.offset + last.size - first.offset);
        for (const p of batch) buf.set(p.record, p.at.offset - first.offset);
        try {
          await this.m.cpu(DB_COSTS.batchSyscalls * this.os.syscallCycles);
          await this.m.write(this.disk, first.offset, buf);
          // Unsafe: the records sit in the disk's volatile cache when the client hears "ok".
          if (this.ackBeforeFlush) this.scheduleLazyFlush();
          else await this.m.flush(this.disk);
        } catch (e) {
          this.fail(e, batch);
          return;
        }
        this.batches++;
        this.batchedPuts += batch.length;
        for (const p of batch) this.apply(p.key, p.at);
        for (const p of batch) p.resolve();
      }
    } finally {
      this.committing = false;
    }
  }

  /** The background flush of the unsafe mode: at most one pending, lazyFlushMs after a write. */
  private scheduleLazyFlush(): void {
    if (this.lazyFlush) return;
    this.lazyFlush = this.clock.at(this.clock.now() + DB_COSTS.lazyFlushMs, () => {
      this.lazyFlush = undefined;
      this.lazyFlushDone = this.m.flush(this.disk).then(
        () => void this.lazyFlushes++,
        (e: unknown) => this.fail(e, []),
      );
    });
  }

  private fail(e: unknown, batch: PendingPut[]): void {
    const ve = toVmsimError(e);
    this.failed ??= new VmsimError(ErrorCode.IO, `database log write failed, refusing writes: ${ve.message}`);
    this.logger.error({ err: ve.message }, 'database log write failed');
    const lost = [...batch, ...this.pending];
    this.pending = [];
    for (const p of lost) p.reject(this.failed);
  }

  /** Points the index at a durable record (inserting a new key at its sorted place). */
  private apply(key: string, at: Entry): void {
    if (!this.entries.has(key)) this.keys.splice(lowerBound(this.keys, key), 0, key);
    this.entries.set(key, at);
  }

  /** One record read back from the log, checked against its index entry. */
  private async readValue(key: string, at: Entry): Promise<Uint8Array> {
    const rec = await this.m.read(this.disk, at.offset, at.size);
    const kv = DB_RECORD.decode(rec, this.epoch, at.seq);
    if (!kv || kv.key !== key) throw new VmsimError(ErrorCode.IO, `log record ${at.seq} of key ${key} is corrupt`);
    return kv.data;
  }

  private async get(req: DbRequest): Promise<IngressReply> {
    this.gets++;
    await this.m.cpu(DB_COSTS.getCycles + DB_COSTS.getSyscalls * this.os.syscallCycles);
    const at = this.entries.get(req.key);
    if (!at) return { ok: true, status: 404, bytes: DB_COSTS.replyBytes };
    const value = await this.readValue(req.key, at);
    await this.m.cpu(value.length * DB_COSTS.cyclesPerByte);
    return {
      ok: true,
      status: 200,
      bytes: DB_COSTS.replyBytes + value.length,
      data: value.slice(),
      digest: hex(digest(value)),
      meta: { seq: at.seq },
    };
  }

  private async scan(req: DbRequest): Promise<IngressReply> {
    this.scans++;
    const limit = req.limit ?? DB_COSTS.defaultScanLimit;
    await this.m.cpu(DB_COSTS.scanCycles + DB_COSTS.scanSyscalls * this.os.syscallCycles + this.searchCycles());
    const i = lowerBound(this.keys, req.key);
    const keys = this.keys.slice(i, i + limit);
    let h = digest(new Uint8Array(0));
    let bytes = 0;
    for (const key of keys) {
      const value = await this.readValue(key, this.entries.get(key)!);
      await this.m.cpu(
        DB_COSTS.scanKeyCycles +
          DB_COSTS.scanKeySyscalls * this.os.syscallCycles +
          value.length * DB_COSTS.cyclesPerByte,
      );
      h = digest(value, h);
      bytes += key.length + value.length;
    }
    return {
      ok: true,
      status: 200,
      bytes: DB_COSTS.replyBytes + bytes,
      digest: hex(h),
      meta: { count: keys.length },
    };
  }
}
