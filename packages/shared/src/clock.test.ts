import { describe, expect, it } from 'vitest';
import { RealClock, VirtualClock } from './clock.ts';

describe('VirtualClock', () => {
  it('runs events in time order, ties in insertion order, and jumps time to each', () => {
    const c = new VirtualClock();
    const seen: string[] = [];
    c.at(5, () => seen.push(`b@${c.now()}`));
    c.at(1, () => seen.push(`a@${c.now()}`));
    c.at(5, () => seen.push(`c@${c.now()}`));
    c.at(3, () => c.at(4, () => seen.push(`nested@${c.now()}`)));
    c.runAll();
    expect(seen).toEqual(['a@1', 'nested@4', 'b@5', 'c@5']);
    expect(c.now()).toBe(5);
  });

  it('cancels events and stops at runUntil', () => {
    const c = new VirtualClock();
    const seen: number[] = [];
    const h = c.at(2, () => seen.push(2));
    c.at(3, () => seen.push(3));
    c.at(10, () => seen.push(10));
    c.cancel(h);
    c.runUntil(5);
    expect(seen).toEqual([3]);
    expect(c.now()).toBe(5);
    c.runAll();
    expect(seen).toEqual([3, 10]);
  });

  it('keeps order over many random events (heap property)', () => {
    const c = new VirtualClock();
    const times: number[] = [];
    let x = 12345;
    for (let i = 0; i < 5000; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      const t = x % 1000;
      c.at(t, () => times.push(c.now()));
    }
    c.runAll();
    expect(times).toHaveLength(5000);
    for (let i = 1; i < times.length; i++) expect(times[i]!).toBeGreaterThanOrEqual(times[i - 1]!);
  });
});

describe('RealClock', () => {
  it('maps simulated to wall time by the time scale', () => {
    let wall = 1000;
    const orig = performance.now;
    performance.now = () => wall;
    try {
      const c = new RealClock(10, 1000);
      wall = 1500;
      expect(c.now()).toBe(50);
      expect(c.toWall(3)).toBe(30);
      expect(c.toSim(30)).toBe(3);
    } finally {
      performance.now = orig;
    }
    expect(() => new RealClock(0)).toThrow(/timeScale/);
  });

  it('fires a timer no earlier than its simulated due time', async () => {
    const c = new RealClock(2);
    const due = c.now() + 10;
    const firedAt = await new Promise<number>((r) => c.at(due, () => r(c.now())));
    expect(firedAt).toBeGreaterThanOrEqual(due - 0.5);
  });
});
