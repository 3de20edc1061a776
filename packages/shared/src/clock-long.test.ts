import { describe, expect, it } from 'vitest';
import { waitFor } from './bus.ts';
import { RealClock } from './clock.ts';

describe('RealClock with far-away timers', () => {
  it('does not fire a timer due in 30 simulated days at once (setTimeout overflows past 2^31-1 ms)', async () => {
    const clock = new RealClock(10);
    let fired = 0;
    const far = clock.at(clock.now() + 30 * 24 * 3600 * 1000, () => fired++);
    const huge = clock.at(1e308, () => fired++);
    let soon = false;
    clock.at(clock.now() + 5, () => (soon = true));
    await waitFor(() => soon, 2_000, 'the 5 ms timer');
    expect(soon).toBe(true);
    expect(fired).toBe(0);
    clock.cancel(far);
    clock.cancel(huge);
    clock.cancelAll();
  });
});
