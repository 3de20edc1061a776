import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManagementClient, RealClock, namespace, waitFor, type VmInfo } from '@vmsim/shared';
import { DurabilityWorkload, createBusSender } from '@vmsim/client-gen';
import { tempHome } from './helpers/nats.ts';
import { startTestStack, type TestStack } from './helpers/stack.ts';

/**
 * Storage virtualization end to end, through the management API: pools, thin volumes whose
 * allocation agrees with the backing files, patterns written through snapshot / clone /
 * revert chains read back exactly (also across a host-agent restart, a power cut and a
 * hypervisor killed in the middle of a snapshot), and a VM whose pool fills up paused and
 * resumed without losing an acknowledged write.
 */
const MiB = 1024 * 1024;
const HOST = 'host1';
const crashFile = path.join(tempHome(), 'crash-point');

let t: TestStack;
let api: ManagementClient;

beforeAll(async () => {
  t = await startTestStack({ timeScale: 1, env: { VMSIM_CRASH_POINT_FILE: crashFile } });
  api = t.api;
});

afterAll(async () => {
  await t?.stop();
});

/** What a volume must read: the bytes written to it, zeros elsewhere. */
class Reference {
  readonly bytes: Uint8Array;
  constructor(size: number, from?: Reference) {
    this.bytes = from ? Uint8Array.from(from.bytes) : new Uint8Array(size);
  }
  write(offset: number, data: Uint8Array): void {
    this.bytes.set(data, offset);
  }
}

let stamp = 1;
/** A pattern no earlier write left: each byte depends on the write and its position. */
function pattern(length: number): Uint8Array {
  const s = stamp++;
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (s * 31 + i * 7 + (i >> 8)) & 0xff;
  return out;
}

async function write(id: string, ref: Reference, offset: number, length: number, flush = false): Promise<void> {
  const data = pattern(length);
  // As vol-upload does: in pieces the API takes (256 KiB at most).
  for (let o = 0; o < length; o += 256 * 1024) {
    const piece = data.slice(o, Math.min(length, o + 256 * 1024));
    await api.call('diskWrite', { id, offset: offset + o, data: piece, flush: flush && o + piece.length === length });
  }
  ref.write(offset, data);
}

/** Reads the places writes touched (and their neighbourhoods) and compares with the reference. */
async function expectSame(
  id: string,
  ref: Reference,
  ranges: Array<[number, number]>,
  snapshot?: string,
): Promise<void> {
  for (const [offset, length] of ranges) {
    for (let o = offset; o < offset + length; o += 256 * 1024) {
      const n = Math.min(256 * 1024, offset + length - o);
      const r = await api.call('diskRead', { id, offset: o, length: n, ...(snapshot ? { snapshot } : {}) });
      const want = ref.bytes.subarray(o, o + n);
      if (Buffer.compare(Buffer.from(r.data), Buffer.from(want)) !== 0) {
        const at = r.data.findIndex((b, i) => b !== want[i]);
        throw new Error(
          `${id}${snapshot ? `@${snapshot}` : ''}: bytes differ at ${o + at} (read ${r.data[at]}, want ${want[at]})`,
        );
      }
    }
  }
}

/** Every range the tests write lies in these (chunk-crossing on purpose). */
const CHECKED: Array<[number, number]> = [
  [0, 3 * MiB],
  [7 * MiB, 2 * MiB],
];

describe('storage pools and thin volumes', () => {
  it('has a default pool on the first disk; a new pool takes a free disk; allocation matches the backing file', async () => {
    const { pools } = await api.call('poolList', {});
    expect(pools.map((p) => p.id)).toEqual(['default']);
    expect(pools[0]!.disks.map((d) => d.id)).toEqual(['sda']);
    await expect(api.call('poolCreate', { id: 'bad', disks: ['nvme9'] })).rejects.toThrow(/no physical disk nvme9/);

    const p = await api.call('poolCreate', { id: 'p', disks: ['sdb'], diskGiB: 0.25 });
    expect(p.capacityBytes).toBe(256 * MiB);
    const before = p.backingBytes!;
    const v = await api.call('diskCreate', { id: 'thin1', pool: 'p', sizeGiB: 4, provisioning: 'thin' });
    expect(v.allocatedBytes).toBe(0);
    expect((await api.call('poolList', {})).pools.find((x) => x.id === 'p')!.overcommit).toBeCloseTo(16, 5);
    // Three chunks touched (one write crosses a chunk boundary), flushed to the backing file.
    const ref = new Reference(4 * MiB);
    await write('thin1', ref, 100, 1000);
    await write('thin1', ref, 2 * MiB - 500, 1000, true);
    const info = await api.call('diskInfo', { id: 'thin1' });
    expect(info.allocatedBytes).toBe(3 * MiB);
    expect(info.io.zeroedBytes).toBe(3 * MiB - 2000);
    const after = (await api.call('poolList', {})).pools.find((x) => x.id === 'p')!;
    expect(after.allocatedBytes).toBe(3 * MiB);
    // The sparse file grew by what the pool allocated (zero fill included), not by the 4 GiB.
    expect(after.backingBytes! - before).toBe(3 * MiB);
    // A read of a never-written chunk takes no device time and allocates nothing.
    const z = await api.call('diskRead', { id: 'thin1', offset: 3 * 1024 * MiB, length: 4096 });
    expect(z.data.every((b) => b === 0)).toBe(true);
    expect((await api.call('diskInfo', { id: 'thin1' })).io.zeroReads).toBe(1);
    await api.call('diskDelete', { id: 'thin1' });
    expect((await api.call('poolList', {})).pools.find((x) => x.id === 'p')!.allocatedBytes).toBe(0);
  });
});

