import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  Heartbeat,
  Hypercall,
  VirtualClock,
  VmsimError,
  createLogger,
  createRng,
  decode,
} from '@vmsim/shared';
import { GARBAGE_BURST, GARBAGE_PERIOD_MS, GuestFaults, LEAK_PERIOD_MS, LEAK_STEP_MIB } from './faults.ts';

const logger = createLogger({ svc: 'test', host: 'h', level: 'silent' });
const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

/** A machine with `sizeMiB` of RAM that refuses past it, as the hypervisor does without a limit. */
function machine(sizeMiB: number) {
  const m = {
    usedMiB: 0,
    memAlloc: (mib: number) => {
      if (m.usedMiB + mib > sizeMiB) return Promise.reject(new VmsimError(ErrorCode.NO_MEMORY, 'guest RAM exhausted'));
      m.usedMiB += mib;
      return Promise.resolve();
    },
    memFree: (mib: number) => {
      m.usedMiB -= mib;
      return Promise.resolve();
    },
  };
  return m;
}

function faults(clock: VirtualClock, m: ReturnType<typeof machine>) {
  const published: { subject: string; data: Uint8Array }[] = [];
  const panics: string[] = [];
  const f = new GuestFaults({
    machine: m,
    clock,
    logger,
    rng: createRng('t'),
    publish: (subject, data) => published.push({ subject, data }),
    subjects: ['hc', 'hb', 'status', 'tx'],
    panic: (r) => panics.push(r),
  });
  return { f, published, panics };
}

describe('guest faults', () => {
  it('a leak grows by a step per period until the RAM is gone, then panics', async () => {
    const clock = new VirtualClock();
    const m = machine(256);
    const { f, panics } = faults(clock, m);
    f.start('leak', undefined);
    for (let t = LEAK_PERIOD_MS; t <= 10 * LEAK_PERIOD_MS; t += LEAK_PERIOD_MS) {
      clock.runUntil(t);
      await settle();
    }
    expect(m.usedMiB).toBe(10 * LEAK_STEP_MIB);
    for (let t = 11 * LEAK_PERIOD_MS; t <= 40 * LEAK_PERIOD_MS; t += LEAK_PERIOD_MS) {
      clock.runUntil(t);
      await settle();
    }
    expect(m.usedMiB).toBe(256);
    expect(panics).toEqual([expect.stringMatching(/^out of memory: a leak took 256 MiB/)]);
    expect(f.running).toBeUndefined();
  });

  it('a leak given a duration stops and gives its memory back', async () => {
    const clock = new VirtualClock();
    const m = machine(4096);
    const { f } = faults(clock, m);
    f.start('leak', 500);
    for (let t = LEAK_PERIOD_MS; t <= 1000; t += LEAK_PERIOD_MS) {
      clock.runUntil(t);
      await settle();
    }
    expect(f.running).toBeUndefined();
    expect(m.usedMiB).toBe(0);
  });

  it('garbage floods every subject with payloads no schema accepts, until stopped', () => {
    const clock = new VirtualClock();
    const { f, published } = faults(clock, machine(1024));
    f.start('garbage', undefined);
    clock.runUntil(100 * GARBAGE_PERIOD_MS);
    expect(published.length).toBe(101 * GARBAGE_BURST);
    expect(new Set(published.map((p) => p.subject))).toEqual(new Set(['hc', 'hb', 'status', 'tx']));
    for (const p of published) {
      expect(() => decode(p.data, Hypercall, 'hypercall')).toThrow();
      expect(() => decode(p.data, Heartbeat, 'heartbeat')).toThrow();
    }
    f.stop('test');
    clock.runUntil(200 * GARBAGE_PERIOD_MS);
    expect(published.length).toBe(101 * GARBAGE_BURST);
  });
});
