import { describe, expect, it } from 'vitest';
import { checkStorage } from './check.ts';
import { MemoryDisks } from './memory-disks.ts';
import { StorageModel, type PhysOp } from './model.ts';

const CB = 4096;

/** A pool of the given disks (in chunks) whose bytes start as junk, and helpers that do the I/O. */
function setup(...diskChunks: number[]) {
  const m = new StorageModel();
  const disks = new MemoryDisks();
  const specs = diskChunks.map((n, i) => ({ id: `d${i}`, capacityBytes: n * CB }));
  for (const d of specs) disks.add(d.id, d.capacityBytes, 0xee);
  m.createPool('p', specs, CB);
  const write = (vol: string, offset: number, data: Uint8Array): PhysOp[] => {
    const plan = m.planWrite(vol, offset, data.length);
    if (!plan.ok) throw new Error(`pool full: ${JSON.stringify(plan)}`);
    disks.apply(plan.ops, data);
    expect(checkStorage(m)).toEqual([]);
    return plan.ops;
  };
  const read = (vol: string, offset: number, length: number, snap?: string): Uint8Array =>
    disks.read(m.read(vol, offset, length, snap));
  const addDisk = (id: string, chunks: number): void => {
    disks.add(id, chunks * CB, 0xee);
    m.addDisk('p', { id, capacityBytes: chunks * CB });
  };
  return { m, disks, write, read, addDisk };
}

const bytes = (n: number, v: number): Uint8Array => new Uint8Array(n).fill(v);

describe('pools', () => {
  it('report capacity, allocation and free space, and grow by a disk', () => {
    const { m, addDisk } = setup(4, 2);
    expect(m.poolFigures('p')).toMatchObject({ capacityBytes: 6 * CB, allocatedBytes: 0, freeBytes: 6 * CB, disks: 2 });
    m.createVolume({ id: 'v', pool: 'p', sizeBytes: 2 * CB, provisioning: 'thick' });
    addDisk('d9', 3);
    expect(m.poolFigures('p')).toMatchObject({
      capacityBytes: 9 * CB,
      allocatedBytes: 2 * CB,
      freeBytes: 7 * CB,
      disks: 3,
    });
    expect(() => m.addDisk('p', { id: 'd0', capacityBytes: CB })).toThrow(/already in pool p/);
  });
});

