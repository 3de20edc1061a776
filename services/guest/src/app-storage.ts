import type { ErrorReply, IngressReply } from '@vmsim/shared';
import { ErrorCode, MAX_IO_BYTES, VmsimError, errorReply, toVmsimError } from '@vmsim/shared';
import { digest } from './disk-layout.ts';
import type { Machine } from './hypercalls.ts';

/**
 * What the server applications that keep data in their own disk area (db log, mail spool,
 * file directory, game save) had each written the same way: the area header, the record
 * framing and recovery scan of the two append-only stores, the checksum every structure
 * carries, chunked table I/O and the replies to bad requests. One copy, so a fix to the
 * framing or the scan reaches every app; each app keeps its own layout, limits and costs.
 */

const KiB = 1024;
/** The disk block: an area header fills one; tables, spool records and extents are padded to it. */
export const BLOCK = 4 * KiB;
/** Recovery reads an area in chunks this large (few hypercalls, bounded memory). */
const SCAN_CHUNK = 1024 * KiB;

export const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** `n` rounded up to whole disk blocks. */
export function blockAlign(n: number): number {
  return alignUp(n, BLOCK);
}

/**
 * The checksum of every on-disk structure here: FNV-1a over the header up to the checksum
 * field, continued over the body at [bodyStart, bodyEnd). Bytes in between are not covered.
 */
export function sealChecksum(buf: Uint8Array, checksumAt: number, bodyStart: number, bodyEnd: number): number {
  return digest(buf.subarray(bodyStart, bodyEnd), digest(buf.subarray(0, checksumAt)));
}

/** An append-only area: where its header block sits, its magic, and what to call it in errors. */
export interface AreaSpec {
  offset: number;
  /** Eight ASCII characters. */
  magic: string;
  name: string;
}

/**
 * The header block of an append-only area: magic (8 bytes), install number ("epoch") u32,
 * checksum u32. Each install bumps the epoch and records carry it, so records an earlier
 * install left on the disk are stale without being erased.
 */
export function areaHeader(magic: string, epoch: number): Uint8Array {
  const b = new Uint8Array(BLOCK);
  b.set(utf8.encode(magic));
  view(b).setUint32(8, epoch, true);
  view(b).setUint32(12, digest(b.subarray(0, 12)), true);
  return b;
}

/** The epoch of a header block, or undefined if it is not a valid header with this magic. */
export function areaEpoch(magic: string, b: Uint8Array): number | undefined {
  if (fromUtf8.decode(b.subarray(0, 8)) !== magic) return undefined;
  return view(b).getUint32(12, true) === digest(b.subarray(0, 12)) ? view(b).getUint32(8, true) : undefined;
}

/**
 * Reads an area's header and returns its epoch. On install (`fresh`) it writes and flushes a
 * header with the next epoch instead; otherwise a missing or corrupt header is an IO error.
 */
export async function openArea(m: Machine, disk: number, area: AreaSpec, fresh: boolean): Promise<number> {
  const old = areaEpoch(area.magic, await m.read(disk, area.offset, BLOCK));
  if (fresh) {
    // A new epoch makes records left by an earlier install invalid without erasing them.
    const epoch = ((old ?? 0) + 1) >>> 0 || 1;
    await m.write(disk, area.offset, areaHeader(area.magic, epoch));
    await m.flush(disk);
    return epoch;
  }
  if (old === undefined) throw new VmsimError(ErrorCode.IO, `the ${area.name} header is missing or corrupt`);
  return old;
}

/**
 * Record header bytes: magic u32, epoch u32, sequence number u32, then (at offsets the layout
 * chooses within bytes 12-19) the key length u16 and data length u32, and the checksum u32 at
 * 20. The key (db key, mailbox) and the data (value, message body) follow, padded to `align`.
 */
const RECORD_HEADER = 24;
const RECORD_CHECKSUM_AT = 20;

/** How one app lays out its records within the shared framing. */
export interface RecordLayout {
  magic: number;
  /** Offset of the u16 key length. */
  keyLengthAt: number;
  /** Offset of the u32 data length. */
  dataLengthAt: number;
  maxKeyBytes: number;
  maxDataBytes: number;
  /** Records are padded to a multiple of this. */
  align: number;
}

export interface RecordHead {
  keyBytes: number;
  dataBytes: number;
  size: number;
}

export interface RecordBody {
  key: string;
  data: Uint8Array;
}

export interface ScannedRecord extends RecordBody {
  offset: number;
  seq: number;
  size: number;
}

function recordChecksum(rec: Uint8Array, payload: number): number {
  return sealChecksum(rec, RECORD_CHECKSUM_AT, RECORD_HEADER, RECORD_HEADER + payload);
}

