import { afterEach, describe, expect, it, vi } from 'vitest';
import { frozenAwareTimeout } from './hypercalls.ts';

/** A hypercall's timeout counts the time the guest ran, not time it was stopped (a paused VM). */
describe('frozen-aware hypercall timeout', () => {
  afterEach(() => vi.useRealTimers());

  it('expires after its time when the process ran all along', async () => {
    vi.useFakeTimers();
    const t = frozenAwareTimeout(1_000);
    let expired = false;
    t.expired.catch(() => (expired = true));
    await vi.advanceTimersByTimeAsync(999);
    expect(expired).toBe(false);
    await vi.advanceTimersByTimeAsync(2);
    expect(expired).toBe(true);
  });

  it('gives the answer another full timeout when its timer fires long after its time (the process was stopped)', async () => {
    vi.useFakeTimers();
    const t = frozenAwareTimeout(1_000);
    let expired = false;
    t.expired.catch(() => (expired = true));
    await vi.advanceTimersByTimeAsync(500);
    // SIGSTOP for a minute: the wall clock moves, the process's timers do not run.
    vi.setSystemTime(Date.now() + 60_000);
    // Its timer fires at 1,000 ms of timer time, a minute late: it waits another 1,000 ms.
    await vi.advanceTimersByTimeAsync(600);
    expect(expired).toBe(false);
    await vi.advanceTimersByTimeAsync(800);
    expect(expired).toBe(false);
    await vi.advanceTimersByTimeAsync(200);
    expect(expired).toBe(true);
  });

  it('cancel stops it', async () => {
    vi.useFakeTimers();
    const t = frozenAwareTimeout(100);
    let expired = false;
    t.expired.catch(() => (expired = true));
    t.cancel();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(expired).toBe(false);
  });
});
