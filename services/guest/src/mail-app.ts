import type { IngressReply, IngressRequest, Logger, MailRequest, Clock } from '@vmsim/shared';
import { ErrorCode, VmsimError, errorReply, toVmsimError } from '@vmsim/shared';
import type { AppContext, ServerApp } from './app.ts';
import { APP_DATA_OFFSET, digest, hex } from './disk-layout.ts';
import type { Machine } from './hypercalls.ts';
import type { OsProfile } from './os-profiles.ts';

const KiB = 1024;
const BLOCK = 4 * KiB;

/**
 * Costs of an MTA plus a POP/IMAP server, of the order measured for Postfix and Dovecot on
 * current x86 cores (2.8 GHz): accepting a message takes a few hundred µs of CPU across the
 * SMTP dialogue, cleanup and queue manager (≈ 300 µs), some tens of syscalls (a socket read
 * and write per SMTP command, queue file open/write/fsync/rename) and a few cycles per byte
 * to scan DATA (CRLF, dot-unstuffing, headers). Fetching a message is ≈ 100 µs plus a copy.
 */
export const MAIL_COSTS = {
  submitCycles: 850_000,
  submitSyscalls: 30,
  submitCyclesPerByte: 8,
  fetchCycles: 280_000,
  fetchSyscalls: 10,
  fetchCyclesPerByte: 2,
  listCycles: 120_000,
  listSyscalls: 6,
  listCyclesPerMessage: 300,
  rejectCycles: 40_000,
  recoverCyclesPerRecord: 4_000,
  recoverCyclesPerByte: 1,
  /** An SMTP "250 2.0.0 Ok: queued as …" line or a POP/IMAP status line. */
  replyBytes: 64,
  maxBodyBytes: 256 * KiB,
} as const;

/** The spool: a header block (magic, install epoch), then one 4 KiB aligned record per message. */
export const SPOOL_OFFSET = APP_DATA_OFFSET;
export const SPOOL_RECORDS_OFFSET = SPOOL_OFFSET + BLOCK;
const SPOOL_MAGIC = 'VMSPOOL1';
/** 'VMML' little-endian. */
const REC_MAGIC = 0x4c4d4d56;
/** magic u32, epoch u32, id u32, body length u32, mailbox length u16, reserved u16, checksum u32. */
const REC_HEADER = 24;
const MAX_MAILBOX_BYTES = 4 * 128;
/** Recovery reads the spool in chunks this large (few hypercalls, bounded memory). */
const SCAN_CHUNK = 1024 * KiB;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

function headerBlock(epoch: number): Uint8Array {
  const b = new Uint8Array(BLOCK);
  b.set(utf8.encode(SPOOL_MAGIC));
  view(b).setUint32(8, epoch, true);
  view(b).setUint32(12, digest(b.subarray(0, 12)), true);
  return b;
}

function headerEpoch(b: Uint8Array): number | undefined {
  if (fromUtf8.decode(b.subarray(0, 8)) !== SPOOL_MAGIC) return undefined;
  return view(b).getUint32(12, true) === digest(b.subarray(0, 12)) ? view(b).getUint32(8, true) : undefined;
}

function recordChecksum(rec: Uint8Array, payload: number): number {
  return digest(rec.subarray(REC_HEADER, REC_HEADER + payload), digest(rec.subarray(0, 20)));
}

function encodeRecord(epoch: number, id: number, mailbox: Uint8Array, body: Uint8Array): Uint8Array {
  const rec = new Uint8Array(alignUp(REC_HEADER + mailbox.length + body.length, BLOCK));
  const v = view(rec);
  v.setUint32(0, REC_MAGIC, true);
  v.setUint32(4, epoch, true);
  v.setUint32(8, id, true);
  v.setUint32(12, body.length, true);
  v.setUint16(16, mailbox.length, true);
  rec.set(mailbox, REC_HEADER);
  rec.set(body, REC_HEADER + mailbox.length);
  v.setUint32(20, recordChecksum(rec, mailbox.length + body.length), true);
  return rec;
}

interface RecordHead {
  mailboxBytes: number;
  bodyBytes: number;
  size: number;
}

