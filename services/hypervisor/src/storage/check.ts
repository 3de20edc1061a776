import type { StorageModel } from './model.ts';

/**
 * Every invariant the model relies on; returns the problems found (empty = consistent).
 * Run after loading metadata, and by tests after every operation.
 */
export function checkStorage(m: StorageModel): string[] {
  const problems: string[] = [];
  const bad = (s: string): void => void problems.push(s);

  // Allocation maps: counts agree with the bitmaps, the search hint skips no free chunk.
  const diskOwner = new Map<string, string>();
  for (const p of m.pools.values()) {
    for (const d of p.disks) {
      if (diskOwner.has(d.id)) bad(`disk ${d.id} is in pools ${diskOwner.get(d.id)} and ${p.id}`);
      diskOwner.set(d.id, p.id);
      let used = 0;
      for (let i = 0; i < d.chunks; i++) {
        const u = d.used[i];
        if (u !== 0 && u !== 1) bad(`pool ${p.id} disk ${d.id} chunk ${i}: map value ${u}`);
        if (u === 1) used++;
        else if (i < d.hint) bad(`pool ${p.id} disk ${d.id}: free chunk ${i} below the search hint ${d.hint}`);
      }
      if (used !== d.usedCount) bad(`pool ${p.id} disk ${d.id}: ${used} chunks used, count says ${d.usedCount}`);
    }
  }

  // Every chunk a layer holds is allocated in its pool, and held by exactly one layer.
  const holder = new Map<string, string>();
  for (const l of m.layers.values()) {
    const p = m.pools.get(l.pool);
    if (!p) {
      bad(`layer ${l.id}: no pool ${l.pool}`);
      continue;
    }
    if (l.parent !== null) {
      const parent = m.layers.get(l.parent);
      if (!parent) bad(`layer ${l.id}: no parent layer ${l.parent}`);
      else if (parent.pool !== l.pool) bad(`layer ${l.id} in pool ${l.pool} has parent in pool ${parent.pool}`);
      else if (!parent.readOnly) bad(`layer ${l.id}: parent ${l.parent} is writable`);
    }
    for (const [c, ch] of l.chunks) {
      const key = `${l.pool}/${ch.disk}#${ch.index}`;
      if (!Number.isInteger(c) || c < 0) bad(`layer ${l.id}: virtual chunk ${c}`);
      const d = p.disk(ch.disk);
      if (!d || ch.index < 0 || ch.index >= d.chunks) bad(`layer ${l.id} chunk ${c}: no physical chunk ${key}`);
      else if (d.used[ch.index] !== 1) bad(`layer ${l.id} chunk ${c}: ${key} is referenced but free`);
      const other = holder.get(key);
      if (other !== undefined) bad(`${key} is held by layers ${other} and ${l.id}`);
      holder.set(key, l.id);
    }
  }
  for (const p of m.pools.values()) {
    for (const d of p.disks) {
      for (let i = 0; i < d.chunks; i++) {
        if (d.used[i] === 1 && !holder.has(`${p.id}/${d.id}#${i}`))
          bad(`${p.id}/${d.id}#${i} is allocated but unreferenced`);
      }
    }
  }

  // Reference counts: children plus volumes on top; no layer without one.
  const expected = new Map<string, number>();
  const inc = (id: string): void => void expected.set(id, (expected.get(id) ?? 0) + 1);
  for (const l of m.layers.values()) if (l.parent !== null) inc(l.parent);
  for (const v of m.volumes.values()) inc(v.top);
  for (const l of m.layers.values()) {
    const want = expected.get(l.id) ?? 0;
    if (l.refs !== want) bad(`layer ${l.id}: refs ${l.refs}, referenced ${want} time(s)`);
    if (want === 0) bad(`layer ${l.id} is referenced by nothing`);
  }

  // Volumes: chain shape, snapshots are exactly the own layers below the top, templates read-only.
  for (const v of m.volumes.values()) {
    const p = m.pools.get(v.pool);
    if (!p) {
      bad(`volume ${v.id}: no pool ${v.pool}`);
      continue;
    }
    const maxChunk = Math.ceil(v.sizeBytes / p.chunkBytes);
    const own: string[] = [];
    const seen = new Set<string>();
    let mine = true;
    for (let id: string | null = v.top; id !== null;) {
      if (seen.has(id)) {
        bad(`volume ${v.id}: layer chain loops at ${id}`);
        break;
      }
      seen.add(id);
      if (id === v.base) mine = false;
      const l = m.layers.get(id);
      if (!l) {
        bad(`volume ${v.id}: chain reaches missing layer ${id}`);
        break;
      }
      if (mine) own.push(id);
      if (l.pool !== v.pool) bad(`volume ${v.id} in pool ${v.pool}: layer ${id} in pool ${l.pool}`);
      for (const c of l.chunks.keys())
        if (c >= maxChunk) bad(`volume ${v.id}: layer ${id} holds chunk ${c} >= ${maxChunk}`);
      id = l.parent;
    }
    if (v.base !== null && mine) bad(`volume ${v.id}: chain never reaches its base ${v.base}`);
    const top = m.layers.get(v.top);
    if (top && top.readOnly !== v.template)
      bad(`volume ${v.id}: top ${v.top} readOnly=${top.readOnly}, template=${v.template}`);
    const snapLayers = v.snapshots.map((s) => s.layer);
    const below = own.slice(1).reverse();
    if (snapLayers.join() !== below.join()) {
      bad(`volume ${v.id}: snapshots on [${snapLayers.join()}], own layers below top [${below.join()}]`);
    }
    if (new Set(v.snapshots.map((s) => s.name)).size !== v.snapshots.length)
      bad(`volume ${v.id}: duplicate snapshot names`);
    if (v.origin === null) {
      if (v.base !== null) bad(`volume ${v.id}: base ${v.base} without an origin`);
    } else {
      const t = m.volumes.get(v.origin);
      if (!t) bad(`volume ${v.id}: origin ${v.origin} is gone`);
      else if (!t.template) bad(`volume ${v.id}: origin ${v.origin} is not a template`);
      else if (t.top !== v.base) bad(`volume ${v.id}: base ${v.base} is not its origin's top ${t.top}`);
      else if (t.pool !== v.pool || t.sizeBytes !== v.sizeBytes)
        bad(`volume ${v.id}: differs from origin in pool/size`);
    }
    if (v.provisioning === 'thick' && v.origin === null && own.length > 0) {
      const bottom = m.layers.get(own.at(-1)!);
      if (bottom && bottom.chunks.size !== maxChunk) {
        bad(`thick volume ${v.id}: bottom layer holds ${bottom.chunks.size} of ${maxChunk} chunks`);
      }
    }
  }
  return problems;
}