describe('integrity through snapshots, clones and reverts', () => {
  const base = new Reference(16 * MiB);
  let s1: Reference;
  let s2: Reference;
  let clone: Reference;

  it('reads back every pattern through a chain of snapshots, a template, clones and a revert', async () => {
    await api.call('diskCreate', { id: 'gold', pool: 'p', sizeGiB: 16 / 1024, provisioning: 'thin' });
    await write('gold', base, 0, 300_000);
    await write('gold', base, MiB - 1000, 2000);
    await write('gold', base, 7 * MiB + 5, 100_000);
    await api.call('diskSnapshot', { id: 'gold', snapshot: 's1' });
    s1 = new Reference(0, base);
    await write('gold', base, 50, 5000); // copy-up of chunk 0
    await write('gold', base, 2 * MiB + 17, 70_000); // a chunk nobody had
    await api.call('diskSnapshot', { id: 'gold', snapshot: 's2' });
    s2 = new Reference(0, base);
    await write('gold', base, MiB - 10, 20); // crosses chunks 0 and 1, both in lower layers
    await expectSame('gold', base, CHECKED);
    await expectSame('gold', s1, CHECKED, 's1');
    await expectSame('gold', s2, CHECKED, 's2');

    // Delete the middle snapshot: its layer merges up, every image stays as it was.
    const del = await api.call('diskDeleteSnapshot', { id: 'gold', snapshot: 's2' });
    expect(del.snapshots.map((s) => s.name)).toEqual(['s1']);
    await expectSame('gold', base, CHECKED);
    await expectSame('gold', s1, CHECKED, 's1');

    // Revert to s1: what came after is gone.
    const rev = await api.call('diskRevert', { id: 'gold', snapshot: 's1' });
    expect(rev.freedBytes).toBeGreaterThan(0);
    base.bytes.set(s1.bytes);
    await expectSame('gold', base, CHECKED);

    await api.call('diskDelete', { id: 'gold' });
  });

  it('clones of a template share it and diverge independently', async () => {
    const tpl = new Reference(16 * MiB);
    await api.call('diskCreate', { id: 'tpl', pool: 'p', sizeGiB: 16 / 1024, provisioning: 'thin' });
    await write('tpl', tpl, 0, 2 * MiB);
    await write('tpl', tpl, 7 * MiB, 2 * MiB);
    await api.call('diskTemplate', { id: 'tpl' });
    await expect(api.call('diskWrite', { id: 'tpl', offset: 0, data: new Uint8Array(4) })).rejects.toThrow(/read-only/);
    const c1 = await api.call('diskClone', { template: 'tpl', id: 'c1' });
    await api.call('diskClone', { template: 'tpl', id: 'c2' });
    expect(c1.allocatedBytes).toBe(0);
    expect(c1.sharedBytes).toBe(4 * MiB);
    clone = new Reference(0, tpl);
    const other = new Reference(0, tpl);
    await write('c1', clone, MiB - 100, 300);
    await write('c2', other, 8 * MiB, 4096);
    await api.call('diskSnapshot', { id: 'c1', snapshot: 'a' });
    const atA = new Reference(0, clone);
    await write('c1', clone, 10, 10);
    await expectSame('c1', clone, CHECKED);
    await expectSame('c1', atA, CHECKED, 'a');
    await expectSame('c2', other, CHECKED);
    await expectSame('tpl', tpl, CHECKED);
    await expect(api.call('diskDelete', { id: 'tpl' })).rejects.toThrow(/c1, c2/);
  });

  it('keeps flushed bytes across a host-agent restart and a power cut', async () => {
    await write('c1', clone, 2 * MiB + 3, 9000, true);
    await t.restartHostAgent();
    await expectSame('c1', clone, CHECKED);
    await write('c1', clone, 8 * MiB - 7, 70_000, true);
    await t.powerCutHostAgent();
    await expectSame('c1', clone, CHECKED);
  });

  it('leaves every disk readable and consistent when the hypervisor dies in the middle of a snapshot', async () => {
    for (const [point, op] of [
      ['snapshot:before-save', 'take'],
      ['snapshot:after-save', 'take'],
      ['save:before-rename', 'take'],
      ['delete-snapshot:before-save', 'delete'],
      ['delete-snapshot:after-save', 'delete'],
    ] as const) {
      await write('c1', clone, 7 * MiB + 11, 5000, true);
      if (op === 'delete') await api.call('diskSnapshot', { id: 'c1', snapshot: 'victim' });
      fs.writeFileSync(crashFile, point);
      // The hypervisor dies before it answers: a short timeout, not the API's usual 10 s.
      const dying = new ManagementClient(t.nc, namespace(t.ns), HOST, 1_500);
      const call =
        op === 'take'
          ? dying.call('diskSnapshot', { id: 'c1', snapshot: 'victim' })
          : dying.call('diskDeleteSnapshot', { id: 'c1', snapshot: 'victim' });
      await expect(call, point).rejects.toThrow();
      await t.restartHypervisor();
      // The metadata loaded (its checker passed) and the bytes are the ones written.
      const info = await api.call('diskInfo', { id: 'c1' });
      const has = info.snapshots.some((s) => s.name === 'victim');
      const expected = op === 'take' ? point.endsWith('after-save') : !point.endsWith('after-save');
      expect(has, point).toBe(expected);
      await expectSame('c1', clone, CHECKED);
      if (has) await api.call('diskDeleteSnapshot', { id: 'c1', snapshot: 'victim' });
      await expectSame('c1', clone, CHECKED);
    }
  }, 120_000);
});