describe('thin and thick volumes', () => {
  it("says when a plan changed the metadata: an allocation, or a thick chunk's first write even without fill", () => {
    const { m } = setup(8);
    m.createVolume({ id: 'k', pool: 'p', sizeBytes: 2 * CB, provisioning: 'thick' });
    const whole = m.planWrite('k', 0, CB);
    // A whole-chunk write needs no zero fill, but the chunk stops reading as zeros.
    expect(whole).toMatchObject({ ok: true, allocatedBytes: 0, changed: true });
    expect(whole.ok && whole.ops.map((o) => o.op)).toEqual(['write']);
    expect(m.planWrite('k', 10, 10)).toMatchObject({ ok: true, changed: false });
    m.createVolume({ id: 't', pool: 'p', sizeBytes: 2 * CB, provisioning: 'thin' });
    expect(m.planWrite('t', 0, 10)).toMatchObject({ ok: true, allocatedBytes: CB, changed: true });
    expect(m.planWrite('t', 20, 10)).toMatchObject({ ok: true, allocatedBytes: 0, changed: false });
  });

  it('thin: reads of unwritten chunks are zeros and allocate nothing; a write allocates one chunk', () => {
    const { m, write, read } = setup(8);
    m.createVolume({ id: 'v', pool: 'p', sizeBytes: 4 * CB, provisioning: 'thin' });
    expect(m.read('v', 100, 2 * CB)).toEqual([{ kind: 'zero', length: 2 * CB }]);
    expect(m.poolFigures('p').allocatedBytes).toBe(0);
    const ops = write('v', CB + 100, bytes(10, 7));
    // The rest of the new chunk is zeroed: it may hold another volume's old bytes.
    expect(ops).toEqual([
      { op: 'zero', disk: 'd0', offset: 0, length: 100 },
      { op: 'zero', disk: 'd0', offset: 110, length: CB - 110 },
      { op: 'write', disk: 'd0', offset: 100, length: 10, dataOffset: 0 },
    ]);
    expect(m.poolFigures('p').allocatedBytes).toBe(CB);
    const back = read('v', 0, 4 * CB);
    expect(back.subarray(CB + 100, CB + 110)).toEqual(bytes(10, 7));
    expect(back.reduce((s, b) => s + b, 0)).toBe(70);
  });

  it('thick: allocates everything at create, refuses when the pool is short, reads zeros before writes', () => {
    const { m, write, read } = setup(3);
    expect(() => m.createVolume({ id: 'big', pool: 'p', sizeBytes: 3 * CB + 1, provisioning: 'thick' })).toThrow(
      /needs 16384/,
    );
    expect(m.volumes.size).toBe(0);
    expect(m.poolFigures('p').allocatedBytes).toBe(0);
    m.createVolume({ id: 'v', pool: 'p', sizeBytes: 3 * CB, provisioning: 'thick' });
    expect(m.poolFigures('p').allocatedBytes).toBe(3 * CB);
    expect(read('v', 0, 3 * CB)).toEqual(bytes(3 * CB, 0)); // the disk holds 0xee: no stale bytes show
    const ops = write('v', 10, bytes(5, 1));
    expect(ops.map((o) => o.op)).toEqual(['zero', 'zero', 'write']);
    expect(m.poolFigures('p').allocatedBytes).toBe(3 * CB); // nothing new
    expect(write('v', 20, bytes(5, 2)).map((o) => o.op)).toEqual(['write']); // zeroed once only
    expect(read('v', 8, 20)).toEqual(Uint8Array.from([0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 0, 0, 0]));
  });

  it('a write across chunks does every copy/zero first, then the writes, with buffer offsets', () => {
    const { m, write, read } = setup(8, 8); // round robin: consecutive chunks on different disks
    m.createVolume({ id: 'v', pool: 'p', sizeBytes: 4 * CB, provisioning: 'thin' });
    const data = Uint8Array.from({ length: 2 * CB }, (_, i) => i % 251);
    const ops = write('v', CB / 2, data);
    const firstWrite = ops.findIndex((o) => o.op === 'write');
    expect(ops.slice(0, firstWrite).every((o) => o.op !== 'write')).toBe(true);
    expect(ops.slice(firstWrite).map((o) => (o.op === 'write' ? o.dataOffset : -1))).toEqual([0, CB / 2, (3 * CB) / 2]);
    expect(read('v', CB / 2, 2 * CB)).toEqual(data);
  });

  it('merges the writes of chunks that lie next to each other on one disk', () => {
    const { m, write } = setup(8);
    m.createVolume({ id: 'v', pool: 'p', sizeBytes: 4 * CB, provisioning: 'thin' });
    const ops = write('v', CB / 2, bytes(2 * CB, 1));
    expect(ops.filter((o) => o.op === 'write')).toEqual([
      { op: 'write', disk: 'd0', offset: CB / 2, length: 2 * CB, dataOffset: 0 },
    ]);
    expect(m.read('v', 0, 4 * CB)).toEqual([
      { kind: 'data', disk: 'd0', offset: 0, length: 3 * CB },
      { kind: 'zero', length: CB },
    ]);
  });

  it('refuses accesses outside the volume', () => {
    const { m } = setup(2);
    m.createVolume({ id: 'v', pool: 'p', sizeBytes: 1000, provisioning: 'thin' });
    expect(() => m.read('v', 990, 11)).toThrow(/outside its 1000 bytes/);
    expect(() => m.planWrite('v', -1, 2)).toThrow(/outside/);
    expect(() => m.planWrite('v', 0, 0)).toThrow(/outside/);
  });
});

