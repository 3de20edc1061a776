import { describe, expect, it } from 'vitest';
import { StoragePool } from './pool.ts';

const MiB = 1024 * 1024;

describe('StoragePool', () => {
  it('cuts disks into whole chunks and hands them out round robin', () => {
    const p = new StoragePool('p', MiB);
    p.addDisk('a', 3 * MiB);
    p.addDisk('b', 2.5 * MiB); // the half chunk at the end is never used
    expect(p.totalChunks).toBe(5);
    expect(p.allocate(5)).toEqual([
      { disk: 'a', index: 0 },
      { disk: 'b', index: 0 },
      { disk: 'a', index: 1 },
      { disk: 'b', index: 1 },
      { disk: 'a', index: 2 },
    ]);
    expect(p.freeChunks).toBe(0);
  });

  it('takes all or nothing', () => {
    const p = new StoragePool('p', 4096);
    p.addDisk('a', 3 * 4096);
    expect(p.allocate(2)).toHaveLength(2);
    expect(p.allocate(2)).toBeUndefined();
    expect(p.usedChunks).toBe(2);
  });

  it('reuses the lowest freed chunk and uses a new disk at once', () => {
    const p = new StoragePool('p', 4096);
    p.addDisk('a', 4 * 4096);
    p.allocate(4);
    p.free({ disk: 'a', index: 2 });
    p.free({ disk: 'a', index: 1 });
    expect(p.allocate(1)).toEqual([{ disk: 'a', index: 1 }]);
    p.addDisk('b', 2 * 4096);
    expect(p.allocate(3)).toEqual([
      { disk: 'a', index: 2 },
      { disk: 'b', index: 0 },
      { disk: 'b', index: 1 },
    ]);
  });

  it('refuses double frees, unknown chunks, duplicate disks and bad chunk sizes', () => {
    const p = new StoragePool('p', 4096);
    p.addDisk('a', 4096);
    const [c] = p.allocate(1)!;
    p.free(c!);
    expect(() => p.free(c!)).toThrow(/freed twice/);
    expect(() => p.free({ disk: 'a', index: 1 })).toThrow(/no chunk a#1/);
    expect(() => p.claim({ disk: 'z', index: 0 })).toThrow(/no chunk z#0/);
    expect(() => p.addDisk('a', 4096)).toThrow(/already has disk a/);
    expect(() => new StoragePool('q', 0)).toThrow(/chunk size/);
  });
});