describe('a pool that fills up', () => {
  it('pauses the VM whose write cannot be allocated, keeps its neighbour running, resumes it when space is freed, loses nothing', async () => {
    // Run alone (-t), the first test has not made the pool.
    if (!(await api.call('poolList', {})).pools.some((x) => x.id === 'p')) {
      await api.call('poolCreate', { id: 'p', disks: ['sdb'], diskGiB: 0.25 });
    }
    await api.call('define', { name: 'nb', app: 'web', memoryMiB: 256, diskGiB: 0.25 });
    await api.call('define', {
      name: 'db1',
      app: 'db',
      memoryMiB: 512,
      diskGiB: 1,
      disk: { pool: 'p', provisioning: 'thin' },
    });
    for (const name of ['nb', 'db1']) {
      await api.call('start', { name });
      await waitFor(async () => (await info(name)).state === 'running', 60_000, `${name} running`, 50);
    }
    // Ballast: a thick volume takes all but 2 MiB of the pool.
    const free = (await api.call('poolList', {})).pools.find((x) => x.id === 'p')!.freeBytes;
    await api.call('diskCreate', {
      id: 'ballast',
      pool: 'p',
      sizeGiB: (free - 2 * MiB) / (1024 * MiB),
      provisioning: 'thick',
    });
    expect((await api.call('poolList', {})).pools.find((x) => x.id === 'p')!.freeBytes).toBe(2 * MiB);

    const w = new DurabilityWorkload({
      vm: 'db1',
      seed: 'pool-full',
      prefix: 'full',
      clock: new RealClock(1),
      send: createBusSender(t.nc, namespace(t.ns), HOST, { timeoutMs: 5_000 }),
      concurrency: 16,
      maxAttempts: 200,
      retryMs: 50,
      maxRetryMs: 500,
      targetAcked: 100_000,
      // Large values fill the log (and the 2 MiB) in a second.
      valueBytes: { min: 8 * 1024, max: 16 * 1024 },
    });
    const writing = w.write();
    await waitFor(async () => (await info('db1')).state === 'paused', 60_000, 'db1 paused by a full pool', 50);
    const paused = await info('db1');
    expect(paused.reason).toMatch(/^I\/O error: pool p is full/);
    expect((await api.call('poolList', {})).pools.find((x) => x.id === 'p')!.stalledVms).toEqual(['db1']);
    expect((await info('nb')).state).toBe('running');
    const ackedWhenPaused = w.progress().acked;

    const freed = await api.call('diskDelete', { id: 'ballast' });
    expect(freed.freedBytes).toBeGreaterThan(0);
    await waitFor(async () => (await info('db1')).state === 'running', 10_000, 'db1 resumed', 50);
    await waitFor(() => w.progress().acked >= ackedWhenPaused + 500, 30_000, '500 more acknowledged writes', 20);
    w.stop();
    await writing;
    const r = await w.verify(32);
    const disk = (await info('db1')).disks[0]!.volume!;
    console.log(
      `pool full: paused after ${ackedWhenPaused} acked writes, ${r.acked} acked in all, lost ${r.lost}; ` +
        `stalls ${disk.io.poolFullStalls}, allocated ${(disk.allocatedBytes / MiB).toFixed(0)} MiB`,
    );
    expect(disk.io.poolFullStalls).toBeGreaterThan(0);
    expect(r.lost).toBe(0);
    expect(r.corrupt).toBe(0);
    for (const name of ['nb', 'db1']) await api.call('destroy', { name });
  }, 120_000);
});

async function info(name: string): Promise<VmInfo> {
  return api.call('info', { name });
}
