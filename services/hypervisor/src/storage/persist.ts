import { z } from 'zod';
import { ErrorCode, VmsimError, validate } from '@vmsim/shared';
import { checkStorage } from './check.ts';
import { PROVISIONING, StorageModel, type Layer } from './model.ts';
import { StoragePool } from './pool.ts';

const Id = z.string().min(1);
const Count = z.number().int().min(0);

/** The whole storage metadata: one document, written atomically (temp file + rename). */
export const StorageDoc = z.object({
  version: z.literal(1),
  nextLayer: z.number().int().min(1),
  pools: z.array(
    z.object({
      id: Id,
      chunkBytes: z.number().int().min(1),
      cursor: Count,
      disks: z.array(
        z.object({
          id: Id,
          capacityBytes: Count,
          hint: Count,
          /** Allocated chunks as runs. */
          used: z.array(z.object({ start: Count, count: z.number().int().min(1) })),
        }),
      ),
    }),
  ),
  layers: z.array(
    z.object({
      id: Id,
      pool: Id,
      parent: Id.nullable(),
      readOnly: z.boolean(),
      refs: z.number().int().min(1),
      /** Runs of `count` chunks (1 when absent): virtual `at + k` is physical `index + k` on `disk`. */
      chunks: z.array(
        z.object({ at: Count, disk: Id, index: Count, fresh: z.boolean(), count: z.number().int().min(1).optional() }),
      ),
    }),
  ),
  volumes: z.array(
    z.object({
      id: Id,
      pool: Id,
      sizeBytes: z.number().int().min(1),
      provisioning: z.enum(PROVISIONING),
      template: z.boolean(),
      origin: Id.nullable(),
      base: Id.nullable(),
      top: Id,
      snapshots: z.array(z.object({ name: Id, layer: Id })),
    }),
  ),
});
export type StorageDoc = z.infer<typeof StorageDoc>;

/**
 * A layer's chunks as runs: consecutive virtual chunks on consecutive physical chunks of one
 * disk (a thick volume on one disk is a handful of runs, not one entry per MiB), so the
 * document a flush saves stays small.
 */
function chunkRuns(l: Layer): StorageDoc['layers'][number]['chunks'] {
  const out: { at: number; disk: string; index: number; fresh: boolean; count?: number }[] = [];
  for (const [at, c] of [...l.chunks].sort((a, b) => a[0] - b[0])) {
    const last = out.at(-1);
    const n = last?.count ?? 1;
    if (last && last.at + n === at && last.disk === c.disk && last.index + n === c.index && last.fresh === c.fresh) {
      last.count = n + 1;
    } else out.push({ at, disk: c.disk, index: c.index, fresh: c.fresh });
  }
  return out;
}

export function serializeStorage(m: StorageModel): StorageDoc {
  return {
    version: 1,
    nextLayer: m.nextLayer,
    pools: [...m.pools.values()].map((p) => ({
      id: p.id,
      chunkBytes: p.chunkBytes,
      cursor: p.cursor,
      disks: p.disks.map((d) => {
        const used: { start: number; count: number }[] = [];
        for (let i = 0; i < d.chunks; i++) {
          if (d.used[i] !== 1) continue;
          const last = used.at(-1);
          if (last && last.start + last.count === i) last.count++;
          else used.push({ start: i, count: 1 });
        }
        return { id: d.id, capacityBytes: d.capacityBytes, hint: d.hint, used };
      }),
    })),
    layers: [...m.layers.values()].map((l) => ({
      id: l.id,
      pool: l.pool,
      parent: l.parent,
      readOnly: l.readOnly,
      refs: l.refs,
      chunks: chunkRuns(l),
    })),
    volumes: [...m.volumes.values()].map((v) => ({ ...v, snapshots: v.snapshots.map((s) => ({ ...s })) })),
  };
}

/**
 * Rebuilds the model from a document: schema errors name the field (SCHEMA), and a
 * document that parses but breaks an invariant is refused with the checker's findings.
 */
export function deserializeStorage(doc: unknown): StorageModel {
  const d = validate(doc, StorageDoc, 'storage metadata');
  const m = new StorageModel();
  const fail = (msg: string): never => {
    throw new VmsimError(ErrorCode.SCHEMA, `invalid storage metadata: ${msg}`);
  };
  m.nextLayer = d.nextLayer;
  d.pools.forEach((pd, pi) => {
    if (m.pools.has(pd.id)) fail(`pools.${pi}.id: duplicate pool ${pd.id}`);
    const p = new StoragePool(pd.id, pd.chunkBytes);
    pd.disks.forEach((dd, di) => {
      if (p.disk(dd.id)) fail(`pools.${pi}.disks.${di}.id: duplicate disk ${dd.id}`);
      p.addDisk(dd.id, dd.capacityBytes);
      const disk = p.disk(dd.id)!;
      disk.hint = dd.hint;
      dd.used.forEach((r, ri) => {
        for (let i = r.start; i < r.start + r.count; i++) {
          if (i >= disk.chunks || disk.used[i] === 1) fail(`pools.${pi}.disks.${di}.used.${ri}: bad run at chunk ${i}`);
          disk.used[i] = 1;
          disk.usedCount++;
        }
      });
    });
    if (pd.cursor > 0 && pd.cursor >= pd.disks.length) fail(`pools.${pi}.cursor: ${pd.cursor} is past the disks`);
    p.cursor = pd.cursor;
    m.pools.set(p.id, p);
  });
  d.layers.forEach((ld, li) => {
    if (m.layers.has(ld.id)) fail(`layers.${li}.id: duplicate layer ${ld.id}`);
    const l: Layer = {
      id: ld.id,
      pool: ld.pool,
      parent: ld.parent,
      readOnly: ld.readOnly,
      refs: ld.refs,
      chunks: new Map(),
    };
    ld.chunks.forEach((c, ci) => {
      for (let k = 0; k < (c.count ?? 1); k++) {
        if (l.chunks.has(c.at + k)) fail(`layers.${li}.chunks.${ci}.at: chunk ${c.at + k} twice`);
        l.chunks.set(c.at + k, { disk: c.disk, index: c.index + k, fresh: c.fresh });
      }
    });
    m.layers.set(l.id, l);
  });
  d.volumes.forEach((vd, vi) => {
    if (m.volumes.has(vd.id)) fail(`volumes.${vi}.id: duplicate volume ${vd.id}`);
    m.volumes.set(vd.id, { ...vd, snapshots: vd.snapshots.map((s) => ({ ...s })) });
  });
  for (const l of m.layers.keys()) {
    const n = Number(l.slice(1));
    if (/^L\d+$/.test(l) && n >= m.nextLayer) fail(`nextLayer: ${m.nextLayer} would reuse layer ${l}`);
  }
  const problems = checkStorage(m);
  if (problems.length > 0) fail(problems.slice(0, 5).join('; '));
  return m;
}