describe('a pool that fills up', () => {
  it('fails the write with a typed result, changes nothing, and the same write succeeds after a disk is added', () => {
    const { m, write, read, addDisk } = setup(2);
    m.createVolume({ id: 'a', pool: 'p', sizeBytes: 4 * CB, provisioning: 'thin' });
    m.createVolume({ id: 'b', pool: 'p', sizeBytes: 4 * CB, provisioning: 'thin' });
    expect(m.poolFigures('p').overcommit).toBe(4);
    write('a', 0, bytes(CB, 1));
    const plan = m.planWrite('b', CB - 1, 2); // spans two chunks, one is free
    expect(plan).toEqual({ ok: false, reason: 'pool-full', pool: 'p', volume: 'b', needBytes: 2 * CB, freeBytes: CB });
    expect(m.poolFigures('p').allocatedBytes).toBe(CB);
    expect(checkStorage(m)).toEqual([]);
    write('a', CB, bytes(1, 9)); // others keep writing while b waits
    addDisk('d9', 2);
    write('b', CB - 1, Uint8Array.from([4, 5]));
    expect(read('b', CB - 2, 4)).toEqual(Uint8Array.from([0, 4, 5, 0]));
    expect(read('a', 0, CB + 1)).toEqual(Uint8Array.from([...bytes(CB, 1), 9]));
  });

  it('deleting a snapshot frees the space a paused write needs', () => {
    const { m, write, read } = setup(3);
    m.createVolume({ id: 'v', pool: 'p', sizeBytes: 4 * CB, provisioning: 'thin' });
    write('v', 0, bytes(2 * CB, 1));
    m.snapshot('v', 's1');
    write('v', 0, bytes(CB, 2)); // the third chunk
    const plan = m.planWrite('v', CB, CB);
    expect(plan).toMatchObject({ ok: false, reason: 'pool-full', needBytes: CB, freeBytes: 0 });
    expect(m.deleteSnapshot('v', 's1')).toEqual({ freedBytes: CB, ops: [] });
    write('v', CB, bytes(CB, 3));
    expect(read('v', 0, 3 * CB)).toEqual(Uint8Array.from([...bytes(CB, 2), ...bytes(CB, 3), ...bytes(CB, 0)]));
  });
});

describe('snapshots', () => {
  it('copy-on-write: a partial write copies the rest of the old chunk; a whole-chunk write copies nothing', () => {
    const { m, write, read } = setup(8);
    m.createVolume({ id: 'v', pool: 'p', sizeBytes: 2 * CB, provisioning: 'thin' });
    write('v', 0, bytes(2 * CB, 1));
    const old = m.read('v', 0, CB)[0]!;
    m.snapshot('v', 's1');
    const ops = write('v', 100, bytes(50, 2));
    expect(ops).toHaveLength(3);
    expect(ops[0]).toMatchObject({
      op: 'copy',
      from: { disk: old.kind === 'data' ? old.disk : '', offset: 0 },
      length: 100,
    });
    expect(ops[1]).toMatchObject({ op: 'copy', length: CB - 150 });
    expect(ops[2]).toMatchObject({ op: 'write', length: 50 });
    expect(write('v', CB, bytes(CB, 3)).map((o) => o.op)).toEqual(['write']);
    expect(read('v', 95, 60)).toEqual(Uint8Array.from([...bytes(5, 1), ...bytes(50, 2), ...bytes(5, 1)]));
    expect(read('v', 0, 2 * CB, 's1')).toEqual(bytes(2 * CB, 1)); // the snapshot is unchanged
    expect(m.listSnapshots('v')).toEqual([{ name: 's1', layer: expect.any(String), bytes: 2 * CB }]);
    expect(m.volumeFigures('v').allocatedBytes).toBe(4 * CB);
  });

  it('revert drops the layers above the snapshot, frees their chunks and later snapshots', () => {
    const { m, write, read } = setup(8);
    m.createVolume({ id: 'v', pool: 'p', sizeBytes: 2 * CB, provisioning: 'thin' });
    write('v', 0, bytes(CB, 1));
    m.snapshot('v', 's1');
    write('v', 0, bytes(CB, 2));
    m.snapshot('v', 's2');
    write('v', CB, bytes(CB, 3));
    expect(m.poolFigures('p').allocatedBytes).toBe(3 * CB);
    expect(m.revert('v', 's1')).toEqual({ freedBytes: 2 * CB, droppedSnapshots: ['s2'] });
    expect(read('v', 0, 2 * CB)).toEqual(Uint8Array.from([...bytes(CB, 1), ...bytes(CB, 0)]));
    expect(m.listSnapshots('v').map((s) => s.name)).toEqual(['s1']);
    write('v', 0, bytes(1, 4)); // the volume stays writable after a revert, s1 stays as it was
    expect(read('v', 0, 2, 's1')).toEqual(bytes(2, 1));
    expect(checkStorage(m)).toEqual([]);
  });

  it('deleting a middle snapshot merges it into the layer above and keeps every other image', () => {
    const { m, write, read } = setup(8);
    m.createVolume({ id: 'v', pool: 'p', sizeBytes: 3 * CB, provisioning: 'thin' });
    write('v', 0, bytes(CB, 1)); // s1: [1, 0, 0]
    m.snapshot('v', 's1');
    write('v', CB, bytes(CB, 2)); // s2: [1, 2, 0]
    write('v', 0, bytes(CB, 5));
    m.snapshot('v', 's2'); // s2: [5, 2, 0]
    write('v', 0, bytes(CB, 6)); // top: [6, 2, 0]
    expect(m.listSnapshots('v').map((s) => s.bytes)).toEqual([CB, 2 * CB]);
    // s2's chunk 0 is overwritten in the top, its chunk 1 is handed up by pointer.
    expect(m.deleteSnapshot('v', 's2')).toEqual({ freedBytes: CB, ops: [] });
    expect(read('v', 0, 3 * CB)).toEqual(Uint8Array.from([...bytes(CB, 6), ...bytes(CB, 2), ...bytes(CB, 0)]));
    expect(read('v', 0, 3 * CB, 's1')).toEqual(Uint8Array.from([...bytes(CB, 1), ...bytes(2 * CB, 0)]));
    expect(m.deleteSnapshot('v', 's1')).toEqual({ freedBytes: CB, ops: [] });
    expect(m.poolFigures('p').allocatedBytes).toBe(2 * CB);
    expect(() => m.deleteSnapshot('v', 's1')).toThrow(/no snapshot s1/);
    expect(() => m.revert('v', 'nope')).toThrow(/no snapshot nope/);
  });

  it('after a snapshot of a thick volume, unwritten chunks below still read as zeros', () => {
    const { m, write, read } = setup(8);
    m.createVolume({ id: 'v', pool: 'p', sizeBytes: 2 * CB, provisioning: 'thick' });
    m.snapshot('v', 's');
    const ops = write('v', 10, bytes(1, 9));
    expect(ops.map((o) => o.op)).toEqual(['zero', 'zero', 'write']); // nothing worth copying
    expect(read('v', 9, 3)).toEqual(Uint8Array.from([0, 9, 0]));
  });
});

