/**
 * Storage virtualization, for `npm run bench`, on a stack of its own at time scale 1 (simulated
 * ms = wall ms), the figures issue 7 closes on:
 *
 * 1. space for ten VMs cloned from a 10 GiB template, thin (template + what each clone wrote)
 *    against ten thick 10 GiB volumes, from the pools' allocation, and what the thin pool's
 *    sparse backing files really grew by (host-agent);
 * 2. time to clone: the hypervisor's own figure (`cloneMs`, metadata save included) and the
 *    wall round trip of the management call;
 * 3. the cost of a three-layer snapshot chain against a flat disk holding the same data:
 *    random 4 KiB reads, and random 4 KiB writes onto a fresh snapshot top (copy-up of each
 *    chunk's first write) against in-place writes.
 *
 * Every figure is measured in the run; nothing is assumed.
 */
import { ManagementClient, createRng, namespace, type NatsConnection, type PoolInfo, type Rng } from '@vmsim/shared';
import { connect } from '@nats-io/transport-node';
import { startStack } from '@vmsim/cli';

export interface StorageOptions {
  natsUrl: string;
  /** A scratch directory for the stack. */
  home: string;
  ns: string;
  quick: boolean;
  log: (line: string) => void;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
/** The most one diskWrite / diskRead takes. */
const PIECE = 256 * KiB;
const CLONES = 10;
const TEMPLATE_GIB = 10;
const IO_BYTES = 4 * KiB;
const IN_FLIGHT = 16;
const UPLOAD_IN_FLIGHT = 8;
const HOST = 'host1';

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
function summary(samples: number[]): { median: number; max: number; p50: number; p99: number; n: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { median: pct(s, 50), max: s[s.length - 1]!, p50: pct(s, 50), p99: pct(s, 99), n: s.length };
}
const f2 = (x: number) => x.toFixed(2);
const f3 = (x: number) => x.toFixed(3);
const gib = (b: number) => b / GiB;

/** Bytes a write leaves, distinct per write so nothing can pass for a stale read. */
function filled(length: number, stamp: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (stamp * 31 + i * 7) & 0xff;
  return out;
}

export interface RandomIo {
  iops: number;
  /** Wall ms, call to reply. */
  p50Ms: number;
  p99Ms: number;
  ops: number;
  /** Simulated ms per operation inside the hypervisor (io figures delta). */
  simMeanMs: number;
  copiedBytes: number;
  /** Writes that were the first to their chunk in the run (the chain's copy-ups): wall ms. */
  firstWrite: { n: number; p50Ms: number; maxMs: number } | null;
}

/** One burst of random I/O: wall latencies and time, and the volume's io figures delta. */
interface Burst {
  lat: number[];
  wallMs: number;
  ops: number;
  simMs: number;
  copied: number;
  firstLat: number[];
}

export async function storage(o: StorageOptions): Promise<Record<string, unknown>> {
  const templateWritten = (o.quick ? 64 : 256) * MiB;
  const cloneWritten = (o.quick ? 4 : 16) * MiB;
  const region = (o.quick ? 16 : 64) * MiB;
  const ioMs = o.quick ? 1_500 : 5_000;

  const stack = await startStack({
    natsUrl: o.natsUrl,
    ns: o.ns,
    host: HOST,
    home: o.home,
    timeScale: 1,
    profile: 'small',
    scheduler: 'fair',
    hypervisorType: 'type1',
    overcommit: 1,
    detached: false,
    logLevel: 'warn',
  });
  let nc: NatsConnection | undefined;
  try {
    nc = await connect({ servers: o.natsUrl });
    const api = new ManagementClient(nc, namespace(o.ns), HOST, 60_000);
    const pool = async (id: string): Promise<PoolInfo> => {
      const p = (await api.call('poolList', {})).pools.find((x) => x.id === id);
      if (!p) throw new Error(`bench: no pool ${id}`);
      return p;
    };
    let stamp = 1;
    /**
     * Writes `length` bytes from `offset` in 256 KiB pieces (the most a diskWrite takes), a few
     * in flight so set-up does not dominate the run; the last piece goes once the others are
     * done, with a flush, so the backing files hold everything before they are measured.
     */
    const upload = async (id: string, offset: number, length: number): Promise<void> => {
      const data = filled(PIECE, stamp++);
      const starts: number[] = [];
      for (let at = 0; at < length; at += PIECE) starts.push(at);
      const last = starts.pop()!;
      const put = (at: number, flush: boolean) =>
        api.call('diskWrite', { id, offset: offset + at, data: data.subarray(0, Math.min(PIECE, length - at)), flush });
      let next = 0;
      const lane = async (): Promise<void> => {
        while (next < starts.length) await put(starts[next++]!, false);
      };
      await Promise.all(Array.from({ length: UPLOAD_IN_FLIGHT }, lane));
      await put(last, true);
    };

    // ------------------------------------------------------------ 1 and 2: ten clones, thin vs thick
    // Thin on the default pool (sda, the SSD); thick on a pool of its own on sdb (1862 GiB), so
    // each pool's allocation is one case's alone.
    const before = await pool('default');
    await api.call('diskCreate', { id: 'gold', pool: 'default', sizeGiB: TEMPLATE_GIB, provisioning: 'thin' });
    await upload('gold', 0, templateWritten);
    await api.call('diskTemplate', { id: 'gold' });
    const cloneMs: number[] = [];
    const cloneWallMs: number[] = [];
    for (let i = 1; i <= CLONES; i++) {
      const t = performance.now();
      const c = await api.call('diskClone', { template: 'gold', id: `web${i}` });
      cloneWallMs.push(performance.now() - t);
      cloneMs.push(c.cloneMs);
      if (c.allocatedBytes !== 0) throw new Error(`bench: clone web${i} allocated ${c.allocatedBytes} bytes up front`);
    }
    // Each clone's own data (its logs, its config) past the template's, so nothing is copied up.
    await Promise.all(Array.from({ length: CLONES }, (_, i) => upload(`web${i + 1}`, templateWritten, cloneWritten)));
    const after = await pool('default');
    const thinBytes = after.allocatedBytes - before.allocatedBytes;
    const backingDelta =
      after.backingBytes !== null && before.backingBytes !== null ? after.backingBytes - before.backingBytes : null;

    await api.call('poolCreate', { id: 'thickpool', disks: ['sdb'] });
    const thickBefore = await pool('thickpool');
    for (let i = 1; i <= CLONES; i++) {
      await api.call('diskCreate', {
        id: `thick${i}`,
        pool: 'thickpool',
        sizeGiB: TEMPLATE_GIB,
        provisioning: 'thick',
      });
    }
    const thickAfter = await pool('thickpool');
    const thickBytes = thickAfter.allocatedBytes - thickBefore.allocatedBytes;
    const thickBacking =
      thickAfter.backingBytes !== null && thickBefore.backingBytes !== null
        ? thickAfter.backingBytes - thickBefore.backingBytes
        : null;
    const cloneS = summary(cloneMs);
    const wallS = summary(cloneWallMs);

    o.log('');
    o.log(
      `storage: ten VMs cloned from a ${TEMPLATE_GIB} GiB template (${templateWritten / MiB} MiB written), each writing ${cloneWritten / MiB} MiB of its own`,
    );
    o.log(`thin  (template + 10 clones), pool allocated ${f3(gib(thinBytes)).padStart(9)} GiB`);
    o.log(
      `      sparse backing files grew by          ${backingDelta === null ? '      n/a' : f3(gib(backingDelta)).padStart(9)} GiB   (host-agent)`,
    );
    o.log(`thick (10 × ${TEMPLATE_GIB} GiB), pool allocated       ${f3(gib(thickBytes)).padStart(9)} GiB`);
    o.log(
      `      backing files grew by                 ${thickBacking === null ? '      n/a' : f3(gib(thickBacking)).padStart(9)} GiB   (allocated, never written)`,
    );
    o.log(`ratio thick ÷ thin                          ${f2(thickBytes / thinBytes).padStart(9)}`);
    o.log('');
    o.log('time to clone (ms, 10 clones)             median      max');
    o.log(`cloneMs (in the hypervisor, save incl.)  ${f3(cloneS.median).padStart(7)}  ${f3(cloneS.max).padStart(7)}`);
    o.log(`diskClone wall round trip                ${f3(wallS.median).padStart(7)}  ${f3(wallS.max).padStart(7)}`);

    // ------------------------------------------------------------ 3: three-layer chain vs flat
    // Part 1's volumes go first: every metadata save (snapshots too) writes the whole map, and
    // 100 GiB of thick extents would make part 3's set-up measure that instead.
    for (let i = 1; i <= CLONES; i++) {
      await api.call('diskDelete', { id: `web${i}` });
      await api.call('diskDelete', { id: `thick${i}` });
    }
    await api.call('diskDelete', { id: 'gold' });
    const chunk = after.chunkBytes;
    const chunks = Math.floor(region / chunk);
    const regionGiB = Math.max(1, Math.ceil((region * 2) / GiB));
    await api.call('diskCreate', { id: 'flat', pool: 'default', sizeGiB: regionGiB, provisioning: 'thin' });
    await upload('flat', 0, chunks * chunk);
    await api.call('diskCreate', { id: 'chain', pool: 'default', sizeGiB: regionGiB, provisioning: 'thin' });
    // A third of the region per layer (whole chunks), each closed by a snapshot: the top is
    // left empty, so a read falls through one to three snapshot layers to find its chunk.
    const thirds = [0, Math.floor(chunks / 3), Math.floor((2 * chunks) / 3), chunks];
    for (let l = 0; l < 3; l++) {
      await upload('chain', thirds[l]! * chunk, (thirds[l + 1]! - thirds[l]!) * chunk);
      await api.call('diskSnapshot', { id: 'chain', snapshot: `s${l + 1}` });
    }
    const span = chunks * chunk;
    // Reads and writes go through the management API (one NATS request each, via the
    // hypervisor to the host-agent): the same path for both volumes, so the ratio is the chain's.
    /** One burst of `ms` on a volume: its wall latencies, wall time and io figures delta. */
    const burst = async (
      id: string,
      op: 'read' | 'write',
      rng: Rng,
      ms: number,
      touched = new Set<number>(),
    ): Promise<Burst> => {
      const data = filled(IO_BYTES, stamp++);
      const io0 = (await api.call('diskInfo', { id })).io;
      const lat: number[] = [];
      const firstLat: number[] = [];
      const end = performance.now() + ms;
      const worker = async (): Promise<void> => {
        while (performance.now() < end) {
          const offset = rng.int(span / IO_BYTES) * IO_BYTES;
          const first = op === 'write' && !touched.has(Math.floor(offset / chunk));
          if (first) touched.add(Math.floor(offset / chunk));
          const t = performance.now();
          if (op === 'read') await api.call('diskRead', { id, offset, length: IO_BYTES });
          else await api.call('diskWrite', { id, offset, data, flush: false });
          lat.push(performance.now() - t);
          if (first) firstLat.push(lat[lat.length - 1]!);
        }
      };
      const t0 = performance.now();
      await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
      const wallMs = performance.now() - t0;
      const io1 = (await api.call('diskInfo', { id })).io;
      return {
        lat,
        wallMs,
        ops: op === 'read' ? io1.reads - io0.reads : io1.writes - io0.writes,
        simMs: io1.latencyMsSum - io0.latencyMsSum,
        copied: io1.copiedBytes - io0.copiedBytes,
        firstLat,
      };
    };
    /**
     * Flat, chain, chain, flat, half the time each: a machine shared with other work drifts, and
     * this order gives both volumes the same share of the drift. Each volume keeps its random
     * stream across its two halves (the chain's second half finds what its first copied up).
     */
    const compare = async (op: 'read' | 'write'): Promise<{ flat: RandomIo; chain: RandomIo }> => {
      const rng = { flat: createRng(`bench-storage-${op}`), chain: createRng(`bench-storage-${op}`) };
      const runs: Record<'flat' | 'chain', Burst[]> = { flat: [], chain: [] };
      const touched = { flat: new Set<number>(), chain: new Set<number>() };
      for (const id of ['flat', 'chain', 'chain', 'flat'] as const)
        runs[id].push(await burst(id, op, rng[id], ioMs / 2, touched[id]));
      const fold = (rs: Burst[]): RandomIo => {
        const lat = rs.flatMap((r) => r.lat);
        const ops = rs.reduce((a, r) => a + r.ops, 0);
        const s = summary(lat);
        const first = rs.flatMap((r) => r.firstLat);
        const fs = first.length > 0 ? summary(first) : null;
        return {
          iops: lat.length / (rs.reduce((a, r) => a + r.wallMs, 0) / 1000),
          p50Ms: s.p50,
          p99Ms: s.p99,
          ops: lat.length,
          simMeanMs: ops > 0 ? rs.reduce((a, r) => a + r.simMs, 0) / ops : NaN,
          copiedBytes: rs.reduce((a, r) => a + r.copied, 0),
          firstWrite: fs && { n: fs.n, p50Ms: fs.p50, maxMs: fs.max },
        };
      };
      return { flat: fold(runs.flat), chain: fold(runs.chain) };
    };
    // Warm-up (discarded), so the first measured burst does not pay for compiling the path:
    // reads on both, writes on the flat volume only (the chain's top must stay fresh).
    const warm = Math.min(300, ioMs / 5);
    await burst('flat', 'read', createRng('bench-storage-warm'), warm);
    await burst('chain', 'read', createRng('bench-storage-warm'), warm);
    const { flat: readFlat, chain: readChain } = await compare('read');
    await burst('flat', 'write', createRng('bench-storage-warm'), warm);
    const { flat: writeFlat, chain: writeChain } = await compare('write');

    const row = (label: string, r: RandomIo) =>
      `${label.padEnd(26)}${r.iops.toFixed(0).padStart(8)}  ${f3(r.p50Ms).padStart(7)}  ${f3(r.p99Ms).padStart(7)}  ${f3(r.simMeanMs).padStart(8)}  ${(r.copiedBytes / MiB).toFixed(1).padStart(9)}`;
    const ratio = (label: string, c: RandomIo, f: RandomIo) =>
      `${label.padEnd(26)}${f2(c.iops / f.iops).padStart(8)}  ${f2(c.p50Ms / f.p50Ms).padStart(7)}  ${f2(c.p99Ms / f.p99Ms).padStart(7)}  ${f2(c.simMeanMs / f.simMeanMs).padStart(8)}`;
    o.log('');
    o.log(
      `three-layer snapshot chain vs flat disk: random 4 KiB over ${span / MiB} MiB, ${IN_FLIGHT} in flight, ${ioMs / 1000} s each, via the management API`,
    );
    o.log('                              IOPS  p50 wall p99 wall  sim mean  copied MiB');
    o.log(row('reads, flat', readFlat));
    o.log(row('reads, 3-layer chain', readChain));
    o.log(ratio('ratio chain ÷ flat', readChain, readFlat));
    o.log(row('writes, flat (in place)', writeFlat));
    o.log(row('writes, chain (copy-up)', writeChain));
    o.log(ratio('ratio chain ÷ flat', writeChain, writeFlat));
    const firsts = (label: string, r: RandomIo) =>
      r.firstWrite
        ? `${label.padEnd(34)}${String(r.firstWrite.n).padStart(5)}  ${f3(r.firstWrite.p50Ms).padStart(7)}  ${f3(r.firstWrite.maxMs).padStart(8)}`
        : `${label.padEnd(34)}    0`;
    o.log('first write to each chunk (wall ms)    n      p50       max');
    o.log(firsts('flat (in place)', writeFlat));
    o.log(firsts('chain (copies up the chunk)', writeChain));

    return {
      clones: {
        templateGiB: TEMPLATE_GIB,
        templateWrittenMiB: templateWritten / MiB,
        cloneWrittenMiB: cloneWritten / MiB,
        thinAllocatedBytes: thinBytes,
        thinBackingBytesDelta: backingDelta,
        thickAllocatedBytes: thickBytes,
        thickBackingBytesDelta: thickBacking,
        thickOverThin: thickBytes / thinBytes,
      },
      cloneMs: { median: cloneS.median, max: cloneS.max, all: cloneMs },
      cloneWallMs: { median: wallS.median, max: wallS.max, all: cloneWallMs },
      chainVsFlat: {
        regionMiB: span / MiB,
        inFlight: IN_FLIGHT,
        seconds: ioMs / 1000,
        read: {
          flat: readFlat,
          chain: readChain,
          ratio: {
            iops: readChain.iops / readFlat.iops,
            p50: readChain.p50Ms / readFlat.p50Ms,
            p99: readChain.p99Ms / readFlat.p99Ms,
            simMean: readChain.simMeanMs / readFlat.simMeanMs,
          },
        },
        write: {
          flat: writeFlat,
          chain: writeChain,
          ratio: {
            iops: writeChain.iops / writeFlat.iops,
            p50: writeChain.p50Ms / writeFlat.p50Ms,
            p99: writeChain.p99Ms / writeFlat.p99Ms,
            simMean: writeChain.simMeanMs / writeFlat.simMeanMs,
          },
        },
      },
    };
  } finally {
    await nc?.close();
    await stack.stop();
  }
}
