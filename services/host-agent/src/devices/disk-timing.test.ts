import { describe, expect, it } from 'vitest';
import { VirtualClock, createRng } from '@vmsim/shared';
import { DiskTiming } from './disk-timing.ts';

/**
 * Feeds a drive Poisson arrivals through a FIFO in front of it (queue depth 1) in virtual
 * time and returns the mean response time (wait + service).
 */
function simulate(opts: { seed: string; rho: number; meanBytes: number; exponentialSizes: boolean; arrivals: number }) {
  const clock = new VirtualClock();
  const rng = createRng(opts.seed);
  // Bandwidth-bound drive with no fixed latency: service time = bytes / bandwidth.
  const disk = new DiskTiming({ iops: 1e9, bandwidthMBps: 500, latencyMs: 0, queueDepth: 1, writeCacheMiB: 0 });
  const meanServiceMs = opts.meanBytes / 500_000;
  const interArrivalMs = meanServiceMs / opts.rho;
  const queue: { arrivedAt: number; bytes: number }[] = [];
  let total = 0;
  let completed = 0;
  const tryStart = (): void => {
    const next = queue[0];
    if (!next) return;
    const slot = disk.start('read', next.bytes, clock.now());
    if (!slot) return;
    queue.shift();
    clock.at(slot.doneAt, () => {
      disk.finish();
      total += clock.now() - next.arrivedAt;
      completed++;
      tryStart();
    });
  };
  let t = 0;
  for (let i = 0; i < opts.arrivals; i++) {
    t += rng.exp(interArrivalMs);
    const bytes = opts.exponentialSizes ? rng.exp(opts.meanBytes) : opts.meanBytes;
    clock.at(t, () => {
      queue.push({ arrivedAt: clock.now(), bytes });
      tryStart();
    });
  }
  clock.runAll();
  expect(completed).toBe(opts.arrivals);
  return { meanResponseMs: total / completed, meanServiceMs };
}

describe('DiskTiming in virtual time', () => {
  for (const rho of [0.5, 0.8]) {
    it(`matches M/M/1 S/(1-ρ) within 10% at ρ=${rho} over 3 seeds × 100k arrivals`, () => {
      for (const seed of ['a', 'b', 'c']) {
        const r = simulate({ seed, rho, meanBytes: 64 * 1024, exponentialSizes: true, arrivals: 100_000 });
        const expected = r.meanServiceMs / (1 - rho);
        expect(Math.abs(r.meanResponseMs - expected) / expected).toBeLessThan(0.1);
      }
    });

    it(`matches M/D/1 (Pollaczek-Khinchine) within 5% at ρ=${rho} for fixed-size reads`, () => {
      for (const seed of ['d', 'e', 'f']) {
        const r = simulate({ seed, rho, meanBytes: 16 * 1024, exponentialSizes: false, arrivals: 100_000 });
        const s = r.meanServiceMs;
        const expected = s + (rho * s) / (2 * (1 - rho));
        expect(Math.abs(r.meanResponseMs - expected) / expected).toBeLessThan(0.05);
      }
    });
  }

  it('bounds throughput by IOPS for small operations and by bandwidth for large ones', () => {
    const disk = new DiskTiming({ iops: 10_000, bandwidthMBps: 100, latencyMs: 0.5, queueDepth: 64, writeCacheMiB: 0 });
    let last = 0;
    for (let i = 0; i < 64; i++) last = disk.start('read', 4096, 0)!.doneAt;
    // 64 random 4 KiB reads at 10k IOPS: 6.4 ms of media time, plus the overlapped latency.
    expect(last).toBeCloseTo(64 * 0.1 + (0.5 - 0.1), 6);
    const big = new DiskTiming({ iops: 10_000, bandwidthMBps: 100, latencyMs: 0.5, queueDepth: 64, writeCacheMiB: 0 });
    let end = 0;
    for (let i = 0; i < 10; i++) end = big.start('read', 1_000_000, 0)!.doneAt;
    expect(end).toBeCloseTo(10 * 10 + 0.4, 6); // 10 MB at 100 MB/s = 100 ms
  });

  it('answers at queue depth 1 in max(latency, occupancy) and refuses past its queue depth', () => {
    const disk = new DiskTiming({ iops: 100_000, bandwidthMBps: 500, latencyMs: 0.1, queueDepth: 2, writeCacheMiB: 0 });
    expect(disk.start('read', 4096, 0)!.serviceMs).toBeCloseTo(0.1, 6);
    expect(disk.start('read', 4096, 0)).toBeDefined();
    expect(disk.start('read', 4096, 0)).toBeUndefined();
    disk.finish();
    expect(disk.inFlight).toBe(1);
  });

  it('takes writes into the volatile cache cheaply until it is full; a flush pays for the dirty bytes', () => {
    const disk = new DiskTiming({ iops: 150, bandwidthMBps: 200, latencyMs: 8, queueDepth: 8, writeCacheMiB: 1 });
    const cached = disk.start('write', 512 * 1024, 0)!;
    disk.finish();
    expect(cached.serviceMs).toBeLessThan(3); // transfer only, no seek
    expect(disk.dirtyBytes).toBe(512 * 1024);
    const t = cached.doneAt;
    const flush = disk.start('flush', 0, t)!;
    disk.finish();
    expect(flush.serviceMs).toBeGreaterThan((512 * 1024) / 200_000);
    expect(disk.dirtyBytes).toBe(0);
    disk.start('write', 1024 * 1024, flush.doneAt);
    disk.finish();
    const through = disk.start('write', 4096, flush.doneAt + 100)!;
    expect(through.serviceMs).toBeGreaterThanOrEqual(1000 / 150 - 1e-9); // cache full: a media write
  });

  it('reports media utilization per window', () => {
    const disk = new DiskTiming({ iops: 1000, bandwidthMBps: 1000, latencyMs: 0, queueDepth: 4, writeCacheMiB: 0 });
    disk.start('read', 4096, 0); // busy 0..1
    disk.start('read', 4096, 0); // busy 1..2
    expect(disk.meter.takeUtilization(4)).toBeCloseTo(0.5, 6);
    disk.start('read', 4096, 4); // busy 4..5
    expect(disk.meter.takeUtilization(4.5)).toBeCloseTo(1, 6);
    expect(disk.meter.takeUtilization(6)).toBeCloseTo(0.5 / 1.5, 6);
  });
});
