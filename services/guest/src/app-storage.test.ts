import { describe, expect, it } from 'vitest';
import { ErrorCode, MAX_IO_BYTES, VmsimError } from '@vmsim/shared';
import type { RecordLayout } from './app-storage.ts';
import {
  BLOCK,
  InFlight,
  RecordFormat,
  areaEpoch,
  areaHeader,
  openArea,
  readTable,
  utf8,
  writeChunked,
} from './app-storage.ts';
import { MiB } from './disk-layout.ts';
import { FakeMachine } from './testing/fake-machine.ts';

const AREA = { offset: 4 * BLOCK, magic: 'TESTLOG1', name: 'test log' };
/** Two layouts of the shared framing: lengths in either order, 8-byte or block padding. */
const PACKED_LAYOUT: RecordLayout = {
  magic: 0x31434552,
  keyLengthAt: 12,
  dataLengthAt: 16,
  maxKeyBytes: 64,
  maxDataBytes: 9000,
  align: 8,
};
const PACKED = new RecordFormat(PACKED_LAYOUT);
const PADDED = new RecordFormat({ ...PACKED_LAYOUT, keyLengthAt: 16, dataLengthAt: 12, align: BLOCK });

const data = (n: number, fill = 7): Uint8Array => new Uint8Array(n).fill(fill);

describe('area header', () => {
  it('round-trips its epoch and rejects another magic or a damaged block', () => {
    const b = areaHeader(AREA.magic, 42);
    expect(b.length).toBe(BLOCK);
    expect(areaEpoch(AREA.magic, b)).toBe(42);
    expect(areaEpoch('OTHERLOG', b)).toBeUndefined();
    b[9]! ^= 1;
    expect(areaEpoch(AREA.magic, b)).toBeUndefined();
  });

  it('installs with the next epoch (skipping 0 on wrap) and opens what is there', async () => {
    const m = new FakeMachine(MiB);
    await expect(openArea(m, 0, AREA, false)).rejects.toMatchObject({
      code: ErrorCode.IO,
      message: 'the test log header is missing or corrupt',
    });
    expect(await openArea(m, 0, AREA, true)).toBe(1);
    expect(m.flushes).toBe(1);
    m.powerCut();
    expect(await openArea(m, 0, AREA, false)).toBe(1);
    expect(await openArea(m, 0, AREA, true)).toBe(2);
    await m.write(0, AREA.offset, areaHeader(AREA.magic, 0xffffffff));
    expect(await openArea(m, 0, AREA, true)).toBe(1);
  });
});

describe('records', () => {
  it('encode and decode back in either layout, padded to its alignment', () => {
    for (const [f, align] of [
      [PACKED, 8],
      [PADDED, BLOCK],
    ] as const) {
      const rec = f.encode(3, 9, utf8.encode('key'), data(100));
      expect(rec.length).toBe(f.size(3, 100));
      expect(rec.length % align).toBe(0);
      expect(f.head(rec, 3, 9)).toEqual({ keyBytes: 3, dataBytes: 100, size: rec.length });
      expect(f.decode(rec, 3, 9)).toEqual({ key: 'key', data: data(100) });
      // Another epoch, sequence number or layout is not this record.
      expect(f.head(rec, 4, 9)).toBeUndefined();
      expect(f.head(rec, 3, 10)).toBeUndefined();
      expect((f === PACKED ? PADDED : PACKED).decode(rec, 3, 9)).toBeUndefined();
    }
  });

  it('rejects a damaged or cut-short record, and lengths out of bounds', () => {
    const rec = PACKED.encode(1, 1, utf8.encode('k'), data(50));
    expect(PACKED.decode(rec.subarray(0, rec.length - 8), 1, 1)).toBeUndefined();
    const bad = rec.slice();
    bad[30]! ^= 0xff;
    expect(PACKED.decode(bad, 1, 1)).toBeUndefined();
    expect(PACKED.head(PACKED.encode(1, 1, new Uint8Array(0), data(5)), 1, 1)).toBeUndefined();
    expect(PACKED.head(PACKED.encode(1, 1, data(65), data(5)), 1, 1)).toBeUndefined();
    expect(PACKED.head(PACKED.encode(1, 1, data(1), data(9001)), 1, 1)).toBeUndefined();
  });

  it('a recovery scan stops at the first torn record, reading in large chunks', async () => {
    const m = new FakeMachine(4 * MiB);
    const start = 2 * BLOCK;
    let pos = start;
    for (let seq = 5; seq < 5 + 40; seq++) {
      const rec = PACKED.encode(2, seq, utf8.encode(`k${seq}`), data(seq * 100, seq));
      await m.write(0, pos, rec);
      pos += rec.length;
    }
    const good = pos;
    const torn = PACKED.encode(2, 45, utf8.encode('torn'), data(3000));
    await m.write(0, pos, torn.subarray(0, 1000));
    const reads = m.reads;
    const seen: number[] = [];
    const r = await PACKED.scan(m, 0, { epoch: 2, start, firstSeq: 5, end: m.sizeBytes }, (rec) => {
      expect(rec.key).toBe(`k${rec.seq}`);
      expect(rec.data).toEqual(data(rec.seq * 100, rec.seq));
      seen.push(rec.seq);
    });
    expect(r).toEqual({ tail: good, records: 40 });
    expect(seen).toEqual(Array.from({ length: 40 }, (_, i) => 5 + i));
    expect(m.reads - reads).toBe(1);
  });
});

describe('tables', () => {
  it('are written and read back in hypercalls of at most MAX_IO_BYTES', async () => {
    const m = new FakeMachine(4 * MiB);
    const table = new Uint8Array(2 * MAX_IO_BYTES + 3 * BLOCK);
    for (let i = 0; i < table.length; i++) table[i] = (i * 31) & 0xff;
    await writeChunked(m, 0, BLOCK, table);
    expect(m.writes).toBe(3);
    const got = await readTable(m, 0, BLOCK, () => table.length - 10);
    expect(got).toEqual(table);
    expect(m.reads).toBe(4); // the first block, then three chunks
    expect(await readTable(m, 0, BLOCK, () => undefined)).toBeUndefined();
  });
});

describe('InFlight', () => {
  it('answers a failed request with its error, and settles once requests are answered', async () => {
    const requests = new InFlight();
    let finish: () => void = () => {};
    const slow = requests.serve(
      new Promise((resolve) => (finish = () => resolve({ ok: true, status: 200, bytes: 1 }))),
    );
    const failed = requests.serve(Promise.reject(new VmsimError(ErrorCode.NO_SPACE, 'full')));
    expect(await failed).toEqual({ ok: false, code: ErrorCode.NO_SPACE, message: 'full' });
    let settled = false;
    void requests.settled().then(() => (settled = true));
    await Promise.resolve();
    expect(settled).toBe(false);
    finish();
    expect(await slow).toMatchObject({ status: 200 });
    await requests.settled();
  });
});
