import { describe, expect, it } from 'vitest';
import { ErrorCode, VirtualClock, VmsimError, createLogger, createRng, type StressKind } from '@vmsim/shared';
import { MiB, OS_IMAGE_BYTES, OS_IMAGE_OFFSET, scratchArea } from './disk-layout.ts';
import type { FullMachine } from './hypercalls.ts';
import { STRESS_COSTS, Stressor, type StressTarget } from './stressors.ts';

type Op = 'cpu' | 'read' | 'write' | 'memAlloc' | 'memFree' | 'netSend' | 'netRecv';

/**
 * A virtual machine in virtual time for stressor tests: `vcpus` cores serve CPU bursts in
 * order (3 GHz), memory refuses past its size with NO_MEMORY, disk and network calls take
 * a fixed time. Counts every call and how many of each kind were in flight.
 */
class TimedMachine implements FullMachine {
  readonly calls: Record<Op, number> = { cpu: 0, read: 0, write: 0, memAlloc: 0, memFree: 0, netSend: 0, netRecv: 0 };
  readonly inFlight: Record<Op, number> = { ...this.calls };
  readonly maxInFlight: Record<Op, number> = { ...this.calls };
  readonly accesses: { op: 'read' | 'write'; offset: number; length: number }[] = [];
  readonly netBytes: number[] = [];
  usedMiB = 0;
  /** When set, every call fails with it. */
  failWith: VmsimError | undefined;
  private busyCores = 0;
  private readonly cpuQueue: (() => void)[] = [];
  private readonly clock: VirtualClock;
  private readonly t: StressTarget;

  constructor(clock: VirtualClock, target: StressTarget) {
    this.clock = clock;
    this.t = target;
  }

  get total(): number {
    return Object.values(this.calls).reduce((a, b) => a + b, 0);
  }

  private async op<T>(op: Op, ms: number, f: () => T): Promise<T> {
    this.calls[op]++;
    this.inFlight[op]++;
    this.maxInFlight[op] = Math.max(this.maxInFlight[op], this.inFlight[op]);
    try {
      await new Promise<void>((r) => this.clock.at(this.clock.now() + ms, r));
      if (this.failWith) throw this.failWith;
      return f();
    } finally {
      this.inFlight[op]--;
    }
  }

  async cpu(cycles: number): Promise<void> {
    this.calls.cpu++;
    this.inFlight.cpu++;
    this.maxInFlight.cpu = Math.max(this.maxInFlight.cpu, this.inFlight.cpu);
    try {
      if (this.busyCores >= this.t.vcpus) await new Promise<void>((r) => this.cpuQueue.push(r));
      else this.busyCores++;
      await new Promise<void>((r) => this.clock.at(this.clock.now() + cycles / 3e6, r));
      const next = this.cpuQueue.shift();
      if (next) next();
      else this.busyCores--;
      if (this.failWith) throw this.failWith;
    } finally {
      this.inFlight.cpu--;
    }
  }

  read(_disk: number, offset: number, length: number): Promise<Uint8Array> {
    return this.op('read', 0.5, () => {
      this.accesses.push({ op: 'read', offset, length });
      return new Uint8Array(length);
    });
  }

