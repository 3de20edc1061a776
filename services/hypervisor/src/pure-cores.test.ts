import { describe, expect, it } from 'vitest';
import { ErrorCode, VirtualClock } from '@vmsim/shared';
import {
  admitCpuReservation,
  admitMemory,
  checkReservation,
  committableMiB,
  hostCpuPct,
  reservableCpuPct,
} from './admission.ts';
import { ExtentAllocator } from './block-map.ts';
import { ConnectionTable } from './connections.ts';
import { nextState, canApply } from './vm-state.ts';

describe('VM lifecycle', () => {
  it('follows libvirt: defined → starting → running ⇄ paused → stopping → stopped', () => {
    let s = nextState('v', 'defined', 'start');
    expect(s).toBe('starting');
    s = nextState('v', s, 'ready');
    s = nextState('v', s, 'pause');
    expect(s).toBe('paused');
    s = nextState('v', s, 'resume');
    s = nextState('v', s, 'shutdown');
    expect(s).toBe('stopping');
    expect(nextState('v', s, 'exited')).toBe('stopped');
  });

  it('lets a crashed VM restart, be destroyed or fail, and refuses impossible moves with a reason', () => {
    expect(nextState('v', 'running', 'crash')).toBe('crashed');
    expect(nextState('v', 'crashed', 'start')).toBe('starting');
    expect(nextState('v', 'crashed', 'fail')).toBe('failed');
    expect(nextState('v', 'crashed', 'destroy')).toBe('stopped');
    expect(canApply('failed', 'start')).toBe(false);
    expect(() => nextState('web1', 'running', 'start')).toThrow(/cannot start VM web1: it is running/);
    expect(() => nextState('web1', 'stopped', 'shutdown')).toThrow(
      expect.objectContaining({ code: ErrorCode.BAD_STATE }),
    );
  });
});

describe('block map', () => {
  it('allocates aligned contiguous extents first-fit and reuses freed space', () => {
    const GiB = 1024 ** 3;
    const alloc = new ExtentAllocator([
      { id: 'sda', capacityBytes: 10 * GiB },
      { id: 'sdb', capacityBytes: 100 * GiB },
    ]);
    const a = alloc.allocate(4 * GiB);
    const b = alloc.allocate(4 * GiB);
    const c = alloc.allocate(4 * GiB);
    expect([a.disk, a.pOffset]).toEqual(['sda', 0]);
    expect([b.disk, b.pOffset]).toEqual(['sda', 4 * GiB]);
    expect(c.disk).toBe('sdb');
    alloc.release([a]);
    expect(alloc.allocate(3 * GiB)).toMatchObject({ disk: 'sda', pOffset: 0 });
    expect(() => alloc.allocate(200 * GiB)).toThrow(expect.objectContaining({ code: ErrorCode.NO_SPACE }));
  });
});

describe('virtual switch connections', () => {
  it('routes answers only from the VM that was asked, and expires the rest', () => {
    const clock = new VirtualClock();
    const t = new ConnectionTable(clock, { timeoutMs: 100, maxOpen: 2 });
    const c1 = t.openFor('web1', '_INBOX.a')!;
    const c2 = t.openFor('web2', '_INBOX.b')!;
    expect(t.openFor('web1', '_INBOX.c')).toBeUndefined();
    expect(t.close('web2', c1.cid)).toBeUndefined(); // another VM cannot answer it
    expect(t.close('web1', c1.cid)?.replyTo).toBe('_INBOX.a');
    expect(t.close('web1', c1.cid)).toBeUndefined();
    clock.runUntil(150);
    expect(t.expire().map((c) => c.cid)).toEqual([c2.cid]);
    expect(t.size).toBe(0);
    t.openFor('web3', 'x');
    expect(t.dropVm('web3')).toHaveLength(1);
  });
});

describe('memory admission', () => {
  it('refuses a VM that does not fit, and overcommit makes room', () => {
    const plan = { hostMiB: 4096, overcommit: 1, reservedMiB: 512 };
    expect(committableMiB(plan)).toBe(3584);
    expect(() => admitMemory(plan, 2048, 'web3', 2048)).toThrow(/VM web3 needs 2048 MiB but only 1536 MiB/);
    expect(() => admitMemory({ ...plan, overcommit: 1.5 }, 2048, 'web3', 2048)).not.toThrow();
  });
});

describe('CPU reservation admission', () => {
  const plan = { cores: 4, hostPct: 6 };

  it('keeps the sum of running reservations within the cores less the host side, naming the figures', () => {
    expect(reservableCpuPct(plan)).toBe(394);
    expect(() => admitCpuReservation(plan, 300, 'db', 94, 2)).not.toThrow();
    expect(() => admitCpuReservation(plan, 300, 'db', 100, 2)).toThrow(
      expect.objectContaining({
        code: ErrorCode.NO_CPU,
        message: expect.stringMatching(
          /VM db wants a CPU reservation of 100% but only 94% of 394% reservable are free \(4 cores × 100% − 6% .* running VMs hold 300%\)/,
        ),
      }),
    );
  });

  it('refuses a reservation above what the VM’s vCPUs can run', () => {
    expect(() => admitCpuReservation(plan, 0, 'web', 150, 1)).toThrow(
      expect.objectContaining({ code: ErrorCode.OUT_OF_RANGE, message: expect.stringMatching(/at most 100%/) }),
    );
    expect(() => checkReservation('web', 200, 2)).not.toThrow();
  });

  it('counts the host side’s periodic work, which grows with the guests', () => {
    const type2 = { hostTaskBaseCycles: 1_400_000, hostTaskPerGuestCycles: 280_000, hostTaskPeriodMs: 10 };
    // 1.4 M + 4 × 0.28 M cycles every 10 ms on 2.8 GHz cores: 9% of one core.
    expect(hostCpuPct(type2, 4, 2800)).toBeCloseTo(9, 9);
  });
});
