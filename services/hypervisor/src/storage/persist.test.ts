import { describe, expect, it } from 'vitest';
import { checkStorage } from './check.ts';
import { MemoryDisks } from './memory-disks.ts';
import { StorageModel } from './model.ts';
import { deserializeStorage, serializeStorage, type StorageDoc } from './persist.ts';

const CB = 256;

function world(chunks: number) {
  const m = new StorageModel();
  const disks = new MemoryDisks();
  disks.add('d0', chunks * CB, 0x5a);
  m.createPool('p', [{ id: 'd0', capacityBytes: chunks * CB }], CB);
  const write = (mm: StorageModel, vol: string, offset: number, data: Uint8Array): void => {
    const plan = mm.planWrite(vol, offset, data.length);
    if (!plan.ok) throw new Error('pool full');
    disks.apply(plan.ops, data);
  };
  const read = (mm: StorageModel, vol: string, snap?: string): Uint8Array =>
    disks.read(mm.read(vol, 0, mm.volume(vol).sizeBytes, snap));
  /** What the adapter writes to disk: a JSON document, parsed back on start. */
  const save = (mm: StorageModel): unknown => JSON.parse(JSON.stringify(serializeStorage(mm)));
  return { m, disks, write, read, save };
}

const fill = (n: number, v: number): Uint8Array => new Uint8Array(n).fill(v);

