import { describe, expect, it } from 'vitest';
import { createRng, VmsimError } from '@vmsim/shared';
import { checkStorage } from './check.ts';
import { MemoryDisks } from './memory-disks.ts';
import { StorageModel } from './model.ts';
import { deserializeStorage, serializeStorage } from './persist.ts';

/** Small chunks and disks so that a few thousand operations fill pools, chain and share a lot. */
const CB = 64;

interface Stats {
  writes: number;
  poolFull: number;
  retried: number;
  reads: number;
  snapshots: number;
  reverts: number;
  snapshotDeletes: number;
  clones: number;
  templates: number;
  volumeDeletes: number;
  refusedDeletes: number;
  thickRefused: number;
  disksAdded: number;
  reloads: number;
}

function expectCode(f: () => unknown, code: string): void {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(VmsimError);
    expect((e as VmsimError).code).toBe(code);
    return;
  }
  expect.unreachable(`expected ${code}`);
}

/**
 * Random operations against the model, with a reference of every volume's and snapshot's
 * bytes. The plans are carried out on in-memory disks that start full of junk, so a missed
 * copy or zero-fill shows up as wrong bytes.
 */
function run(seed: string, steps: number): Stats {
  const rng = createRng(seed);
  let m = new StorageModel();
  const disks = new MemoryDisks();
  let diskN = 0;
  const newDisk = (): { id: string; capacityBytes: number } => {
    const id = `d${diskN++}`;
    const capacityBytes = CB * (4 + rng.int(6)) + rng.int(CB); // a tail smaller than a chunk
    disks.add(id, capacityBytes, 1 + rng.int(255));
    return { id, capacityBytes };
  };
  m.createPool('p', [newDisk(), newDisk()], CB);

  const ref = new Map<string, Uint8Array>();
  const snaps = new Map<string, Map<string, Uint8Array>>();
  const paused = new Map<string, { offset: number; data: Uint8Array }>();
  const s: Stats = {
    writes: 0,
    poolFull: 0,
    retried: 0,
    reads: 0,
    snapshots: 0,
    reverts: 0,
    snapshotDeletes: 0,
    clones: 0,
    templates: 0,
    volumeDeletes: 0,
    refusedDeletes: 0,
    thickRefused: 0,
    disksAdded: 0,
    reloads: 0,
  };
  let volN = 0;
  let snapN = 0;

  const vols = (): string[] => [...m.volumes.keys()];
  const writable = (): string[] => vols().filter((v) => !m.volume(v).template);
  const readBack = (v: string, offset: number, length: number, snap?: string): Uint8Array =>
    disks.read(m.read(v, offset, length, snap));
  const randomBytes = (n: number): Uint8Array => Uint8Array.from({ length: n }, () => rng.int(256));
  const doc = (): string => JSON.stringify(serializeStorage(m));

  /** A write as the adapter does it: plan, carry out, or pause the volume on pool-full. */
  const write = (v: string, offset: number, data: Uint8Array): boolean => {
    // Only a write that may need more chunks than are free can fail (3 chunks at most + 1).
    const before = m.pool('p').freeChunks < 4 ? doc() : undefined;
    const plan = m.planWrite(v, offset, data.length);
    if (!plan.ok) {
      expect(plan.reason).toBe('pool-full');
      expect(plan.volume).toBe(v);
      expect(plan.needBytes).toBeGreaterThan(plan.freeBytes);
      expect(before).toBeDefined();
      expect(doc()).toBe(before); // nothing taken: the retry starts from the same state
      return false;
    }
    const copies = plan.ops.findIndex((o) => o.op === 'write');
    expect(plan.ops.slice(copies).every((o) => o.op === 'write')).toBe(true);
    disks.apply(plan.ops, data);
    ref.get(v)!.set(data, offset);
    return true;
  };

  const verify = (): void => {
    expect(checkStorage(m)).toEqual([]);
    let held = 0;
    for (const l of m.layers.values()) held += l.chunks.size;
    const f = m.poolFigures('p');
    expect(f.allocatedBytes).toBe(held * CB);
    expect(f.allocatedBytes + f.freeBytes).toBe(f.capacityBytes);
    expect(new Set(vols())).toEqual(new Set(ref.keys()));
    // Compare cheaply; let expect print the difference only when there is one.
    const same = (a: Uint8Array, b: Uint8Array, what: string): void => {
      if (Buffer.compare(a, b) !== 0) expect(a, what).toEqual(b);
    };
    for (const [v, bytes] of ref) {
      same(readBack(v, 0, bytes.length), bytes, `volume ${v}`);
      for (const [name, sb] of snaps.get(v)!) same(readBack(v, 0, sb.length, name), sb, `${v}@${name}`);
      expect(m.listSnapshots(v).map((x) => x.name)).toEqual([...snaps.get(v)!.keys()]);
    }
  };

  for (let step = 0; step < steps; step++) {
    // Paused volumes retry their write each step, as the adapter would after space is freed.
    for (const [v, p] of paused) {
      if (!m.volumes.has(v)) paused.delete(v);
      else if (write(v, p.offset, p.data)) {
        paused.delete(v);
        s.retried++;
      }
    }
    const r = rng.next();
    const running = writable().filter((v) => !paused.has(v));
    if (r < 0.35 && running.length > 0) {
      const v = rng.pick(running);
      const size = ref.get(v)!.length;
      const offset = rng.int(size);
      const data = randomBytes(1 + rng.int(Math.min(size - offset, 3 * CB)));
      s.writes++;
      if (!write(v, offset, data)) {
        s.poolFull++;
        paused.set(v, { offset, data });
      }
    } else if (r < 0.45 && vols().length > 0) {
      const v = rng.pick(vols());
      const size = ref.get(v)!.length;
      const offset = rng.int(size);
      const length = 1 + rng.int(size - offset);
      expect(readBack(v, offset, length)).toEqual(ref.get(v)!.subarray(offset, offset + length));
      s.reads++;
    } else if (r < 0.53 && writable().length > 0) {
      const v = rng.pick(writable());
      const name = `s${snapN++}`;
      m.snapshot(v, name);
      snaps.get(v)!.set(name, ref.get(v)!.slice());
      s.snapshots++;
    } else if (r < 0.59) {
      const v = writable().filter((x) => snaps.get(x)!.size > 0);
      if (v.length === 0) continue;
      const id = rng.pick(v);
      const names = [...snaps.get(id)!.keys()];
      const name = rng.pick(names);
      const res = m.revert(id, name);
      expect(res.droppedSnapshots).toEqual(names.slice(names.indexOf(name) + 1));
      for (const n of res.droppedSnapshots) snaps.get(id)!.delete(n);
      ref.set(id, snaps.get(id)!.get(name)!.slice());
      paused.delete(id); // a reverted disk drops the write that did not fit
      s.reverts++;
    } else if (r < 0.66) {
      const v = writable().filter((x) => snaps.get(x)!.size > 0);
      if (v.length === 0) continue;
      const id = rng.pick(v);
      const name = rng.pick([...snaps.get(id)!.keys()]);
      const freeBefore = m.poolFigures('p').freeBytes;
      const res = m.deleteSnapshot(id, name);
      expect(res.ops).toEqual([]);
      expect(m.poolFigures('p').freeBytes - freeBefore).toBe(res.freedBytes);
      snaps.get(id)!.delete(name);
      s.snapshotDeletes++;
    } else if (r < 0.71 && vols().length < 10) {
      const id = `v${volN++}`;
      const sizeBytes = CB * (1 + rng.int(8)) - rng.int(CB / 2);
      const provisioning = rng.next() < 0.25 ? 'thick' : 'thin';
      const before = doc();
      try {
        m.createVolume({ id, pool: 'p', sizeBytes, provisioning });
      } catch (e) {
        expect((e as VmsimError).code).toBe('VMSIM_ERR_NO_SPACE');
        expect(doc()).toBe(before);
        s.thickRefused++;
        continue;
      }
      ref.set(id, new Uint8Array(sizeBytes));
      snaps.set(id, new Map());
    } else if (r < 0.74) {
      const v = writable().filter((x) => !paused.has(x));
      if (v.length === 0) continue;
      const id = rng.pick(v);
      m.markTemplate(id);
      expectCode(() => m.planWrite(id, 0, 1), 'VMSIM_ERR_BAD_STATE');
      expectCode(() => m.snapshot(id, 'x'), 'VMSIM_ERR_BAD_STATE');
      s.templates++;
    } else if (r < 0.8 && vols().length < 10) {
      const t = vols().filter((x) => m.volume(x).template);
      if (t.length === 0) continue;
      const tid = rng.pick(t);
      const id = `v${volN++}`;
      const free = m.poolFigures('p').freeBytes;
      m.clone(tid, id);
      expect(m.poolFigures('p').freeBytes).toBe(free); // copies nothing
      ref.set(id, ref.get(tid)!.slice());
      snaps.set(id, new Map());
      s.clones++;
    } else if (r < 0.86 && vols().length > 0) {
      const id = rng.pick(vols());
      if (m.clonesOf(id).length > 0) {
        expectCode(() => m.deleteVolume(id), 'VMSIM_ERR_BAD_STATE');
        s.refusedDeletes++;
        continue;
      }
      m.deleteVolume(id);
      ref.delete(id);
      snaps.delete(id);
      paused.delete(id);
      s.volumeDeletes++;
    } else if (r < 0.88 && m.pool('p').disks.length < 7) {
      m.addDisk('p', newDisk());
      s.disksAdded++;
    } else if (r < 0.9) {
      // Restart: the model comes back from its saved document only.
      const saved = JSON.parse(doc()) as unknown;
      m = deserializeStorage(saved);
      expect(doc()).toBe(JSON.stringify(saved));
      s.reloads++;
    }
    verify();
  }
  return s;
}

describe('storage model under random operations', () => {
  for (const seed of ['alpha', 'bravo', 'charlie', 'delta']) {
    it(`reads back exactly what the reference holds (seed ${seed})`, () => {
      const s = run(seed, 3000);
      if (process.env.STORAGE_STATS) process.stdout.write(`${seed} ${JSON.stringify(s)}\n`);
      // Every kind of operation happened, the pool filled and paused writers resumed.
      for (const [k, n] of Object.entries(s)) if (k !== 'thickRefused') expect(n, k).toBeGreaterThan(0);
    });
  }
});
