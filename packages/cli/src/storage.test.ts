import { describe, expect, it } from 'vitest';
import type { PoolInfo, VolumeInfo } from '@vmsim/shared';
import { UsageError, parseDefinition } from './commands.ts';
import {
  DISK_HEADERS,
  POOL_HEADERS,
  cloneTable,
  diskDetails,
  diskRow,
  diskTable,
  fmtBytes,
  meanLatencyMs,
  parseStorageArgs,
  poolRow,
  vmDiskFlags,
} from './storage.ts';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

function usage(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error('accepted');
}

const args = (line: string) => parseStorageArgs(line.split(' '));

describe('vmsim pool / disk arguments', () => {
  it('turns pool commands into their requests', () => {
    expect(args('pool list')).toEqual({ op: 'poolList', json: false });
    expect(args('pool create fast --disk sdb --disk sdc --chunk-mib 4')).toEqual({
      op: 'poolCreate',
      req: { id: 'fast', disks: ['sdb', 'sdc'], chunkMiB: 4 },
    });
    expect(args('pool create fast --disk sdb')).toEqual({ op: 'poolCreate', req: { id: 'fast', disks: ['sdb'] } });
    expect(args('pool add-disk fast sdd')).toEqual({ op: 'poolAddDisk', req: { id: 'fast', disk: 'sdd' } }); // --size: a partition of each disk.
    expect(args('pool create thin --disk sdb --size 0.5')).toEqual({
      op: 'poolCreate',
      req: { id: 'thin', disks: ['sdb'], diskGiB: 0.5 },
    });
    expect(args('pool add-disk thin sda --size 1')).toEqual({
      op: 'poolAddDisk',
      req: { id: 'thin', disk: 'sda', sizeGiB: 1 },
    });
    expect(() => args('pool add-disk thin sda --size 0')).toThrow(/--size: "0" is not a positive number of GiB/);
  });

  it('turns disk commands into their requests, thin by default', () => {
    expect(args('disk create d1 --size 2')).toEqual({
      op: 'diskCreate',
      req: { id: 'd1', sizeGiB: 2, provisioning: 'thin' },
    });
    expect(args('disk create d1 --size 0.5 --pool fast --thick')).toEqual({
      op: 'diskCreate',
      req: { id: 'd1', pool: 'fast', sizeGiB: 0.5, provisioning: 'thick' },
    });
    expect(args('disk list --pool fast --json')).toEqual({ op: 'diskList', req: { pool: 'fast' }, json: true });
    expect(args('disk list')).toEqual({ op: 'diskList', req: {}, json: false });
    expect(args('disk info d1')).toEqual({ op: 'diskInfo', req: { id: 'd1' }, json: false });
    expect(args('disk snapshot d1 s1')).toEqual({ op: 'diskSnapshot', req: { id: 'd1', snapshot: 's1' } });
    expect(args('disk revert d1 s1')).toEqual({ op: 'diskRevert', req: { id: 'd1', snapshot: 's1' } });
    expect(args('disk delete d1')).toEqual({ op: 'diskDelete', req: { id: 'd1' } });
    expect(args('disk delete d1 --snapshot s1')).toEqual({
      op: 'diskDeleteSnapshot',
      req: { id: 'd1', snapshot: 's1' },
    });
    expect(args('disk template gold')).toEqual({ op: 'diskTemplate', req: { id: 'gold' } });
    expect(args('disk --help').op).toBe('help');
  });

  it('clones one disk, or N named <new-id>-1..N with --count', () => {
    expect(args('disk clone gold web')).toEqual({ op: 'diskClone', template: 'gold', ids: ['web'], counted: false });
    expect(args('disk clone gold web --count 3')).toEqual({
      op: 'diskClone',
      template: 'gold',
      ids: ['web-1', 'web-2', 'web-3'],
      counted: true,
    });
  });

  it('refuses bad input with a UsageError naming what is wrong', () => {
    expect(usage(() => args('disk create x'))).toMatch(/missing --size/);
    expect(usage(() => args('disk create x --size=-1'))).toMatch(/--size: "-1" is not a positive number/);
    expect(usage(() => args('disk create x --size 0'))).toMatch(/--size: "0"/);
    expect(usage(() => args('disk create x --size lots'))).toMatch(/--size: "lots"/);
    expect(usage(() => args('disk create x --size 99999'))).toMatch(/sizeGiB/);
    expect(usage(() => args('disk create x --size 1 --thin --thick'))).toMatch(/not both/);
    expect(usage(() => args('disk create x --size 1 --frob'))).toMatch(/--frob/);
    expect(usage(() => args('disk snapshot x --size 1 s'))).toMatch(/--size is not a flag of this command/);
    expect(usage(() => args('disk create x y --size 1'))).toMatch(/unexpected argument "y"/);
    expect(usage(() => args('disk snapshot x'))).toMatch(/missing <snapshot>/);
    expect(usage(() => args('disk create bad.name --size 1'))).toMatch(/disk id "bad.name"/);
    expect(usage(() => args('disk frob'))).toMatch(/disk needs one of: list, info, create/);
    expect(usage(() => args('pool'))).toMatch(/pool needs one of: list, create, add-disk/);
    expect(usage(() => args('pool create p'))).toMatch(/at least one --disk/);
    expect(usage(() => args('pool create p --disk sdb --chunk-mib 65'))).toMatch(/--chunk-mib: "65"/);
    expect(usage(() => args('pool add-disk p'))).toMatch(/missing <physdisk>/);
    expect(usage(() => args('disk clone gold web --count 0'))).toMatch(/--count: "0"/);
    expect(usage(() => args('disk clone gold web --count 2.5'))).toMatch(/--count/);
    expect(usage(() => args('disk delete d1 --snapshot a.b'))).toMatch(/--snapshot "a.b"/);
    // A clone id past 64 characters once "-N" is added.
    expect(usage(() => args(`disk clone gold ${'w'.repeat(63)} --count 2`))).toMatch(/new disk id/);
  });
});