/** A whole record's key and data, if it is all there and its checksum holds. */
function parseRecord(rec: Uint8Array, h: RecordHead): RecordBody | undefined {
  if (
    rec.length < h.size ||
    view(rec).getUint32(RECORD_CHECKSUM_AT, true) !== recordChecksum(rec, h.keyBytes + h.dataBytes)
  )
    return undefined;
  const key = fromUtf8.decode(rec.subarray(RECORD_HEADER, RECORD_HEADER + h.keyBytes));
  const start = RECORD_HEADER + h.keyBytes;
  return { key, data: rec.subarray(start, start + h.dataBytes) };
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

/** The records of one app's append-only area: the shared framing with that app's layout. */
export class RecordFormat {
  private readonly layout: RecordLayout;

  constructor(layout: RecordLayout) {
    this.layout = layout;
  }

  /** Bytes a record takes on disk, padding included. */
  size(keyBytes: number, dataBytes: number): number {
    return alignUp(RECORD_HEADER + keyBytes + dataBytes, this.layout.align);
  }

  encode(epoch: number, seq: number, key: Uint8Array, data: Uint8Array): Uint8Array {
    const f = this.layout;
    const rec = new Uint8Array(this.size(key.length, data.length));
    const v = view(rec);
    v.setUint32(0, f.magic, true);
    v.setUint32(4, epoch, true);
    v.setUint32(8, seq, true);
    v.setUint16(f.keyLengthAt, key.length, true);
    v.setUint32(f.dataLengthAt, data.length, true);
    rec.set(key, RECORD_HEADER);
    rec.set(data, RECORD_HEADER + key.length);
    v.setUint32(RECORD_CHECKSUM_AT, recordChecksum(rec, key.length + data.length), true);
    return rec;
  }

  /** The header of the record with sequence number `seq`, or undefined if it is not that record. */
  head(head: Uint8Array, epoch: number, seq: number): RecordHead | undefined {
    const f = this.layout;
    const v = view(head);
    if (v.getUint32(0, true) !== f.magic || v.getUint32(4, true) !== epoch || v.getUint32(8, true) !== seq)
      return undefined;
    const keyBytes = v.getUint16(f.keyLengthAt, true);
    const dataBytes = v.getUint32(f.dataLengthAt, true);
    if (keyBytes === 0 || keyBytes > f.maxKeyBytes || dataBytes > f.maxDataBytes) return undefined;
    return { keyBytes, dataBytes, size: this.size(keyBytes, dataBytes) };
  }

  /** A record read back whole: its key and data if it is the record `seq` and intact. */
  decode(rec: Uint8Array, epoch: number, seq: number): RecordBody | undefined {
    const h = this.head(rec, epoch, seq);
    return h && parseRecord(rec, h);
  }

  /**
   * A recovery scan of [start, end): the records there carry consecutive sequence numbers
   * from `firstSeq`, and the scan stops at the first torn, stale or invalid one. Calls `each`
   * for every good record; returns the offset it stopped at and how many it found.
   */
  async scan(
    m: Machine,
    disk: number,
    area: { epoch: number; start: number; firstSeq: number; end: number },
    each: (r: ScannedRecord) => void,
  ): Promise<{ tail: number; records: number }> {
    const reader = new ChunkReader(m, disk, area.end);
    let pos = area.start;
    let records = 0;
    for (;;) {
      const seq = area.firstSeq + records;
      const head = await reader.bytes(pos, RECORD_HEADER);
      const h = head && this.head(head, area.epoch, seq);
      const rec = h && (await reader.bytes(pos, h.size));
      const body = h && rec && parseRecord(rec, h);
      if (!h || !body) break;
      each({ ...body, offset: pos, seq, size: h.size });
      pos += h.size;
      records++;
    }
    return { tail: pos, records };
  }
}

/**
 * Reads a table (file directory, game save) whose first block tells its length: `tableBytes`
 * returns it, or undefined to reject the table. The rest follows in reads of at most
 * MAX_IO_BYTES, into a buffer padded to whole blocks.
 */
export async function readTable(
  m: Machine,
  disk: number,
  offset: number,
  tableBytes: (head: Uint8Array) => number | undefined,
): Promise<Uint8Array | undefined> {
  const head = await m.read(disk, offset, BLOCK);
  const total = tableBytes(head);
  if (total === undefined) return undefined;
  const buf = new Uint8Array(blockAlign(total));
  buf.set(head);
  for (let done = BLOCK; done < buf.length; done += MAX_IO_BYTES) {
    const n = Math.min(MAX_IO_BYTES, buf.length - done);
    buf.set(await m.read(disk, offset + done, n), done);
  }
  return buf;
}

/** Writes `bytes` at `offset` in writes of at most MAX_IO_BYTES (a hypercall's limit); no flush. */
export async function writeChunked(m: Machine, disk: number, offset: number, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length; done += MAX_IO_BYTES)
    await m.write(disk, offset + done, bytes.subarray(done, done + MAX_IO_BYTES));
}

/** The reply to a request for another kind of server than `server` (e.g. "a database"). */
export function wrongApp(server: string, app: string): ErrorReply {
  return errorReply(ErrorCode.SCHEMA, `this VM runs ${server}, not ${app}`);
}

/** A failed request's reply: the code and message of the error it failed with. */
function failureReply(e: unknown): ErrorReply {
  const ve = toVmsimError(e);
  return errorReply(ve.code, ve.message);
}

/** The requests an app is serving, so that stop() can wait for them. */
export class InFlight {
  private readonly running = new Set<Promise<IngressReply>>();

  /** The reply to `request`, or its failure as an error reply. */
  async serve(request: Promise<IngressReply>): Promise<IngressReply> {
    const p = request.catch(failureReply);
    this.running.add(p);
    try {
      return await p;
    } finally {
      this.running.delete(p);
    }
  }

  /** Resolves once every request being served now has its reply. */
  settled(): Promise<unknown> {
    return Promise.allSettled([...this.running]);
  }
}
