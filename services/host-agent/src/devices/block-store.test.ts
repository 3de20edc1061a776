import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '@vmsim/shared';
import { BlockStore } from './block-store.ts';

const dirs: string[] = [];
function tmpFile(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'vmsim-bs-'));
  dirs.push(d);
  return path.join(d, 'disk.img');
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const GiB = 1024 ** 3;
const opts = { cacheBytes: 1024 * 1024, fsync: false };

describe('BlockStore', () => {
  it('is a sparse file of the whole capacity', () => {
    const f = tmpFile();
    const s = BlockStore.open(f, 8 * GiB, opts);
    expect(fs.statSync(f).size).toBe(8 * GiB);
    expect(s.allocatedBytes()).toBeLessThan(1024 * 1024);
    s.close();
  });

  it('reads back what was written, across block boundaries and unaligned', () => {
    const s = BlockStore.open(tmpFile(), GiB, opts);
    const data = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251));
    s.write(4090, data);
    expect(Buffer.compare(s.read(4090, 10_000), data)).toBe(0);
    expect([...s.read(4088, 4)]).toEqual([0, 0, 0, 1]);
    s.close();
  });

  it('loses unflushed writes on a power cut and keeps flushed ones, also after reopening', async () => {
    const f = tmpFile();
    const s = BlockStore.open(f, GiB, opts);
    s.write(0, Buffer.from('durable'));
    await s.flush();
    s.write(8192, Buffer.from('volatile'));
    expect(s.dirtyBytes).toBe(4096);
    s.dropCache();
    expect(s.read(8192, 8).toString()).toBe('\0'.repeat(8));
    s.close();
    const again = BlockStore.open(f, GiB, opts);
    expect(again.read(0, 7).toString()).toBe('durable');
    again.close();
  });

  it('writes through once the cache is full', () => {
    const s = BlockStore.open(tmpFile(), GiB, { cacheBytes: 8192, fsync: false });
    s.write(0, Buffer.alloc(8192, 1));
    s.write(65536, Buffer.alloc(4096, 2)); // cache full: goes to the file
    s.dropCache();
    expect(s.read(65536, 1)[0]).toBe(2);
    expect(s.read(0, 1)[0]).toBe(0);
    s.close();
  });

  it('zeroes a range: read back as zeros, cached until flush, lost on a power cut unless flushed', async () => {
    const f = tmpFile();
    const s = BlockStore.open(f, GiB, opts);
    s.write(0, Buffer.alloc(3 * 4096, 7));
    await s.flush();
    // Unaligned on both ends: partial first and last blocks, one whole block between.
    s.zero(100, 2 * 4096);
    expect(s.read(100, 2 * 4096).every((b) => b === 0)).toBe(true);
    expect([...s.read(98, 2)]).toEqual([7, 7]);
    expect([...s.read(100 + 2 * 4096, 2)]).toEqual([7, 7]);
    expect(s.dirtyBytes).toBe(3 * 4096);
    s.dropCache();
    expect(s.read(100, 2 * 4096).every((b) => b === 7)).toBe(true);

    s.zero(4096, 4096);
    await s.flush();
    expect(s.dirtyBytes).toBe(0);
    s.close();
    const again = BlockStore.open(f, GiB, opts);
    expect(again.read(4096, 4096).every((b) => b === 0)).toBe(true);
    expect(again.read(0, 4096).every((b) => b === 7)).toBe(true);
    expect(again.read(8192, 4096).every((b) => b === 7)).toBe(true);
    again.close();
  });

  it('a later write over a zeroed block changes only that block', () => {
    const s = BlockStore.open(tmpFile(), GiB, opts);
    s.zero(0, 4 * 4096);
    s.write(4096 + 10, Buffer.from('x'));
    expect(s.read(4096 + 10, 1).toString()).toBe('x');
    expect(s.read(0, 4096).every((b) => b === 0)).toBe(true);
    expect(s.read(2 * 4096, 2 * 4096).every((b) => b === 0)).toBe(true);
    expect(() => s.zero(GiB - 1, 2)).toThrow(expect.objectContaining({ code: ErrorCode.OUT_OF_RANGE }));
    s.close();
  });

  it('an adopted write keeps the handed-over bytes, also when the copy overlaps its source', () => {
    const s = BlockStore.open(tmpFile(), GiB, opts);
    const data = Buffer.from(Array.from({ length: 3 * 4096 }, (_, i) => i % 253));
    s.write(0, data);
    s.write(4096 + 5, s.read(0, 3 * 4096), true);
    expect(Buffer.compare(s.read(4096 + 5, 3 * 4096), data)).toBe(0);
    expect(Buffer.compare(s.read(0, 4096 + 5), data.subarray(0, 4096 + 5))).toBe(0);
    s.close();
  });

  it('refuses accesses outside the disk', () => {
    const s = BlockStore.open(tmpFile(), 1024 * 1024, opts);
    expect(() => s.read(1024 * 1024 - 1, 2)).toThrow(expect.objectContaining({ code: ErrorCode.OUT_OF_RANGE }));
    expect(() => s.write(-1, Buffer.alloc(1))).toThrow(expect.objectContaining({ code: ErrorCode.OUT_OF_RANGE }));
    s.close();
  });
});
