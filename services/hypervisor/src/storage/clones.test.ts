import { describe, expect, it } from 'vitest';
import { createRng } from '@vmsim/shared';
import { checkStorage } from './check.ts';
import { StorageModel } from './model.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Plans a write that must fit; returns the bytes it copies up from lower layers. */
function must(m: StorageModel, vol: string, offset: number, length: number): number {
  const plan = m.planWrite(vol, offset, length);
  if (!plan.ok) throw new Error(`${vol}: pool full`);
  return plan.ops.reduce((s, o) => s + (o.op === 'copy' ? o.length : 0), 0);
}

/**
 * Ten web VMs from one golden image (10 GiB disk, 2 GiB of it installed OS), each booting
 * (small writes scattered over the OS area: copy-on-write) and writing 100 MiB of its own.
 */
describe('ten clones of a template', () => {
  it('thin clones use a fraction of what thick copies use, and cloning copies nothing', () => {
    const rng = createRng('ten-clones');
    const thin = new StorageModel();
    thin.createPool(
      'thin',
      [0, 1, 2, 3].map((i) => ({ id: `t${i}`, capacityBytes: 8 * GiB })),
    );
    thin.createVolume({ id: 'golden', pool: 'thin', sizeBytes: 10 * GiB, provisioning: 'thin' });
    must(thin, 'golden', 0, 2 * GiB);
    thin.markTemplate('golden');
    const golden = thin.poolFigures('thin').allocatedBytes;
    expect(golden).toBe(2 * GiB);

    const t0 = performance.now();
    for (let i = 1; i <= 10; i++) thin.clone('golden', `web${i}`);
    const cloneMs = performance.now() - t0;
    expect(thin.poolFigures('thin').allocatedBytes).toBe(golden); // nothing copied up front

    let copied = 0;
    for (let i = 1; i <= 10; i++) {
      for (let k = 0; k < 50; k++) copied += must(thin, `web${i}`, rng.int(2 * GiB - 4096), 4096);
      must(thin, `web${i}`, 4 * GiB, 100 * MiB);
    }
    expect(checkStorage(thin)).toEqual([]);
    expect(copied).toBeGreaterThan(0);
    const t = thin.poolFigures('thin');
    const perClone = thin.volumeFigures('web1');
    expect(perClone.sharedBytes).toBe(2 * GiB);
    expect(perClone.allocatedBytes).toBeGreaterThan(100 * MiB);
    expect(perClone.allocatedBytes).toBeLessThanOrEqual(200 * MiB); // 100 MiB + at most 2 chunks per 4 KiB write

    // The same ten disks as thick copies of the 10 GiB image.
    const thick = new StorageModel();
    thick.createPool(
      'thick',
      [0, 1, 2, 3].map((i) => ({ id: `k${i}`, capacityBytes: 32 * GiB })),
    );
    for (let i = 1; i <= 10; i++)
      thick.createVolume({ id: `web${i}`, pool: 'thick', sizeBytes: 10 * GiB, provisioning: 'thick' });
    const k = thick.poolFigures('thick');
    expect(k.allocatedBytes).toBe(100 * GiB);
    expect(t.allocatedBytes).toBeLessThan(k.allocatedBytes / 10);
    expect(t.overcommit).toBeCloseTo(110 / 32, 9); // eleven 10 GiB disks on 32 GiB
    if (process.env.STORAGE_STATS) {
      process.stdout.write(
        `thin pool used ${(t.allocatedBytes / GiB).toFixed(3)} GiB (golden ${golden / GiB} GiB, ` +
          `web1 own ${(perClone.allocatedBytes / MiB).toFixed(0)} MiB), overcommit ${t.overcommit.toFixed(2)}; ` +
          `thick ${k.allocatedBytes / GiB} GiB; 10 clones in ${cloneMs.toFixed(3)} ms; ` +
          `500 boot writes of 4 KiB copied up ${(copied / MiB).toFixed(0)} MiB\n`,
      );
    }
  });

  it('clones filling a thin pool: one write is refused, the others go on, a new disk lets it resume', () => {
    const m = new StorageModel();
    m.createPool('p', [{ id: 'd0', capacityBytes: 4 * GiB }]);
    m.createVolume({ id: 'golden', pool: 'p', sizeBytes: 10 * GiB, provisioning: 'thin' });
    must(m, 'golden', 0, 2 * GiB);
    m.markTemplate('golden');
    for (let i = 1; i <= 10; i++) m.clone('golden', `web${i}`);
    // Each clone writes 256 MiB in 64 MiB pieces, round robin: 2.5 GiB into 2 GiB free.
    const refused: string[] = [];
    for (let piece = 0; piece < 4; piece++) {
      for (let i = 1; i <= 10; i++) {
        const vol = `web${i}`;
        if (refused.includes(vol)) continue; // paused
        const plan = m.planWrite(vol, 4 * GiB + piece * 64 * MiB, 64 * MiB);
        if (!plan.ok) refused.push(vol);
      }
    }
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.length).toBeLessThan(10);
    expect(m.poolFigures('p').freeBytes).toBeLessThan(64 * MiB);
    m.addDisk('p', { id: 'd1', capacityBytes: 4 * GiB });
    const first = refused[0]!;
    const pieces = m.volumeFigures(first).allocatedBytes / (64 * MiB);
    expect(m.planWrite(first, 4 * GiB + pieces * 64 * MiB, 64 * MiB).ok).toBe(true);
    expect(checkStorage(m)).toEqual([]);
  });
});