describe('vm define storage flags', () => {
  it('map to the definition’s disk', () => {
    expect(vmDiskFlags({})).toEqual({});
    expect(vmDiskFlags({ pool: 'fast', thin: true })).toEqual({ disk: { pool: 'fast', provisioning: 'thin' } });
    expect(vmDiskFlags({ clone: 'gold' })).toEqual({ disk: { provisioning: 'thin', clone: 'gold' } });
    expect(vmDiskFlags({ volume: 'data1' })).toEqual({ disk: { volume: 'data1' } });
    const def = parseDefinition({ name: 'web1', ...vmDiskFlags({ clone: 'gold' }) });
    expect(def.disk).toEqual({ pool: 'default', provisioning: 'thin', clone: 'gold' });
  });

  it('refuse contradictions', () => {
    expect(usage(() => vmDiskFlags({ clone: 'gold', volume: 'd' }))).toMatch(/--clone or --volume/);
    expect(usage(() => vmDiskFlags({ volume: 'd', thin: true }))).toMatch(/--volume/);
    expect(usage(() => vmDiskFlags({ pool: 'a b' }))).toMatch(/--pool "a b"/);
  });
});

const io = (o: Partial<VolumeInfo['io']> = {}): VolumeInfo['io'] => ({
  reads: 0,
  writes: 0,
  flushes: 0,
  bytesRead: 0,
  bytesWritten: 0,
  latencyMsSum: 0,
  latencyMsMax: 0,
  zeroReads: 0,
  copiedBytes: 0,
  zeroedBytes: 0,
  poolFullStalls: 0,
  ...o,
});

const volume = (o: Partial<VolumeInfo> = {}): VolumeInfo => ({
  id: 'web-1',
  pool: 'default',
  provisioning: 'thin',
  virtualBytes: 2 * GiB,
  allocatedBytes: 12 * MiB,
  sharedBytes: 1.5 * GiB,
  template: false,
  origin: 'gold',
  snapshots: [
    { name: 's1', bytes: 4 * MiB },
    { name: 's2', bytes: 0 },
  ],
  attachedTo: 'web1',
  io: io({ reads: 30, writes: 10, latencyMsSum: 100, latencyMsMax: 9 }),
  ...o,
});

/** The cell under `header` in a rendered row. */
const cell = (headers: string[], row: string[], header: string) => row[headers.indexOf(header)];