  write(_disk: number, offset: number, data: Uint8Array): Promise<void> {
    return this.op('write', 0.5, () => void this.accesses.push({ op: 'write', offset, length: data.length }));
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  memAlloc(mib: number): Promise<void> {
    return this.op('memAlloc', 0.01, () => {
      if (this.usedMiB + mib > this.t.memoryMiB)
        throw new VmsimError(ErrorCode.NO_MEMORY, `${mib} MiB more would pass ${this.t.memoryMiB} MiB`);
      this.usedMiB += mib;
    });
  }

  memFree(mib: number): Promise<void> {
    return this.op('memFree', 0.01, () => {
      this.usedMiB -= mib;
    });
  }

  netSend(bytes: number): Promise<void> {
    return this.op('netSend', 0.5, () => void this.netBytes.push(bytes));
  }

  netRecv(bytes: number): Promise<void> {
    return this.op('netRecv', 0.5, () => void this.netBytes.push(bytes));
  }
}

/** Lets every pending promise continuation run (setImmediate runs after all microtasks). */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Advances virtual time event by event up to untilMs, letting continuations run in between. */
async function runUntil(clock: VirtualClock, untilMs: number, each?: () => void): Promise<void> {
  let done = false;
  clock.at(untilMs, () => (done = true));
  await settle();
  while (!done) {
    clock.runAll(1);
    await settle();
    each?.();
  }
}

const GiB = 1024 * MiB;

function setup(kind: StressKind, target: Partial<StressTarget> = {}, durationMs?: number) {
  const clock = new VirtualClock();
  const t: StressTarget = { vcpus: 2, memoryMiB: 512, disk: { index: 0, sizeBytes: 1 * GiB }, ...target };
  const machine = new TimedMachine(clock, t);
  const stops: string[] = [];
  const stressor = Stressor.start(
    kind,
    {
      machine,
      clock,
      logger: createLogger({ svc: 'test', host: 't', level: 'silent' }),
      rng: createRng('stress-test'),
      target: t,
      onStopped: (reason) => stops.push(reason),
    },
    durationMs,
  );
  /** Stops the stressor and lets its loops wind down in virtual time. */
  const stop = async (): Promise<void> => {
    const done = stressor.stop('test over');
    let finished = false;
    void done.then(() => (finished = true));
    await settle();
    while (!finished) {
      clock.runAll(1);
      await settle();
    }
  };
  return { clock, machine, stressor, stops, stop };
}

describe('stressors', () => {
  it('cpu keeps a burst waiting for every vCPU all the time, with a bounded number in flight', async () => {
    const { clock, machine, stressor, stop } = setup('cpu', { vcpus: 2 });
    let minInFlight = Infinity;
    await runUntil(clock, 20, () => {
      if (clock.now() > 0) minInFlight = Math.min(minInFlight, machine.inFlight.cpu);
    });
    // Both cores busy and another burst queued behind each: the whole capacity, and more.
    expect(minInFlight).toBeGreaterThanOrEqual(2);
    expect(machine.maxInFlight.cpu).toBe(2 * STRESS_COSTS.cpuLoopsPerVcpu);
    // 2 cores × 20 ms of 1 ms bursts.
    expect(machine.calls.cpu).toBeGreaterThanOrEqual(40);
    const f = stressor.figures();
    expect(f['stress.running']).toBe(1);
    expect(f['stress.ops']).toBeGreaterThanOrEqual(38);
    expect(f['stress.errors']).toBe(0);
    await stop();
    expect(stressor.figures()['stress.running']).toBe(0);
    const after = machine.calls.cpu;
    await runUntil(clock, 100);
    expect(machine.calls.cpu).toBe(after);
  });

  it('memory touches chunks up to the VM size, then churns: gives one back and touches again', async () => {
    const { clock, machine, stressor, stop } = setup('memory', { vcpus: 4, memoryMiB: 512 });
    let lowest = Infinity;
    await runUntil(clock, 40, () => {
      if (stressor.stats().refused > 0) lowest = Math.min(lowest, machine.usedMiB);
    });
    const s = stressor.stats();
    expect(s.refused).toBeGreaterThan(0);
    // Once full it stays within one chunk of full: its loops do not all give back at once.
    expect(lowest).toBe(512 - STRESS_COSTS.memChunkMiB);
    expect(s.heldMiB).toBeLessThanOrEqual(512);
    expect(machine.usedMiB).toBe(s.heldMiB);
    expect(machine.calls.memFree).toBeGreaterThan(0);
    const allocs = machine.calls.memAlloc;
    const frees = machine.calls.memFree;
    await runUntil(clock, 80);
    // Still churning: more allocations and frees, each step followed by a burst that touches pages.
    expect(machine.calls.memAlloc).toBeGreaterThan(allocs);
    expect(machine.calls.memFree).toBeGreaterThan(frees);
    expect(machine.calls.cpu).toBeGreaterThanOrEqual(machine.calls.memAlloc - 2);
    expect(stressor.stats().errors).toBe(0);
    await stop();
    // Like an exiting process, it gives back all it held.
    expect(machine.usedMiB).toBe(0);
    expect(stressor.stats().heldMiB).toBe(0);
  });

  it('fork-bomb doubles its processes every interval until allocation fails, then keeps trying', async () => {
    const { clock, machine, stressor, stop } = setup('fork-bomb', { vcpus: 1, memoryMiB: 400 });
    const per = STRESS_COSTS.forkProcessMiB;
    const seen: number[] = [];
    for (let i = 1; i <= 7; i++) {
      await runUntil(clock, i * STRESS_COSTS.forkIntervalMs - 1);
      seen.push(stressor.stats().processes);
    }
    expect(seen).toEqual([1, 2, 4, 8, 16, 32, 64]);
    expect(stressor.stats().refused).toBe(0);
    await runUntil(clock, 12 * STRESS_COSTS.forkIntervalMs);
    const s = stressor.stats();
    // 400 MiB holds 100 processes of 4 MiB: it grows to the brim, refused on the way.
    expect(s.refused).toBeGreaterThan(0);
    expect(s.processes * per).toBeLessThanOrEqual(400);
    expect(s.processes * per).toBeGreaterThan(400 - 2 * per);
    expect(machine.usedMiB).toBe(s.heldMiB);
    // Its processes all want CPU: the loops on the bus follow them, capped.
    expect(machine.maxInFlight.cpu).toBe(Math.min(STRESS_COSTS.forkMaxLoops, s.processes));
    const attempts = machine.calls.memAlloc;
    const refused = s.refused;
    await runUntil(clock, 16 * STRESS_COSTS.forkIntervalMs);
    expect(machine.calls.memAlloc).toBeGreaterThan(attempts);
    expect(stressor.stats().refused).toBeGreaterThan(refused);
    expect(stressor.stats().errors).toBe(0);
    await stop();
    expect(machine.usedMiB).toBe(0);
  });

  it('fork-bomb caps the loops on the bus while its simulated processes keep growing', async () => {
    const { clock, machine, stressor, stop } = setup('fork-bomb', { vcpus: 1, memoryMiB: 8192 });
    await runUntil(clock, 10 * STRESS_COSTS.forkIntervalMs - 1);
    expect(stressor.stats().processes).toBe(512);
    expect(machine.maxInFlight.cpu).toBe(STRESS_COSTS.forkMaxLoops);
    await stop();
  });

  it('disk keeps many large reads and writes in flight, writing only in the scratch area', async () => {
    const { clock, machine, stressor, stop } = setup('disk', { disk: { index: 0, sizeBytes: 1 * GiB } });
    await runUntil(clock, 10);
    const scratch = scratchArea(1 * GiB)!;
    expect(machine.maxInFlight.read + machine.maxInFlight.write).toBeGreaterThanOrEqual(STRESS_COSTS.diskInFlight);
    expect(machine.calls.read).toBeGreaterThan(50);
    expect(machine.calls.write).toBeGreaterThan(50);
    for (const a of machine.accesses) {
      expect(a.length).toBeGreaterThanOrEqual(128 * 1024);
      expect(a.length).toBeLessThanOrEqual(256 * 1024);
      expect(a.offset % 4096).toBe(0);
      expect(a.offset).toBeGreaterThanOrEqual(scratch.offset);
      expect(a.offset + a.length).toBeLessThanOrEqual(scratch.offset + scratch.bytes);
    }
    const s = stressor.stats();
    expect(s.bytes).toBe(machine.accesses.reduce((sum, a) => sum + a.length, 0));
    await stop();
  });

  it('disk only reads (the OS image) on a disk too small for a scratch area', async () => {
    const { clock, machine, stop } = setup('disk', { disk: { index: 0, sizeBytes: 256 * MiB } });
    await runUntil(clock, 5);
    expect(machine.calls.write).toBe(0);
    expect(machine.calls.read).toBeGreaterThan(50);
    for (const a of machine.accesses) {
      expect(a.offset).toBeGreaterThanOrEqual(OS_IMAGE_OFFSET);
      expect(a.offset + a.length).toBeLessThanOrEqual(OS_IMAGE_OFFSET + OS_IMAGE_BYTES);
    }
    await stop();
  });

  it.each([
    ['net-send', 'netSend'],
    ['net-recv', 'netRecv'],
  ] as const)('%s keeps many 64 KiB transfers in flight', async (kind, op) => {
    const { clock, machine, stressor, stop } = setup(kind);
    await runUntil(clock, 5);
    expect(machine.maxInFlight[op]).toBe(STRESS_COSTS.netInFlight);
    expect(machine.calls[op]).toBeGreaterThanOrEqual(STRESS_COSTS.netInFlight * 9);
    expect(new Set(machine.netBytes)).toEqual(new Set([64 * 1024]));
    expect(stressor.stats().bytes).toBe(machine.netBytes.length * 64 * 1024);
    await stop();
  });

  it('stops itself when its duration (simulated ms) has elapsed', async () => {
    const { clock, machine, stressor, stops } = setup('cpu', { vcpus: 1 }, 100);
    await runUntil(clock, 99);
    expect(stressor.running).toBe(true);
    await runUntil(clock, 110);
    expect(stressor.running).toBe(false);
    expect(stops).toEqual(['its duration of 100 simulated ms elapsed']);
    expect(stressor.stats().elapsedMs).toBe(100);
    const after = machine.calls.cpu;
    await runUntil(clock, 300);
    expect(machine.calls.cpu).toBe(after);
  });

  it('counts failing hypercalls without throwing, and backs off instead of spinning', async () => {
    const { clock, machine, stressor, stop, stops } = setup('net-send');
    machine.failWith = new VmsimError(ErrorCode.IO, 'the NIC is gone');
    await runUntil(clock, 1000);
    const s = stressor.stats();
    expect(s.errors).toBe(machine.calls.netSend);
    expect(s.ops).toBe(0);
    // Backoff 10, 20, 40 … ms: a handful of attempts per loop in a simulated second, not thousands.
    expect(machine.calls.netSend).toBeLessThanOrEqual(STRESS_COSTS.netInFlight * 8);
    expect(machine.calls.netSend).toBeGreaterThanOrEqual(STRESS_COSTS.netInFlight * 5);
    machine.failWith = undefined;
    await stop();
    expect(stops).toEqual(['test over']);
  });
});
