import { parseArgs } from 'node:util';
import {
  PoolName,
  SnapshotName,
  StorageRequests,
  VolumeName,
  describeIssues,
  type MgmtRequest,
  type PoolInfo,
  type VmDiskSpec,
  type VolumeInfo,
} from '@vmsim/shared';
import type { z } from 'zod';
import { UsageError, withApi, type Out } from './commands.ts';
import { fmtMs, table } from './format.ts';

/**
 * `vmsim pool …` and `vmsim disk …`: the storage commands of the management API. They parse
 * their own arguments because `pool create` repeats `--disk`, which is a single number
 * (GiB) for `vm define`.
 */

const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
  disk: { type: 'string', multiple: true },
  'chunk-mib': { type: 'string' },
  pool: { type: 'string' },
  size: { type: 'string' },
  thin: { type: 'boolean' },
  thick: { type: 'boolean' },
  snapshot: { type: 'string' },
  count: { type: 'string' },
} as const;
type Flag = keyof typeof OPTIONS;

/** Clones made by one `disk clone --count`: enough for the ten-web-VM demo, with room. */
export const MAX_CLONE_COUNT = 100;

export type StorageCommand =
  | { op: 'help' }
  | { op: 'poolList'; json: boolean }
  | { op: 'poolCreate'; req: MgmtRequest<'poolCreate'> }
  | { op: 'poolAddDisk'; req: MgmtRequest<'poolAddDisk'> }
  | { op: 'diskList'; req: MgmtRequest<'diskList'>; json: boolean }
  | { op: 'diskInfo'; req: MgmtRequest<'diskInfo'>; json: boolean }
  | { op: 'diskCreate'; req: MgmtRequest<'diskCreate'> }
  | { op: 'diskSnapshot' | 'diskRevert' | 'diskDeleteSnapshot'; req: MgmtRequest<'diskSnapshot'> }
  | { op: 'diskTemplate' | 'diskDelete'; req: MgmtRequest<'diskTemplate'> }
  /** `counted`: `--count N` was given, so `ids` are `<new-id>-1..N` and the times are tabled. */
  | { op: 'diskClone'; template: string; ids: string[]; counted: boolean };

const SUBCOMMANDS = {
  pool: ['list', 'create', 'add-disk'],
  disk: ['list', 'info', 'create', 'snapshot', 'revert', 'delete', 'template', 'clone'],
} as const;