describe('templates and clones', () => {
  it('clones share the template, copy nothing, and the template outlives them', () => {
    const { m, write, read } = setup(16);
    m.createVolume({ id: 'gold', pool: 'p', sizeBytes: 4 * CB, provisioning: 'thin' });
    write('gold', 0, bytes(3 * CB, 8));
    m.markTemplate('gold');
    expect(() => m.planWrite('gold', 0, 1)).toThrow(/read-only/);
    expect(() => m.clone('nope', 'x')).toThrow(/no volume nope/);
    const used = m.poolFigures('p').allocatedBytes;
    m.clone('gold', 'web1');
    m.clone('gold', 'web2');
    expect(m.poolFigures('p').allocatedBytes).toBe(used);
    expect(read('web1', 0, 3 * CB)).toEqual(bytes(3 * CB, 8));
    write('web1', 5, bytes(1, 1)); // copy-on-write from the template's chunk
    expect(read('web1', 4, 3)).toEqual(Uint8Array.from([8, 1, 8]));
    expect(read('web2', 4, 3)).toEqual(bytes(3, 8));
    expect(read('gold', 4, 3)).toEqual(bytes(3, 8));
    expect(m.volumeFigures('web1')).toMatchObject({ allocatedBytes: CB, sharedBytes: 3 * CB, origin: 'gold' });
    expect(m.clonesOf('gold')).toEqual(['web1', 'web2']);
    expect(() => m.deleteVolume('gold')).toThrow(/has 2 clone\(s\)/);
    expect(m.deleteVolume('web1')).toEqual({ freedBytes: CB }); // only its own chunk
    expect(m.deleteVolume('web2')).toEqual({ freedBytes: 0 });
    expect(m.deleteVolume('gold')).toEqual({ freedBytes: 3 * CB });
    expect(m.poolFigures('p').allocatedBytes).toBe(0);
    expect(m.layers.size).toBe(0);
  });

  it('a clone can be snapshotted, reverted and itself become a template', () => {
    const { m, write, read } = setup(16);
    m.createVolume({ id: 'gold', pool: 'p', sizeBytes: 2 * CB, provisioning: 'thin' });
    write('gold', 0, bytes(2 * CB, 1));
    m.markTemplate('gold');
    m.clone('gold', 'c');
    m.snapshot('c', 's');
    write('c', 0, bytes(1, 2));
    m.revert('c', 's');
    expect(read('c', 0, 2)).toEqual(bytes(2, 1));
    write('c', CB, bytes(1, 3));
    m.deleteSnapshot('c', 's');
    m.markTemplate('c');
    m.clone('c', 'cc');
    expect(read('cc', CB - 1, 3)).toEqual(Uint8Array.from([1, 3, 1]));
    expect(m.volumeFigures('cc')).toMatchObject({ allocatedBytes: 0, sharedBytes: 3 * CB });
    expect(() => m.deleteVolume('c')).toThrow(/clone/);
    expect(checkStorage(m)).toEqual([]);
  });
});