describe('serialize and deserialize', () => {
  it('round-trips a model with snapshots, templates and clones, which keeps working', () => {
    const { m, write, read, save } = world(32);
    m.createVolume({ id: 'gold', pool: 'p', sizeBytes: 4 * CB, provisioning: 'thick' });
    write(m, 'gold', 0, fill(CB + 3, 1));
    m.snapshot('gold', 's');
    write(m, 'gold', 2, fill(2, 2));
    m.markTemplate('gold');
    m.clone('gold', 'c');
    write(m, 'c', CB, fill(1, 3));
    const doc = save(m);
    const back = deserializeStorage(doc);
    expect(save(back)).toEqual(doc);
    expect(read(back, 'c')).toEqual(read(m, 'c'));
    expect(read(back, 'gold', 's')).toEqual(read(m, 'gold', 's'));
    // Allocation continues where it left off, without reusing a chunk in use.
    back.createVolume({ id: 'n', pool: 'p', sizeBytes: CB, provisioning: 'thin' });
    write(back, 'n', 0, fill(CB, 9));
    expect(checkStorage(back)).toEqual([]);
    expect(read(back, 'c')).toEqual(read(m, 'c'));
  });

  it('names the bad field when the document does not parse', () => {
    const { m, save } = world(4);
    m.createVolume({ id: 'v', pool: 'p', sizeBytes: CB, provisioning: 'thin' });
    const doc = save(m) as StorageDoc;
    const bad1 = structuredClone(doc) as unknown as { volumes: { sizeBytes: unknown }[] };
    bad1.volumes[0]!.sizeBytes = 'big';
    expect(() => deserializeStorage(bad1)).toThrow(/volumes\.0\.sizeBytes/);
    const bad2 = structuredClone(doc) as unknown as { layers: Record<string, unknown>[] };
    delete bad2.layers[0]!.refs;
    expect(() => deserializeStorage(bad2)).toThrow(/layers\.0\.refs/);
    const bad3 = structuredClone(doc) as unknown as { volumes: { provisioning: string }[] };
    bad3.volumes[0]!.provisioning = 'sparse';
    expect(() => deserializeStorage(bad3)).toThrow(/volumes\.0\.provisioning/);
    expect(() => deserializeStorage({ ...doc, version: 2 })).toThrow(/version/);
  });

  it('refuses a document that parses but is inconsistent, saying what is wrong', () => {
    const { m, write, save } = world(8);
    m.createVolume({ id: 'v', pool: 'p', sizeBytes: 2 * CB, provisioning: 'thin' });
    write(m, 'v', 0, fill(2 * CB, 1));
    m.createVolume({ id: 'w', pool: 'p', sizeBytes: 2 * CB, provisioning: 'thin' });
    const doc = save(m) as StorageDoc;

    const free = structuredClone(doc);
    free.pools[0]!.disks[0]!.used = [{ start: 0, count: 1 }];
    expect(() => deserializeStorage(free)).toThrow(/p\/d0#1 is referenced but free/);

    const leak = structuredClone(doc);
    leak.pools[0]!.disks[0]!.used = [{ start: 0, count: 3 }];
    expect(() => deserializeStorage(leak)).toThrow(/p\/d0#2 is allocated but unreferenced/);

    const twice = structuredClone(doc);
    const top = twice.layers.find((l) => l.id === twice.volumes[1]!.top)!;
    top.chunks.push({ ...twice.layers[0]!.chunks[0]!, at: 0 });
    expect(() => deserializeStorage(twice)).toThrow(/is held by layers/);

    const refs = structuredClone(doc);
    refs.layers[0]!.refs = 2;
    expect(() => deserializeStorage(refs)).toThrow(/refs 2, referenced 1 time/);

    const loop = structuredClone(doc);
    loop.layers[0]!.parent = loop.layers[0]!.id;
    expect(() => deserializeStorage(loop)).toThrow(/loops|writable/);
  });
});

describe('document size', () => {
  it('stores a thick volume on one disk as runs, not one entry per chunk, and reads it back', () => {
    const { m, save } = world(4096);
    m.createVolume({ id: 'big', pool: 'p', sizeBytes: 4000 * CB, provisioning: 'thick' });
    const doc = save(m) as StorageDoc;
    const top = doc.layers.find((l) => l.id === doc.volumes[0]!.top)!;
    expect(top.chunks).toEqual([{ at: 0, disk: 'd0', index: 0, fresh: true, count: 4000 }]);
    const back = deserializeStorage(doc);
    expect(back.extentsOf('big')).toEqual(m.extentsOf('big'));
    expect(back.volumeFigures('big')).toEqual(m.volumeFigures('big'));
  });
});

describe('crash consistency (the order the adapter follows)', () => {
  it('a copy-on-write write whose metadata was not saved leaves the old bytes readable', () => {
    const { m, write, read, save } = world(8);
    m.createVolume({ id: 'v', pool: 'p', sizeBytes: 2 * CB, provisioning: 'thin' });
    write(m, 'v', 0, fill(2 * CB, 1));
    m.snapshot('v', 's');
    const saved = save(m);
    const before = read(m, 'v');
    write(m, 'v', 10, fill(5, 2)); // data ops done, then the power goes
    const afterCrash = deserializeStorage(saved);
    expect(read(afterCrash, 'v')).toEqual(before);
    expect(read(afterCrash, 'v', 's')).toEqual(before);
    expect(read(deserializeStorage(save(m)), 'v')).toEqual(read(m, 'v')); // once saved, the new bytes
  });

  it('either document around taking or deleting a snapshot reads the same bytes', () => {
    const { m, write, read, save } = world(16);
    m.createVolume({ id: 'v', pool: 'p', sizeBytes: 3 * CB, provisioning: 'thin' });
    write(m, 'v', 0, fill(2 * CB, 1));
    m.snapshot('v', 's1');
    write(m, 'v', CB, fill(2 * CB, 2));
    const docs = [save(m)];
    m.snapshot('v', 's2');
    docs.push(save(m));
    write(m, 'v', 0, fill(1, 3));
    docs.push(save(m));
    m.deleteSnapshot('v', 's1');
    docs.push(save(m));
    const [beforeSnap, afterSnap, beforeDelete, afterDelete] = docs.map((d) => deserializeStorage(d));
    expect(read(afterSnap!, 'v')).toEqual(read(beforeSnap!, 'v'));
    expect(read(afterDelete!, 'v')).toEqual(read(beforeDelete!, 'v'));
    expect(read(afterDelete!, 'v', 's2')).toEqual(read(beforeDelete!, 'v', 's2'));
  });

  it('a freed chunk is reused only after the document that freed it is saved', () => {
    const { m, write, read, save } = world(3);
    m.createVolume({ id: 'v', pool: 'p', sizeBytes: 2 * CB, provisioning: 'thin' });
    write(m, 'v', 0, fill(CB, 1));
    m.snapshot('v', 's');
    write(m, 'v', 0, fill(CB, 2)); // chunk 0 twice: snapshot and top
    const beforeDelete = save(m);
    m.deleteSnapshot('v', 's'); // frees the snapshot's copy
    const afterDelete = save(m);
    const content = read(m, 'v');
    write(m, 'v', CB, fill(CB, 4)); // lowest free chunk first: the one just freed
    // Crash now: the saved document that freed it is consistent with the disks.
    expect(read(deserializeStorage(afterDelete), 'v')).toEqual(content);
    // Had the adapter reused the chunk before saving, the old document would show the new bytes.
    expect(read(deserializeStorage(beforeDelete), 'v', 's').subarray(0, CB)).toEqual(fill(CB, 4));
  });
});