/** `argv` starts with `pool` or `disk`. Throws UsageError naming what is wrong. */
export function parseStorageArgs(argv: string[]): StorageCommand {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: OPTIONS });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const { values: v, positionals } = parsed;
  if (v.help) return { op: 'help' };
  const [group, sub, ...args] = positionals;
  if (group !== 'pool' && group !== 'disk') throw new UsageError(`not a storage command: "${group}"`);
  const subs: readonly string[] = SUBCOMMANDS[group];
  if (!sub || !subs.includes(sub)) {
    throw new UsageError(`${group} needs one of: ${subs.join(', ')}${sub ? ` (not "${sub}")` : ''}`);
  }
  const what = `${group} ${sub}`;
  /** Only these flags, and exactly these positionals (named for the message). */
  const shape = (flags: Flag[], names: string[]): string[] => {
    for (const k of Object.keys(v) as Flag[]) {
      if (v[k] !== undefined && !flags.includes(k))
        throw new UsageError(`${what}: --${k} is not a flag of this command`);
    }
    if (args.length < names.length) {
      throw new UsageError(`${what} needs ${names.map((n) => `<${n}>`).join(' ')} (missing <${names[args.length]}>)`);
    }
    if (args.length > names.length) throw new UsageError(`${what}: unexpected argument "${args[names.length]}"`);
    return args;
  };
  const json = v.json ?? false;
  /** `--size` of a pool's disk: use only its first GiB (a partition). */
  const partition = (text: string | undefined): number | undefined => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!(text.trim() !== '' && Number.isFinite(n) && n > 0))
      throw new UsageError(`--size: "${text}" is not a positive number of GiB`);
    return n;
  };

  if (group === 'pool') {
    switch (sub) {
      case 'list':
        shape(['json'], []);
        return { op: 'poolList', json };
      case 'create': {
        const [id] = shape(['disk', 'chunk-mib', 'size'], ['id']);
        const disks = v.disk ?? [];
        if (disks.length === 0) throw new UsageError(`${what}: needs at least one --disk <physdisk>`);
        const chunk = v['chunk-mib'];
        let chunkMiB: number | undefined;
        if (chunk !== undefined) {
          chunkMiB = Number(chunk);
          if (!Number.isInteger(chunkMiB) || chunkMiB < 1 || chunkMiB > 64)
            throw new UsageError(`--chunk-mib: "${chunk}" is not a whole number from 1 to 64`);
        }
        const part = partition(v.size);
        const req = {
          id: check(PoolName, id!, 'pool id'),
          disks,
          ...(chunkMiB !== undefined ? { chunkMiB } : {}),
          ...(part !== undefined ? { diskGiB: part } : {}),
        };
        return { op: 'poolCreate', req: checked('poolCreate', req, what) };
      }
      default: {
        const [id, disk] = shape(['size'], ['id', 'physdisk']);
        const part = partition(v.size);
        return {
          op: 'poolAddDisk',
          req: checked(
            'poolAddDisk',
            { id: check(PoolName, id!, 'pool id'), disk: disk!, ...(part !== undefined ? { sizeGiB: part } : {}) },
            what,
          ),
        };
      }
    }
  }

  switch (sub) {
    case 'list': {
      shape(['pool', 'json'], []);
      const pool = v.pool === undefined ? {} : { pool: check(PoolName, v.pool, '--pool') };
      return { op: 'diskList', req: pool, json };
    }
    case 'info': {
      const [id] = shape(['json'], ['id']);
      return { op: 'diskInfo', req: { id: check(VolumeName, id!, 'disk id') }, json };
    }
    case 'create': {
      const [id] = shape(['size', 'pool', 'thin', 'thick'], ['id']);
      if (v.size === undefined) throw new UsageError(`${what}: missing --size <GiB>`);
      const sizeGiB = Number(v.size);
      if (!(v.size.trim() !== '' && Number.isFinite(sizeGiB) && sizeGiB > 0))
        throw new UsageError(`--size: "${v.size}" is not a positive number of GiB`);
      if (v.thin && v.thick) throw new UsageError(`${what}: --thin or --thick, not both`);
      const req = {
        id: check(VolumeName, id!, 'disk id'),
        ...(v.pool !== undefined ? { pool: check(PoolName, v.pool, '--pool') } : {}),
        sizeGiB,
        provisioning: v.thick ? ('thick' as const) : ('thin' as const),
      };
      return { op: 'diskCreate', req: checked('diskCreate', req, what) };
    }
    case 'snapshot':
    case 'revert': {
      const [id, snapshot] = shape([], ['id', 'snapshot']);
      return {
        op: sub === 'snapshot' ? 'diskSnapshot' : 'diskRevert',
        req: { id: check(VolumeName, id!, 'disk id'), snapshot: check(SnapshotName, snapshot!, 'snapshot') },
      };
    }
    case 'delete': {
      const [id] = shape(['snapshot'], ['id']);
      const disk = check(VolumeName, id!, 'disk id');
      if (v.snapshot === undefined) return { op: 'diskDelete', req: { id: disk } };
      return { op: 'diskDeleteSnapshot', req: { id: disk, snapshot: check(SnapshotName, v.snapshot, '--snapshot') } };
    }
    case 'template': {
      const [id] = shape([], ['id']);
      return { op: 'diskTemplate', req: { id: check(VolumeName, id!, 'disk id') } };
    }
    default: {
      const [template, newId] = shape(['count'], ['template', 'new-id']);
      check(VolumeName, template!, 'template');
      if (v.count === undefined)
        return {
          op: 'diskClone',
          template: template!,
          ids: [check(VolumeName, newId!, 'new disk id')],
          counted: false,
        };
      const n = Number(v.count);
      if (!Number.isInteger(n) || n < 1 || n > MAX_CLONE_COUNT)
        throw new UsageError(`--count: "${v.count}" is not a whole number from 1 to ${MAX_CLONE_COUNT}`);
      const ids = Array.from({ length: n }, (_, i) => check(VolumeName, `${newId}-${i + 1}`, 'new disk id'));
      return { op: 'diskClone', template: template!, ids, counted: true };
    }
  }
}

/** A name as the API takes it, or a UsageError naming `what`. */
function check(schema: z.ZodType<string>, value: string, what: string): string {
  const r = schema.safeParse(value);
  if (!r.success) throw new UsageError(`${what} "${value}": ${r.error.issues[0]?.message ?? 'invalid'}`);
  return value;
}

/** The whole request, checked as the hypervisor will check it (a backstop for limits above). */
function checked<Op extends keyof typeof StorageRequests>(op: Op, req: MgmtRequest<Op>, what: string): MgmtRequest<Op> {
  const r = StorageRequests[op].safeParse(req);
  if (!r.success) throw new UsageError(`${what}: ${describeIssues(r.error)}`);
  return req;
}

export interface VmDiskFlags {
  pool?: string | undefined;
  thin?: boolean | undefined;
  clone?: string | undefined;
  volume?: string | undefined;
}