describe('storage renderers', () => {
  it('print sizes in GiB from 1 GiB, MiB below, two decimals', () => {
    expect(fmtBytes(2 * GiB)).toBe('2.00 GiB');
    expect(fmtBytes(1.5 * GiB)).toBe('1.50 GiB');
    expect(fmtBytes(512 * MiB)).toBe('512.00 MiB');
    expect(fmtBytes(MiB / 4)).toBe('0.25 MiB');
    expect(fmtBytes(0)).toBe('0.00 MiB');
    expect(fmtBytes(null)).toBe('-');
  });

  it('render a pool row', () => {
    const pool: PoolInfo = {
      id: 'default',
      chunkBytes: MiB,
      disks: [
        { id: 'sda', capacityBytes: 8 * GiB, allocatedBytes: GiB },
        { id: 'sdb', capacityBytes: 8 * GiB, allocatedBytes: 0 },
      ],
      capacityBytes: 16 * GiB,
      allocatedBytes: GiB,
      freeBytes: 15 * GiB,
      virtualBytes: 24 * GiB,
      overcommit: 1.5,
      volumes: 11,
      stalledVms: ['web3', 'web7'],
      backingBytes: 900 * MiB,
    };
    const row = poolRow(pool);
    const at = (h: string) => cell(POOL_HEADERS, row, h);
    expect(at('POOL')).toBe('default');
    expect(at('DISKS')).toBe('sda,sdb');
    expect(at('CAPACITY')).toBe('16.00 GiB');
    expect(at('ALLOCATED')).toBe('1.00 GiB');
    expect(at('FREE')).toBe('15.00 GiB');
    expect(at('VIRTUAL')).toBe('24.00 GiB');
    expect(at('OVERCOMMIT')).toBe('1.50x');
    expect(at('BACKING')).toBe('900.00 MiB');
    expect(at('VOLUMES')).toBe('11');
    expect(at('STALLED VMS')).toBe('web3,web7');
    const quiet = poolRow({ ...pool, stalledVms: [], backingBytes: null });
    expect(cell(POOL_HEADERS, quiet, 'STALLED VMS')).toBe('-');
    expect(cell(POOL_HEADERS, quiet, 'BACKING')).toBe('-');
  });

  it('render a disk row: sizes, snapshots, VM, origin and I/O figures', () => {
    const at = (v: VolumeInfo, h: string) => cell(DISK_HEADERS, diskRow(v), h);
    const v = volume();
    expect(at(v, 'DISK')).toBe('web-1');
    expect(at(v, 'TYPE')).toBe('thin');
    expect(at(v, 'VIRTUAL')).toBe('2.00 GiB');
    expect(at(v, 'ALLOCATED')).toBe('12.00 MiB');
    expect(at(v, 'SHARED')).toBe('1.50 GiB');
    expect(at(v, 'SNAPSHOTS')).toBe('2');
    expect(at(v, 'VM')).toBe('web1');
    expect(at(v, 'TEMPLATE/ORIGIN')).toBe('gold');
    expect(at(v, 'READS')).toBe('30');
    expect(at(v, 'WRITES')).toBe('10');
    // 100 ms over 40 operations.
    expect(at(v, 'MEAN LAT ms')).toBe('2.50');
    const gold = volume({ id: 'gold', template: true, origin: null, attachedTo: null, io: io() });
    expect(at(gold, 'TEMPLATE/ORIGIN')).toBe('template');
    expect(at(gold, 'VM')).toBe('-');
    expect(at(gold, 'MEAN LAT ms')).toBe('-');
    expect(at(volume({ origin: null }), 'TEMPLATE/ORIGIN')).toBe('-');
    expect(meanLatencyMs(io({ reads: 3, writes: 1, latencyMsSum: 2 }))).toBe(0.5);
    const lines = diskTable([v, gold]).split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^DISK +POOL +TYPE/);
    expect(lines[2]).toMatch(/^gold +default +thin/);
  });

  it('render disk details and clone times with their total', () => {
    const d = diskDetails(volume());
    expect(d).toMatch(/snapshots: +s1 \(4\.00 MiB\), s2 \(0\.00 MiB\)/);
    expect(d).toMatch(/clone of gold/);
    expect(d).toMatch(/mean 2\.50 ms, max 9\.00 ms/);
    const t = cloneTable([
      { id: 'web-1', cloneMs: 1.5 },
      { id: 'web-2', cloneMs: 2.25 },
    ]).split('\n');
    expect(t[1]).toMatch(/^web-1 +1\.50$/);
    expect(t[3]).toMatch(/^total \(2\) +3\.75$/);
  });
});