describe('figures', () => {
  it('per volume and per pool, with overcommit', () => {
    const { m, write } = setup(4);
    m.createVolume({ id: 't', pool: 'p', sizeBytes: 10 * CB, provisioning: 'thin' });
    m.createVolume({ id: 'k', pool: 'p', sizeBytes: 2 * CB, provisioning: 'thick' });
    write('t', 0, bytes(10, 1));
    expect(m.volumeFigures('t')).toEqual({
      id: 't',
      pool: 'p',
      virtualBytes: 10 * CB,
      provisioning: 'thin',
      template: false,
      origin: null,
      allocatedBytes: CB,
      sharedBytes: 0,
      snapshots: 0,
    });
    expect(m.volumeFigures('k').allocatedBytes).toBe(2 * CB);
    expect(m.poolFigures('p')).toEqual({
      id: 'p',
      chunkBytes: CB,
      disks: 1,
      capacityBytes: 4 * CB,
      allocatedBytes: 3 * CB,
      freeBytes: CB,
      virtualBytes: 12 * CB,
      overcommit: 3,
    });
  });
});

describe('fitting the hypervisor', () => {
  it('adopts a VM disk the extent allocator placed, keeping its bytes, and reports extents and disks', () => {
    const { m, disks, write, read } = setup(8, 8);
    disks.apply([{ op: 'write', disk: 'd1', offset: 2 * CB, length: 3 * CB, dataOffset: 0 }], bytes(3 * CB, 7));
    m.adoptVolume({
      id: 'vm1',
      pool: 'p',
      sizeBytes: 3 * CB - 100,
      extents: [{ vOffset: 0, disk: 'd1', pOffset: 2 * CB, length: 3 * CB }],
    });
    expect(read('vm1', 0, 3 * CB - 100)).toEqual(bytes(3 * CB - 100, 7));
    expect(m.extentsOf('vm1')).toEqual([{ vOffset: 0, disk: 'd1', pOffset: 2 * CB, length: 3 * CB - 100 }]);
    expect(m.poolFigures('p').allocatedBytes).toBe(3 * CB);
    expect(() =>
      m.adoptVolume({
        id: 'x',
        pool: 'p',
        sizeBytes: CB,
        extents: [{ vOffset: 0, disk: 'd1', pOffset: 2 * CB, length: CB }],
      }),
    ).toThrow(/in use/);
    expect(() =>
      m.adoptVolume({
        id: 'y',
        pool: 'p',
        sizeBytes: CB,
        extents: [{ vOffset: 0, disk: 'd0', pOffset: 10, length: CB }],
      }),
    ).toThrow(/not aligned/);
    m.snapshot('vm1', 's');
    write('vm1', 0, bytes(1, 1)); // copy-on-write onto the other disk
    expect(m.disksOf('vm1')).toEqual(['d0', 'd1']);
    expect(m.extentsOf('vm1').map((e) => e.disk)).toEqual(['d0', 'd1']);
    expect(checkStorage(m)).toEqual([]);
  });
});