/**
 * `vm define`'s storage flags as the definition's `disk` (absent when none is given: the
 * hypervisor's default, a thick volume in the default pool).
 */
export function vmDiskFlags(f: VmDiskFlags): { disk?: Partial<VmDiskSpec> } {
  if (f.pool === undefined && !f.thin && f.clone === undefined && f.volume === undefined) return {};
  if (f.clone !== undefined && f.volume !== undefined)
    throw new UsageError('--clone or --volume: a VM disk is a clone of a template or an existing disk, not both');
  // An existing volume already has its pool and provisioning.
  if (f.volume !== undefined && (f.pool !== undefined || f.thin))
    throw new UsageError(`--volume: the disk ${f.volume} already has a pool and provisioning (drop --pool / --thin)`);
  return {
    disk: {
      ...(f.pool !== undefined ? { pool: check(PoolName, f.pool, '--pool') } : {}),
      // A clone is always thin: it shares its template's chunks.
      ...(f.thin || f.clone !== undefined ? { provisioning: 'thin' as const } : {}),
      ...(f.clone !== undefined ? { clone: check(VolumeName, f.clone, '--clone') } : {}),
      ...(f.volume !== undefined ? { volume: check(VolumeName, f.volume, '--volume') } : {}),
    },
  };
}

/** How `vm define` reports where the disk comes from. */
export function diskSpecText(d: VmDiskSpec | undefined): string {
  if (!d) return '';
  if (d.volume) return `, disk ${d.volume}`;
  if (d.clone) return `, disk a thin clone of ${d.clone}`;
  return `, ${d.provisioning} disk in pool ${d.pool}`;
}

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** Bytes as GiB from 1 GiB up, MiB below, with two decimals. */
export function fmtBytes(n: number | null): string {
  if (n === null || !Number.isFinite(n)) return '-';
  return Math.abs(n) >= GiB ? `${(n / GiB).toFixed(2)} GiB` : `${(n / MiB).toFixed(2)} MiB`;
}

export const POOL_HEADERS = [
  'POOL',
  'DISKS',
  'CHUNK',
  'CAPACITY',
  'ALLOCATED',
  'FREE',
  'VIRTUAL',
  'OVERCOMMIT',
  'BACKING',
  'VOLUMES',
  'STALLED VMS',
];

export function poolRow(p: PoolInfo): string[] {
  return [
    p.id,
    p.disks.map((d) => d.id).join(','),
    fmtBytes(p.chunkBytes),
    fmtBytes(p.capacityBytes),
    fmtBytes(p.allocatedBytes),
    fmtBytes(p.freeBytes),
    fmtBytes(p.virtualBytes),
    `${p.overcommit.toFixed(2)}x`,
    fmtBytes(p.backingBytes),
    String(p.volumes),
    p.stalledVms.length ? p.stalledVms.join(',') : '-',
  ];
}

export function poolTable(pools: PoolInfo[]): string {
  return table(POOL_HEADERS, pools.map(poolRow));
}

export const DISK_HEADERS = [
  'DISK',
  'POOL',
  'TYPE',
  'VIRTUAL',
  'ALLOCATED',
  'SHARED',
  'SNAPSHOTS',
  'VM',
  'TEMPLATE/ORIGIN',
  'READS',
  'WRITES',
  'MEAN LAT ms',
];

/** Mean simulated latency over reads and writes; null before the first. */
export function meanLatencyMs(io: VolumeInfo['io']): number | null {
  const ops = io.reads + io.writes;
  return ops > 0 ? io.latencyMsSum / ops : null;
}

function originCell(v: VolumeInfo): string {
  if (v.template) return v.origin ? `template (from ${v.origin})` : 'template';
  return v.origin ?? '-';
}

export function diskRow(v: VolumeInfo): string[] {
  return [
    v.id,
    v.pool,
    v.provisioning,
    fmtBytes(v.virtualBytes),
    fmtBytes(v.allocatedBytes),
    fmtBytes(v.sharedBytes),
    String(v.snapshots.length),
    v.attachedTo ?? '-',
    originCell(v),
    String(v.io.reads),
    String(v.io.writes),
    fmtMs(meanLatencyMs(v.io)),
  ];
}

export function diskTable(volumes: VolumeInfo[]): string {
  return table(DISK_HEADERS, volumes.map(diskRow));
}