/** The header of the record expected next in the spool, or undefined if it is not that record. */
function parseHead(head: Uint8Array, epoch: number, id: number): RecordHead | undefined {
  const v = view(head);
  if (v.getUint32(0, true) !== REC_MAGIC || v.getUint32(4, true) !== epoch || v.getUint32(8, true) !== id)
    return undefined;
  const bodyBytes = v.getUint32(12, true);
  const mailboxBytes = v.getUint16(16, true);
  if (bodyBytes > MAIL_COSTS.maxBodyBytes || mailboxBytes === 0 || mailboxBytes > MAX_MAILBOX_BYTES) return undefined;
  return { mailboxBytes, bodyBytes, size: alignUp(REC_HEADER + mailboxBytes + bodyBytes, BLOCK) };
}

/** A whole record's mailbox and body, if its checksum holds. */
function parseRecord(rec: Uint8Array, h: RecordHead): { mailbox: string; body: Uint8Array } | undefined {
  if (view(rec).getUint32(20, true) !== recordChecksum(rec, h.mailboxBytes + h.bodyBytes)) return undefined;
  const mailbox = fromUtf8.decode(rec.subarray(REC_HEADER, REC_HEADER + h.mailboxBytes));
  const start = REC_HEADER + h.mailboxBytes;
  return { mailbox, body: rec.subarray(start, start + h.bodyBytes) };
}

/** Reads a region front to back in large chunks, so a recovery scan costs few hypercalls. */
class ChunkReader {
  private readonly m: Machine;
  private readonly disk: number;
  private readonly end: number;
  private start = 0;
  private buf: Uint8Array = new Uint8Array(0);

  constructor(m: Machine, disk: number, end: number) {
    this.m = m;
    this.disk = disk;
    this.end = end;
  }

  /** The bytes at [offset, offset+length), or undefined past the end of the region. */
  async bytes(offset: number, length: number): Promise<Uint8Array | undefined> {
    if (offset + length > this.end) return undefined;
    if (offset < this.start || offset + length > this.start + this.buf.length) {
      this.buf = await this.m.read(this.disk, offset, Math.min(Math.max(length, SCAN_CHUNK), this.end - offset));
      this.start = offset;
    }
    return this.buf.subarray(offset - this.start, offset - this.start + length);
  }
}

/** Figures sent with heartbeats (a type alias, so it is a `Record<string, number>`). */
export type MailFigures = { messages: number; spoolBytes: number; submits: number; fetches: number };

interface Stored {
  offset: number;
  size: number;
}

interface Waiter {
  end: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * A mail server: SUBMIT appends the message to a spool on the virtual disk and answers 250
 * only once the spool is flushed (as MTAs fsync the queue file before "250 OK"); FETCH reads
 * it back and checks its checksum; LIST counts a mailbox. Message ids are global and
 * sequential, which lets recovery tell the next record from stale bytes.
 */
export class MailApp implements ServerApp {
  readonly footprintMiB = 64;
  private readonly m: Machine;
  private readonly os: OsProfile;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly disk: number;
  private readonly end: number;
  private readonly index = new Map<string, Map<number, Stored>>();
  private readonly inFlight = new Set<Promise<IngressReply>>();
  private epoch = 0;
  private nextId = 1;
  /** Where the next record goes: allocated synchronously, so concurrent SUBMITs never overlap. */
  private tail = SPOOL_RECORDS_OFFSET;
  /** Records allocated whose write may not have completed yet, in spool order. */
  private readonly unwritten: { end: number; written: boolean }[] = [];
  /** Everything before this offset has been written (not necessarily flushed). */
  private writtenEnd = SPOOL_RECORDS_OFFSET;
  /** Everything before this offset is on stable storage. */
  private durableEnd = SPOOL_RECORDS_OFFSET;
  private waiters: Waiter[] = [];
  private flushing = false;
  /** A failed spool write leaves a hole later records can't be recovered past: refuse writes. */
  private failed: VmsimError | undefined;
  private messages = 0;
  private submits = 0;
  private fetches = 0;

