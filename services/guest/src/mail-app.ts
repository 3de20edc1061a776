import type { IngressReply, IngressRequest, Logger, MailRequest, Clock } from '@vmsim/shared';
import { ErrorCode, VmsimError, errorReply, toVmsimError } from '@vmsim/shared';
import type { AppContext, ServerApp } from './app.ts';
import type { AreaSpec } from './app-storage.ts';
import { BLOCK, InFlight, RecordFormat, openArea, utf8, wrongApp } from './app-storage.ts';
import { APP_DATA_OFFSET, appDataEnd, digest, hex } from './disk-layout.ts';
import type { Machine } from './hypercalls.ts';
import type { OsProfile } from './os-profiles.ts';

const KiB = 1024;

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
const SPOOL_AREA: AreaSpec = { offset: SPOOL_OFFSET, magic: 'VMSPOOL1', name: 'mail spool' };
/** Records: 'VMML' magic, epoch, id, body length u32 at 12, mailbox length u16 at 16, checksum. */
const SPOOL_RECORD = new RecordFormat({
  magic: 0x4c4d4d56,
  keyLengthAt: 16,
  dataLengthAt: 12,
  maxKeyBytes: 4 * 128,
  maxDataBytes: MAIL_COSTS.maxBodyBytes,
  align: BLOCK,
});

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
  private readonly requests = new InFlight();
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
    // The stressor's scratch area at the end of the disk is not the spool's.
    this.end = appDataEnd(ctx.diskBytes);
  }

  async start(fresh: boolean): Promise<void> {
    this.epoch = await openArea(this.m, this.disk, SPOOL_AREA, fresh);
    if (!fresh) await this.recover();
  }

  /** Rebuilds the index from the spool, up to the first torn or invalid record. */
  private async recover(): Promise<void> {
    const t0 = this.clock.now();
    const area = { epoch: this.epoch, start: SPOOL_RECORDS_OFFSET, firstSeq: this.nextId, end: this.end };
    const { tail, records } = await SPOOL_RECORD.scan(this.m, this.disk, area, (r) => {
      this.add(r.key, r.seq, { offset: r.offset, size: r.size });
    });
    this.nextId += records;
    const bytes = tail - SPOOL_RECORDS_OFFSET;
    await this.m.cpu(records * MAIL_COSTS.recoverCyclesPerRecord + bytes * MAIL_COSTS.recoverCyclesPerByte);
    this.tail = this.writtenEnd = this.durableEnd = tail;
    this.logger.info({ messages: records, spoolBytes: bytes, simMs: this.clock.now() - t0 }, 'mail spool recovered');
  }

  async stop(): Promise<void> {
    await this.requests.settled();
  }

  figures(): MailFigures {
    return {
      messages: this.messages,
      spoolBytes: this.tail - SPOOL_RECORDS_OFFSET,
      submits: this.submits,
      fetches: this.fetches,
    };
  }

  handle(req: IngressRequest): Promise<IngressReply> {
    if (req.app !== 'mail') return Promise.resolve(wrongApp('a mail server', req.app));
    return this.requests.serve(this.dispatch(req));
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
    const size = SPOOL_RECORD.size(mailbox.length, body.length);
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
      await this.m.write(this.disk, offset, SPOOL_RECORD.encode(this.epoch, id, mailbox, body));
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
    const msg = SPOOL_RECORD.decode(rec, this.epoch, req.id);
    if (!msg || msg.key !== req.mailbox)
      throw new VmsimError(ErrorCode.IO, `spool record of message ${req.id} is corrupt`);
    const body = msg.data;
    await this.m.cpu(body.length * MAIL_COSTS.fetchCyclesPerByte);
    return {
      ok: true,
      status: 200,
      bytes: MAIL_COSTS.replyBytes + body.length,
      data: body.slice(),
      digest: hex(digest(body)),
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