export function diskDetails(v: VolumeInfo): string {
  const io = v.io;
  return [
    `disk:        ${v.id} in pool ${v.pool}, ${v.provisioning}${v.template ? ', template (read-only)' : ''}${v.origin ? `, clone of ${v.origin}` : ''}`,
    `size:        ${fmtBytes(v.virtualBytes)} virtual, ${fmtBytes(v.allocatedBytes)} allocated, ${fmtBytes(v.sharedBytes)} shared with its template`,
    `attached:    ${v.attachedTo ?? '-'}`,
    `snapshots:   ${v.snapshots.length ? v.snapshots.map((s) => `${s.name} (${fmtBytes(s.bytes)})`).join(', ') : 'none'}`,
    `io:          ${io.reads} reads, ${io.writes} writes, ${io.flushes} flushes, ${fmtBytes(io.bytesRead)} read, ${fmtBytes(io.bytesWritten)} written`,
    `latency:     mean ${fmtMs(meanLatencyMs(io))} ms, max ${fmtMs(io.reads + io.writes > 0 ? io.latencyMsMax : null)} ms (simulated)`,
    `thin/cow:    ${io.zeroReads} zero reads, ${fmtBytes(io.copiedBytes)} copied up, ${fmtBytes(io.zeroedBytes)} zero-filled, ${io.poolFullStalls} pool-full stalls`,
  ].join('\n');
}

/** Per-clone times (the result's cloneMs) and their total. */
export function cloneTable(clones: { id: string; cloneMs: number }[]): string {
  const total = clones.reduce((s, c) => s + c.cloneMs, 0);
  return table(
    ['CLONE', 'ms'],
    [...clones.map((c) => [c.id, fmtMs(c.cloneMs)]), [`total (${clones.length})`, fmtMs(total)]],
  );
}

export async function runStorage(home: string, c: Exclude<StorageCommand, { op: 'help' }>, out: Out): Promise<number> {
  return withApi(home, async (api) => {
    switch (c.op) {
      case 'poolList': {
        const { pools } = await api.call('poolList', {});
        out(c.json ? JSON.stringify(pools, null, 2) : poolTable(pools));
        return 0;
      }
      case 'poolCreate':
      case 'poolAddDisk': {
        const p = c.op === 'poolCreate' ? await api.call('poolCreate', c.req) : await api.call('poolAddDisk', c.req);
        out(`pool ${p.id}: ${p.disks.length} disk(s), ${fmtBytes(p.freeBytes)} free of ${fmtBytes(p.capacityBytes)}`);
        out(poolTable([p]));
        return 0;
      }
      case 'diskList': {
        const { volumes } = await api.call('diskList', c.req);
        out(c.json ? JSON.stringify(volumes, null, 2) : diskTable(volumes));
        return 0;
      }
      case 'diskInfo': {
        const d = await api.call('diskInfo', c.req);
        out(c.json ? JSON.stringify(d, null, 2) : diskDetails(d));
        return 0;
      }
      case 'diskCreate': {
        const d = await api.call('diskCreate', c.req);
        out(
          `created disk ${d.id}: ${d.provisioning}, ${fmtBytes(d.virtualBytes)} in pool ${d.pool} (${fmtBytes(d.allocatedBytes)} allocated)`,
        );
        return 0;
      }
      case 'diskSnapshot': {
        const d = await api.call('diskSnapshot', c.req);
        out(`${d.id}: snapshot ${c.req.snapshot} taken (${d.snapshots.length} snapshot(s))`);
        return 0;
      }
      case 'diskRevert': {
        const d = await api.call('diskRevert', c.req);
        const dropped = d.droppedSnapshots.length ? `; dropped snapshots ${d.droppedSnapshots.join(', ')}` : '';
        out(`${d.id}: reverted to ${c.req.snapshot}, freed ${fmtBytes(d.freedBytes)}${dropped}`);
        return 0;
      }
      case 'diskDeleteSnapshot': {
        const d = await api.call('diskDeleteSnapshot', c.req);
        out(
          `${d.id}: snapshot ${c.req.snapshot} deleted, freed ${fmtBytes(d.freedBytes)} (${d.snapshots.length} left)`,
        );
        return 0;
      }
      case 'diskTemplate': {
        const d = await api.call('diskTemplate', c.req);
        out(`${d.id} is a template now: read-only, clone it with \`vmsim disk clone ${d.id} <new-id>\``);
        return 0;
      }
      case 'diskDelete': {
        const r = await api.call('diskDelete', c.req);
        out(`deleted disk ${r.id}, freed ${fmtBytes(r.freedBytes)}`);
        return 0;
      }
      case 'diskClone': {
        const done: { id: string; cloneMs: number }[] = [];
        // One at a time: each time is then that clone's alone, and a failure stops the rest.
        for (const id of c.ids) {
          const d = await api.call('diskClone', { template: c.template, id });
          done.push({ id: d.id, cloneMs: d.cloneMs });
          if (!c.counted)
            out(`cloned ${d.id} from ${c.template} in ${fmtMs(d.cloneMs)} ms (${fmtBytes(d.sharedBytes)} shared)`);
        }
        if (c.counted) out(cloneTable(done));
        return 0;
      }
    }
  });
}