  constructor(ctx: AppContext) {
    this.m = ctx.machine;
    this.os = ctx.os;
    this.clock = ctx.clock;
    this.logger = ctx.logger;
    this.disk = ctx.disk;
    this.end = ctx.diskBytes;
  }

  async start(fresh: boolean): Promise<void> {
    const old = headerEpoch(await this.m.read(this.disk, SPOOL_OFFSET, BLOCK));
    if (fresh) {
      // A new epoch makes records left by an earlier install invalid without erasing them.
      this.epoch = ((old ?? 0) + 1) >>> 0 || 1;
      await this.m.write(this.disk, SPOOL_OFFSET, headerBlock(this.epoch));
      await this.m.flush(this.disk);
      return;
    }
    if (old === undefined) throw new VmsimError(ErrorCode.IO, 'the mail spool header is missing or corrupt');
    this.epoch = old;
    await this.recover();
  }

  /** Rebuilds the index from the spool, up to the first torn or invalid record. */
  private async recover(): Promise<void> {
    const t0 = this.clock.now();
    const reader = new ChunkReader(this.m, this.disk, this.end);
    let pos = SPOOL_RECORDS_OFFSET;
    let bytes = 0;
    let records = 0;
    for (;;) {
      const head = await reader.bytes(pos, REC_HEADER);
      const h = head && parseHead(head, this.epoch, this.nextId);
      const rec = h && (await reader.bytes(pos, h.size));
      const msg = h && rec && parseRecord(rec, h);
      if (!h || !msg) break;
      this.add(msg.mailbox, this.nextId++, { offset: pos, size: h.size });
      pos += h.size;
      bytes += h.size;
      records++;
    }
    await this.m.cpu(records * MAIL_COSTS.recoverCyclesPerRecord + bytes * MAIL_COSTS.recoverCyclesPerByte);
    this.tail = this.writtenEnd = this.durableEnd = pos;
    this.logger.info({ messages: records, spoolBytes: bytes, simMs: this.clock.now() - t0 }, 'mail spool recovered');
  }

  async stop(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }

  figures(): MailFigures {
    return {
      messages: this.messages,
      spoolBytes: this.tail - SPOOL_RECORDS_OFFSET,
      submits: this.submits,
      fetches: this.fetches,
    };
  }

  async handle(req: IngressRequest): Promise<IngressReply> {
    if (req.app !== 'mail') return errorReply(ErrorCode.SCHEMA, `this VM runs a mail server, not ${req.app}`);
    const p = this.dispatch(req).catch((e: unknown) => {
      const ve = toVmsimError(e);
      return errorReply(ve.code, ve.message);
    });
    this.inFlight.add(p);
    try {
      return await p;
    } finally {
      this.inFlight.delete(p);
    }
  }

  private dispatch(req: MailRequest): Promise<IngressReply> {
    switch (req.op) {
      case 'SUBMIT':
        return this.submit(req);
      case 'FETCH':
        return this.fetch(req);
      case 'LIST':
        return this.list(req);
    }
  }

  private async submit(req: MailRequest): Promise<IngressReply> {
    this.submits++;
    const body = req.body ?? new Uint8Array(0);
    if (body.length > MAIL_COSTS.maxBodyBytes) {
      await this.m.cpu(MAIL_COSTS.rejectCycles);
      return errorReply(ErrorCode.OUT_OF_RANGE, `message of ${body.length} bytes exceeds ${MAIL_COSTS.maxBodyBytes}`);
    }
    await this.m.cpu(
      MAIL_COSTS.submitCycles +
        MAIL_COSTS.submitSyscalls * this.os.syscallCycles +
        body.length * MAIL_COSTS.submitCyclesPerByte,
    );
    if (this.failed) throw this.failed;
    const mailbox = utf8.encode(req.mailbox);
    const size = alignUp(REC_HEADER + mailbox.length + body.length, BLOCK);
    if (this.tail + size > this.end) {
      return errorReply(ErrorCode.NO_SPACE, `the mail spool is full (${this.tail - SPOOL_RECORDS_OFFSET} bytes)`);
    }
    // Id and offset are taken together with no await in between: records follow id order.
    const id = this.nextId++;
    const offset = this.tail;
    this.tail += size;
    const slot = { end: this.tail, written: false };
    this.unwritten.push(slot);
    try {
      await this.m.write(this.disk, offset, encodeRecord(this.epoch, id, mailbox, body));
    } catch (e) {
      this.fail(e);
      throw e;
    }
    slot.written = true;
    while (this.unwritten[0]?.written) this.writtenEnd = this.unwritten.shift()!.end;
    await this.durable(slot.end);
    this.add(req.mailbox, id, { offset, size });
    return { ok: true, status: 250, bytes: MAIL_COSTS.replyBytes, digest: hex(digest(body)), meta: { id } };
  }

