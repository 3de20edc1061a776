import { describe, expect, it } from 'vitest';
import { ErrorCode } from '@vmsim/shared';
import { CpuPackage } from './cpu.ts';
import { NicLink } from './nic.ts';
import { Ram } from './ram.ts';

describe('CpuPackage', () => {
  it('runs one burst per core for cycles / clock', () => {
    const cpu = new CpuPackage({ sockets: 2, coresPerSocket: 2, mhz: 2000 });
    expect(cpu.capacity).toBe(4);
    const a = cpu.start(2_000_000, 0)!;
    expect(a.serviceMs).toBeCloseTo(1, 9);
    for (let i = 0; i < 3; i++) expect(cpu.start(1, 0)).toBeDefined();
    expect(cpu.start(1, 0)).toBeUndefined();
    cpu.finish(a.core, 1);
    expect(cpu.start(1, 1)?.core).toBe(a.core);
    expect(() => cpu.finish(a.core, 2)).not.toThrow();
    expect(() => cpu.finish(a.core, 2)).toThrow(/not busy/);
  });

  it('measures utilization across cores', () => {
    const cpu = new CpuPackage({ sockets: 1, coresPerSocket: 2, mhz: 1000 });
    const s = cpu.start(1_000_000, 0)!; // one core for 1 ms
    cpu.finish(s.core, 1);
    expect(cpu.meter.takeUtilization(2)).toBeCloseTo(0.25, 9);
  });
});

describe('NicLink', () => {
  it('serializes frames at line rate and adds the link latency', () => {
    const nic = new NicLink({ gbps: 1, latencyMs: 0.05, ring: 2 });
    const a = nic.start(125_000, 0)!; // 1 Mbit at 1 Gbit/s = 1 ms
    const b = nic.start(125_000, 0)!;
    expect(a.doneAt).toBeCloseTo(1.05, 9);
    expect(b.doneAt).toBeCloseTo(2.05, 9);
    expect(nic.start(1, 0)).toBeUndefined();
  });
});

describe('Ram', () => {
  it('hands out memory per owner and refuses what does not fit', () => {
    const ram = new Ram(1024);
    ram.allocate('a', 600);
    ram.allocate('a', 600); // idempotent
    expect(ram.allocatedMiB).toBe(600);
    expect(() => ram.allocate('b', 500)).toThrow(expect.objectContaining({ code: ErrorCode.NO_MEMORY }));
    ram.free('a');
    ram.allocate('b', 1024);
    expect(ram.allocatedMiB).toBe(1024);
  });
});