  /**
   * Resolves once the spool up to `end` is on stable storage. Recovery stops at the first
   * missing record, so a message is only durable once every record before it is too: a
   * flush covers the prefix written when it was issued, and one flush serves every SUBMIT
   * waiting on that prefix.
   */
  private durable(end: number): Promise<void> {
    if (end <= this.durableEnd) return Promise.resolve();
    if (this.failed) return Promise.reject(this.failed);
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ end, resolve, reject }));
    void this.pump();
    return done;
  }

  private async pump(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.writtenEnd > this.durableEnd && this.waiters.some((w) => w.end <= this.writtenEnd)) {
        const target = this.writtenEnd;
        await this.m.flush(this.disk);
        this.durableEnd = target;
        const ready = this.waiters.filter((w) => w.end <= target);
        this.waiters = this.waiters.filter((w) => w.end > target);
        for (const w of ready) w.resolve();
      }
    } catch (e) {
      this.fail(e);
    } finally {
      this.flushing = false;
    }
  }

  private fail(e: unknown): void {
    const ve = toVmsimError(e);
    this.failed ??= new VmsimError(ErrorCode.IO, `mail spool write failed, refusing mail: ${ve.message}`);
    this.logger.error({ err: ve.message }, 'mail spool write failed');
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(this.failed);
  }

  private add(mailbox: string, id: number, at: Stored): void {
    let box = this.index.get(mailbox);
    if (!box) this.index.set(mailbox, (box = new Map()));
    box.set(id, at);
    this.messages++;
  }

  private async fetch(req: MailRequest): Promise<IngressReply> {
    this.fetches++;
    if (req.id === undefined) {
      await this.m.cpu(MAIL_COSTS.rejectCycles);
      return errorReply(ErrorCode.SCHEMA, 'FETCH needs a message id');
    }
    const at = this.index.get(req.mailbox)?.get(req.id);
    if (!at) {
      await this.m.cpu(MAIL_COSTS.rejectCycles + 4 * this.os.syscallCycles);
      return { ok: true, status: 404, bytes: MAIL_COSTS.replyBytes };
    }
    await this.m.cpu(MAIL_COSTS.fetchCycles + MAIL_COSTS.fetchSyscalls * this.os.syscallCycles);
    const rec = await this.m.read(this.disk, at.offset, at.size);
    const h = parseHead(rec, this.epoch, req.id);
    const msg = h && parseRecord(rec, h);
    if (!msg || msg.mailbox !== req.mailbox)
      throw new VmsimError(ErrorCode.IO, `spool record of message ${req.id} is corrupt`);
    await this.m.cpu(msg.body.length * MAIL_COSTS.fetchCyclesPerByte);
    return {
      ok: true,
      status: 200,
      bytes: MAIL_COSTS.replyBytes + msg.body.length,
      data: msg.body.slice(),
      digest: hex(digest(msg.body)),
      meta: { id: req.id },
    };
  }

  private async list(req: MailRequest): Promise<IngressReply> {
    const count = this.index.get(req.mailbox)?.size ?? 0;
    await this.m.cpu(
      MAIL_COSTS.listCycles + MAIL_COSTS.listSyscalls * this.os.syscallCycles + count * MAIL_COSTS.listCyclesPerMessage,
    );
    // A POP3-style listing: one "id size" line per message.
    return { ok: true, status: 200, bytes: MAIL_COSTS.replyBytes + 16 * count, meta: { count } };
  }
}
